---@meta weft._sse
-- Editor stubs for the event-stream parser binding (runtime/lua_sse.c).

---@class weft.SseEvent
---@field event string "message" unless an event: field said otherwise
---@field data string data lines joined with "\n"
---@field id? string the last event id seen
---@field retry? number the last retry: field, in seconds

---@class weft.SseParser
local Parser = {}

--- Parse a chunk (split anywhere); returns the events it completed.
--- Raises kind `integration` when a line or event is over max_event.
---@param chunk string
---@return weft.SseEvent[]
function Parser:feed(chunk) end

--- True when a partial event or line is left (the stream was cut short).
---@return boolean
function Parser:pending() end

---@class weft._sse
local M = {}

--- A new parser; max_event in bytes (default 16 MiB).
---@param max_event? number
---@return weft.SseParser
function M.new(max_event) end

return M
