--- weft.log: structured logging, one JSON object per line on stderr.
---
--- `weft.log.info("listening", {port = 8080})` writes
--- `{"ts":"...","level":"info","msg":"listening","port":8080}`. The level is
--- set by `WEFT_LOG`, `weft --log-level`, or `weft.log.level("debug")`.
---
--- A line written by a task that is running a call (weft.calls) carries
--- that call's `call_id`, `provider` and `model`. The format is JSON lines,
--- or logfmt (`ts=... level=info msg="listening" port=8080`) with
--- `WEFT_LOG_FORMAT=logfmt`, `weft --log-format logfmt` or
--- `weft.log.format("logfmt")`; "auto" (the default) picks logfmt when
--- stderr is a terminal. Every line passes through secret redaction.
local C = require "weft._log"

local type, tostring, tonumber, pcall, pairs, ipairs, next, getmetatable, rawget =
    type, tostring, tonumber, pcall, pairs, ipairs, next, getmetatable, rawget
local running = coroutine.running
local enabled, write = C.enabled, C.write
local sort, concat = table.sort, table.concat

local M = {}

local json -- loaded on first use (weft.json requires nothing from here)

-- Fields every line of a task carries (its call), keyed by coroutine.
local context = setmetatable({}, { __mode = "k" })

--- Attach `fields` (or nil to detach) to every line the current task
--- writes; weft.calls uses it for call_id, provider and model (a table
--- whose metatable has `__log_fields`, {line field = its field}, shows
--- only those).
---@param fields? table
function M.bind(fields)
    local co = running()
    if co then context[co] = fields end
end

--- Whether a line of `level` ("debug", "info", "warn", "error") would be
--- written: for callers that build a line's fields only when it is.
---@param level string
---@return boolean
function M.enabled(level) return enabled(level) end

-- What the current task has bound (a table of fields, or an object
-- with __log_fields), as bound: weft.calls keeps it to bind it again.
local function raw_bound()
    local co = running()
    return co and context[co]
end
M._bound = raw_bound

-- The fields a bound value gives a line, into `into` (new table if nil).
local function bound_fields(ctx, into)
    into = into or {}
    local mt = getmetatable(ctx)
    local shown = type(mt) == "table" and rawget(mt, "__log_fields")
    if shown then
        for k, f in pairs(shown) do into[k] = ctx[f] end
    else
        for k, v in pairs(ctx) do into[k] = v end
    end
    return into
end

--- The fields bound to the current task, if any.
function M.bound()
    local ctx = raw_bound()
    return ctx and bound_fields(ctx)
end

local function logfmt_value(v)
    local tv = type(v)
    if tv == "table" then
        json = json or require "weft.json"
        local ok, s = pcall(json.encode, v)
        v = ok and s or "?"
    elseif tv ~= "string" then
        v = tostring(v)
    end
    if v ~= "" and not v:find('[%s="\\%c]') then return v end
    return '"' .. v:gsub('[\\"%c]', function(c)
        if c == "\\" then return "\\\\" elseif c == '"' then return '\\"'
        elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" end
        return ("\\u%04x"):format(c:byte())
    end) .. '"'
end

local function logfmt(fields)
    local keys = {}
    for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    local out = {}
    for i, k in ipairs(keys) do
        local v = fields[k]
        if v == nil then v = fields[tonumber(k)] end
        out[i] = " " .. k:gsub("[^%w_%.%-]", "_") .. "=" .. logfmt_value(v)
    end
    return concat(out)
end

local function emit(level, msg, fields)
    if not enabled(level) then return end
    if type(msg) ~= "string" then msg = tostring(msg) end
    if fields ~= nil and type(fields) ~= "table" then
        error("weft.log." .. level .. ": fields must be a table", 3)
    end
    local co = running()
    local ctx = co and context[co]
    if ctx then
        local merged = bound_fields(ctx)
        if fields then for k, v in pairs(fields) do merged[k] = v end end
        fields = merged
    end
    local encoded
    if fields ~= nil and next(fields) ~= nil then
        if C.format() == "logfmt" then
            encoded = logfmt(fields)
        else
            json = json or require "weft.json"
            local ok, s = pcall(json.encode, fields)
            if ok then
                encoded = s
            else
                encoded = '{"log_error":"fields could not be encoded"}'
            end
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

--- Get, or set and get, the line format.
---@param name? "json"|"logfmt"|"auto"
---@return "json"|"logfmt"
function M.format(name)
    return C.format(name)
end

return M
