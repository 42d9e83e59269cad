---@meta weft._log
-- Editor stubs for the logger implemented in runtime/log.c.

---@class weft._log
local Log = {}

--- Write one line to stderr; `fields` is an encoded JSON object, or in
--- logfmt the rendered " k=v ..." text.
---@param level "debug"|"info"|"warn"|"error"
---@param msg string
---@param fields_json? string
function Log.write(level, msg, fields_json) end

--- True when lines of `level` are written.
---@return boolean
function Log.enabled(level) end

--- Current level name; sets it when `name` is given.
---@param name? "debug"|"info"|"warn"|"error"|"off"
---@return string
function Log.level(name) end

--- Current line format; sets it when `name` is given ("auto": logfmt when
--- stderr is a terminal).
---@param name? "json"|"logfmt"|"auto"
---@return "json"|"logfmt"
function Log.format(name) end

return Log
