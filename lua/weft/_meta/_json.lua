---@meta weft._json
-- Editor stubs for weft.json's C helpers (runtime/lua_json.c).

---@class weft._json
local M = {}

--- True when `s` holds `[]` or `{}` (whitespace inside allowed).
---@param s string
---@return boolean
function M.has_empty(s) end

--- The compact encoder with weft.json's rules; it returns nil for what it
--- refuses (weft.json then raises the error naming the path).
---@param array_mt table
---@param object_mt table
---@param empty_mt table
---@param null any
---@return fun(v: any): string?
function M.encoder(array_mt, object_mt, empty_mt, null) end

return M
