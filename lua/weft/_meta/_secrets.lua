---@meta weft._secrets
-- Editor stubs for runtime/lua_secrets.c. Scripts use weft.secret and weft.secrets.

---@class weft._secrets
local S = {}

---@class weft.SecretHandle : userdata
---@field name string the reference
---@field loaded boolean a value is loaded and not expired
---@field version number changes when a load gives a new value (not when it reads the same one again)
---@field expires_in number|nil seconds left
---@field events {loaded: number, refreshed: number, rejected: number}

--- A handle on the secret `name` (values are never returned to Lua).
---@return weft.SecretHandle
function S.handle(name) end

--- `text` with every loaded secret value replaced by <secret NAME>.
---@return string
function S.redact(text) end

---@return boolean
function S.is(v) end

---@return integer
function S.loaded() end

return S
