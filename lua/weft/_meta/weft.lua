---@meta
-- Editor stubs for lua-language-server (.luarc.json at the repository
-- root): the global `weft` that scripts run by `weft run` see, which is the
-- module lua/weft/init.lua, and the submodules init.lua loads on first use
-- (its `_lazy` table), so that `weft.http.request` and the rest complete.
-- Nothing loads this file at run time. Keep the list in step with `lazy` in
-- lua/weft/init.lua.

weft = require "weft"

weft.batch = require "weft.batch"
weft.breaker = require "weft.breaker"
weft.calls = require "weft.calls"
weft.http = require "weft.http"
weft.json = require "weft.json"
weft.limiter = require "weft.limiter"
weft.log = require "weft.log"
weft.metrics = require "weft.metrics"
weft.mock = require "weft.mock"
weft.plugins = require "weft.plugins"
weft.retry = require "weft.retry"
weft.secrets = require "weft.secrets"
