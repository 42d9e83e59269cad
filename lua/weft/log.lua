--- weft.log: structured logging, one JSON object per line on stderr.
---
--- `weft.log.info("listening", {port = 8080})` writes
--- `{"ts":"...","level":"info","msg":"listening","port":8080}`. The level is
--- set by `WEFT_LOG`, `weft --log-level`, or `weft.log.level("debug")`.
local C = require "weft._log"

local type, tostring, pcall = type, tostring, pcall
local enabled, write = C.enabled, C.write

local M = {}

local json -- loaded on first use (weft.json requires nothing from here)

local function emit(level, msg, fields)
    if not enabled(level) then return end
    if type(msg) ~= "string" then msg = tostring(msg) end
    local encoded
    if fields ~= nil then
        if type(fields) ~= "table" then
            error("weft.log." .. level .. ": fields must be a table", 3)
        end
        json = json or require "weft.json"
        local ok, s = pcall(json.encode, fields)
        if ok then
            encoded = s
        else
            encoded = '{"log_error":"fields could not be encoded"}'
        end
    end
    write(level, msg, encoded)
end

---@param msg any
---@param fields? table extra members of the log object
function M.debug(msg, fields) emit("debug", msg, fields) end
---@param msg any
---@param fields? table
function M.info(msg, fields) emit("info", msg, fields) end
---@param msg any
---@param fields? table
function M.warn(msg, fields) emit("warn", msg, fields) end
---@param msg any
---@param fields? table
function M.error(msg, fields) emit("error", msg, fields) end

--- Get, or set and get, the minimum level.
---@param name? "debug"|"info"|"warn"|"error"|"off"
---@return string
function M.level(name)
    return C.level(name)
end

return M
