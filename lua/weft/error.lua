--- weft.error: error values of the weft taxonomy (see DESIGN.md).
---
--- An error value is a table `{kind=, message=, ...}` with a `__tostring`
--- that renders "kind: message (status 429, ...)". weft functions raise them
--- with `error(err, 0)`; scripts catch them with `pcall` and branch on
--- `err.kind`.
local C = require "weft._error"

local M = {}

---@class weft.Error
---@field kind string one of weft.error.KINDS
---@field message string what happened, never containing a secret
---@field status? integer HTTP status when one was received
---@field reason? string short machine-readable cause ("refused", "reset", ...)
---@field retry_after? number seconds the server asked to wait
---@field attempts? integer attempts made before giving up
---@field traceback? string where it was raised (set when a task failed)

--- The kinds every part of weft agrees on.
M.KINDS = {
    rate_limited = true, transient = true, timeout = true, auth = true,
    quota_exhausted = true, invalid_request = true, integration = true,
    circuit_open = true, budget_exceeded = true, cancelled = true,
}

--- Create an error value.
---@param kind string a kind from weft.error.KINDS
---@param message? string
---@param fields? table extra fields copied into the error
---@return weft.Error
function M.new(kind, message, fields)
    if type(kind) ~= "string" or not M.KINDS[kind] then
        error("weft.error.new: unknown kind " .. tostring(kind), 2)
    end
    if message ~= nil and type(message) ~= "string" then
        error("weft.error.new: message must be a string", 2)
    end
    if fields ~= nil and type(fields) ~= "table" then
        error("weft.error.new: fields must be a table", 2)
    end
    return C.new(kind, message, fields)
end

--- True when `v` is a weft error value.
---@param v any
---@return boolean
function M.is(v)
    return C.is(v)
end

--- Raise an error value (never returns).
---@param kind string
---@param message? string
---@param fields? table
function M.raise(kind, message, fields)
    error(M.new(kind, message, fields), 0)
end

return M
