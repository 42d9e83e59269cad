---@meta weft._error
-- Editor stubs for error values implemented in runtime/luax.c.

---@class weft._error
local E = {}

--- New error value with the shared metatable.
---@param kind string
---@param message? string
---@param fields? table
---@return weft.Error
function E.new(kind, message, fields) end

--- True when `v` carries the weft error metatable.
---@return boolean
function E.is(v) end

--- The metatable of error values.
---@type table
E.mt = {}

return E
