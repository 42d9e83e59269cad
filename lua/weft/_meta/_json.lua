---@meta weft._json
-- Editor stubs for weft.json's C helpers (runtime/lua_json.c).

---@class weft._json
local M = {}

--- The decoder with weft.json's rules (empty containers marked with
--- these tables, also for weft.http's decoded answers): decode(s) returns
--- the value, or nil and "<why> at character <N>".
---@param array_mt table
---@param object_mt table
---@return fun(s: string): any, string?
function M.decoder(array_mt, object_mt) end

--- The compact encoder with weft.json's rules; it returns nil for what it
--- refuses (weft.json then raises the error naming the path).
---@param array_mt table
---@param object_mt table
---@param empty_mt table
---@param null any
---@return fun(v: any): string?
function M.encoder(array_mt, object_mt, empty_mt, null) end

return M
