-- run_busted.lua: run Debian's busted inside the weft host, so specs run
-- in a weft task and can wait (weft.sleep, weft.http, task:wait) directly.
--
--   weft run test/lua/run_busted.lua [busted options] SPEC...
--
-- `weft run` sets the global `arg` as luajit does, which busted reads for
-- its command line. (Not named busted.lua: `require "busted"` would find
-- this file through "./?.lua".) Busted looks at its caller's source to
-- decide whether it may os.exit; calling it from a Lua function of this
-- file keeps it from exiting under the host. When a test fails busted
-- 2.1.1 ends with error(nil) (its Lua 5.1 exit path): that becomes a clear
-- failure here.
local runner = require "busted.runner"
local ok, err = pcall(function() runner({ standalone = false }) end)
if not ok then
    if err == nil then error("busted: tests failed", 0) end
    error(err, 0)
end
