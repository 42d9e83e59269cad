--- weft.codec: the helpers provider codecs share (plugin API 2).
---
--- Every plugin sandbox holds the same read-only `weft.codec` (a userdata
--- whose metatable is protected: a plugin can call its functions, not
--- change, add or list them, and another plugin's codec is the same one);
--- the host uses this module too (weft.retry.http_error's status ladder).
--- The functions are pure: no I/O, no state kept between calls; what they
--- return is new, the caller's own. Called from plugin code they run under
--- that plugin's budget, with the JIT off like the plugin's own functions
--- (the budget's count hook does not fire in compiled code).
---
--- * values: `str`, `num`, `tab`, `usage`, `json_table`
--- * tool calls: `decode_args`, `encode_args`
--- * messages: `split_system` (system messages folded into one text)
--- * OpenAI's dialect: `openai_messages`, `openai_tools`, `openai_tool_calls`,
---   `openai_tool_deltas`
--- * finish reasons: `finish_reason`, `finish_map` (openai, anthropic, gemini)
--- * errors: `status_kind` (the HTTP status ladder), `error_of` (a JSON error
---   body's error object)
--- * rate limits: `openai_rate_limits` (x-ratelimit-*),
---   `anthropic_rate_limits` (anthropic-ratelimit-*), `retry_info` (Gemini's
---   RetryInfo.retryDelay in an error body)
local json = require "weft.json"
local hint = require("weft._retry").hint
local tripped = require("weft._budget").tripped

local type, tonumber, ipairs, pairs, pcall, error, tostring = type, tonumber, ipairs, pairs, pcall, error, tostring
local encode, object, null = json.encode, json.object, json.null
-- lua-cjson's decode leaks its buffer when a tripped memory budget
-- interrupts it: room for what the text may become is asked for first, as
-- the sandbox's weft.json.decode does (weft.plugins.DECODE_ROOM)
local need, json_decode = require("weft._budget").need, json.decode
local function decode(s)
    need(#s * 64)
    return json_decode(s)
end

-- Every function of this file runs with the JIT off, as plugin code does.
if jit then jit.off(true, true) end

local M = {}

-- A budget that ran out inside a protected call stays out (as the
-- sandbox's pcall does it): the plugin's call ends, not just this read.
local function guarded(ok, ...)
    if tripped() then error("plugin budget exceeded", 0) end
    return ok, ...
end

------------------------------------------------------------ values

--- `v` when it is a string, else nil.
---@param v any
---@return string?
function M.str(v)
    if type(v) == "string" then return v end
end

--- `v` as a number (a number, or a string holding one), else `default`.
---@param v any
---@param default? number
---@return number?
function M.num(v, default)
    local n = tonumber(v)
    if n == nil then return default end
    return n
end

--- `v` when it is a table, else a new empty table (to index without checks).
---@param v any
---@return table
function M.tab(v)
    if type(v) == "table" then return v end
    return {}
end

--- Normalized usage `{input, output}` from a usage object and the names of
--- its two counts (missing counts are 0; no `output_key`: output 0); nil
--- when `u` is not a table.
---@param u any
---@param input_key string
---@param output_key? string
---@return {input: number, output: number}?
function M.usage(u, input_key, output_key)
    if type(u) ~= "table" then return nil end
    return { input = tonumber(u[input_key]) or 0, output = output_key and tonumber(u[output_key]) or 0 }
end

--- The JSON text `s` decoded, when it is an object or an array; nil when
--- it is not JSON or not one of those (never raises).
---@param s any
---@return table?
function M.json_table(s)
    if type(s) ~= "string" then return nil end
    local ok, v = guarded(pcall(decode, s))
    if ok and type(v) == "table" then return v end
end

------------------------------------------------------------ tool calls

--- A tool call's arguments (JSON text) as a table: a JSON object `{}` when
--- the text is empty, missing or not a JSON object or array.
---@param s any
---@return table
function M.decode_args(s)
    if s == nil or s == "" then return object({}) end
    local ok, v = guarded(pcall(decode, s))
    if ok and type(v) == "table" then return v end
    return object({})
end

--- A tool call's arguments (a table) as JSON text; `{}` when nil or false.
---@param v any
---@return string
function M.encode_args(v)
    return encode(v or object({}))
end

------------------------------------------------------------ messages

--- The system text of a normalized request and its other messages: the
--- text is `req.system` and every message with role "system" (in order,
--- joined by a blank line), nil when there is none; the messages are the
--- request's own tables, in order, without the system ones.
---@param req table
---@return string? system
---@return table[] messages
function M.split_system(req)
    local system, out = req.system, {}
    for _, m in ipairs(req.messages) do
        if m.role == "system" then
            system = system and (system .. "\n\n" .. m.content) or m.content
        else
            out[#out + 1] = m
        end
    end
    return system, out
end

------------------------------------------------------------ OpenAI's dialect

-- Normalized tool calls {id, name, arguments} -> OpenAI's.
local function wire_tool_calls(list)
    local out = {}
    for i, tc in ipairs(list) do
        out[i] = { id = tc.id, type = "function", ["function"] = { name = tc.name, arguments = tc.arguments or "{}" } }
    end
    return out
end

--- A normalized request's system text and messages in OpenAI's Chat
--- Completions form: the system text first, `name` and `tool_call_id`
--- kept, tool calls as `{id, type = "function", function = {name,
--- arguments}}` (and `content = null` beside them when there is no text).
--- Messages of a role and a text each, with no system text: `req.messages`
--- itself (copy it before changing it: the request serves every attempt).
---@param req table
---@return table[]
function M.openai_messages(req)
    -- Messages of a role and a text each are sent as they are (the
    -- plugin's own copy of the request: no table made for each).
    if not req.system then
        local plain = true
        for _, m in ipairs(req.messages) do
            if type(m.content) ~= "string" then plain = false end
            for k, v in next, m do
                if (k ~= "role" and k ~= "content") or type(v) ~= "string" then plain = false end
            end
            if not plain then break end
        end
        if plain then return req.messages end
    end
    local out = {}
    if req.system then out[1] = { role = "system", content = req.system } end
    for _, m in ipairs(req.messages) do
        local w = { role = m.role, content = m.content }
        if m.name then w.name = m.name end
        if m.tool_call_id then w.tool_call_id = m.tool_call_id end
        if m.tool_calls then
            w.tool_calls = wire_tool_calls(m.tool_calls)
            if w.content == nil then w.content = null end
        end
        out[#out + 1] = w
    end
    return out
end

--- Normalized tools `{name, description, parameters}` in OpenAI's form
--- (`{type = "function", function = {...}}`); a tool already in a wire
--- form (it has a `type`) is passed as it is.
---@param tools table[]
---@return table[]
function M.openai_tools(tools)
    local out = {}
    for i, t in ipairs(tools) do
        if t.type then
            out[i] = t
        else
            out[i] = { type = "function", ["function"] = { name = t.name, description = t.description,
                                                          parameters = t.parameters } }
        end
    end
    return out
end

--- A request's `tool_choice` in a provider's wire form. The neutral forms
--- are "auto", "none", "required" (some tool must be called) and
--- `{name = TOOL}` (that tool); any other value (a provider's own form) is
--- passed as it is. `dialect`: "openai", "anthropic" or "gemini".
---@param tc any
---@param dialect string
---@return any
function M.tool_choice(tc, dialect)
    local named = type(tc) == "table" and type(tc.name) == "string" and tc.type == nil and tc["function"] == nil
        and tc.functionCallingConfig == nil
    if not named and tc ~= "auto" and tc ~= "none" and tc ~= "required" then return tc end
    if dialect == "openai" then
        if named then return { type = "function", ["function"] = { name = tc.name } } end
        return tc
    elseif dialect == "anthropic" then
        if named then return { type = "tool", name = tc.name } end
        return { type = tc == "required" and "any" or tc }
    elseif dialect == "gemini" then
        if named then return { functionCallingConfig = { mode = "ANY", allowedFunctionNames = { tc.name } } } end
        return { functionCallingConfig = { mode = tc == "required" and "ANY" or tc == "none" and "NONE" or "AUTO" } }
    end
    return tc
end

--- Normalized tool calls `{id, name, arguments}` in OpenAI's wire form
--- (`{id, type = "function", function = {name, arguments}}`), the inverse
--- of `openai_tool_calls`.
---@param list table[]
---@return table[]
M.openai_wire_tool_calls = wire_tool_calls

--- OpenAI's tool calls of an answer as normalized ones `{id, name,
--- arguments}`; nil when there are none.
---@param list any
---@return table[]?
function M.openai_tool_calls(list)
    if type(list) ~= "table" then return nil end
    local out = {}
    for i, tc in ipairs(list) do
        local f = type(tc["function"]) == "table" and tc["function"] or {}
        out[i] = { id = M.str(tc.id), name = M.str(f.name), arguments = M.str(f.arguments) or "" }
    end
    return #out > 0 and out or nil
end

--- Adds the tool-call deltas of one streamed chunk (`delta.tool_calls`:
--- the first piece of a call has its id and name, later ones more
--- arguments, each at its `index`) to `tools`, the normalized calls so
--- far, and returns it.
---@param tools table[]
---@param deltas table[]
---@return table[]
function M.openai_tool_deltas(tools, deltas)
    for _, tc in ipairs(deltas) do
        local i = (tonumber(tc.index) or 0) + 1
        local f = type(tc["function"]) == "table" and tc["function"] or {}
        local cur = tools[i] or { arguments = "" }
        tools[i] = cur
        cur.id = cur.id or M.str(tc.id)
        cur.name = cur.name or M.str(f.name)
        cur.arguments = cur.arguments .. (M.str(f.arguments) or "")
    end
    return tools
end

------------------------------------------------------------ finish reasons

-- A dialect's finish reasons -> weft's (stop, length, tool_calls,
-- content_filter, error); `other` gives the one of a reason not listed.
local FINISH = {
    openai = { map = { stop = "stop", length = "length", tool_calls = "tool_calls", function_call = "tool_calls",
                       content_filter = "content_filter" } },
    anthropic = { map = { end_turn = "stop", stop_sequence = "stop", max_tokens = "length", tool_use = "tool_calls",
                          pause_turn = "stop", refusal = "content_filter" } },
    gemini = { map = { STOP = "stop", MAX_TOKENS = "length", SAFETY = "content_filter", RECITATION = "content_filter",
                       PROHIBITED_CONTENT = "content_filter", BLOCKLIST = "content_filter", SPII = "content_filter",
                       MALFORMED_FUNCTION_CALL = "error" },
               other = function(r) return r:lower() end },
}

local function dialect_of(d)
    local f = FINISH[d]
    if not f then error("weft.codec: unknown dialect " .. tostring(d) .. " (openai, anthropic, gemini)", 3) end
    return f
end

--- weft's finish reason for a dialect's (`dialect` is "openai",
--- "anthropic" or "gemini"): the mapped one, or the raw reason when the
--- map does not list it (Gemini's in lower case); nil when `raw` is not a
--- string.
---@param dialect "openai"|"anthropic"|"gemini"
---@param raw any
---@return string?
function M.finish_reason(dialect, raw)
    local f = dialect_of(dialect)
    if type(raw) ~= "string" then return nil end
    local r = f.map[raw]
    if r then return r end
    return f.other and f.other(raw) or raw
end

--- A new copy of a dialect's finish-reason map (to extend in a plugin).
---@param dialect "openai"|"anthropic"|"gemini"
---@return table<string, string>
function M.finish_map(dialect)
    local out = {}
    for k, v in pairs(dialect_of(dialect).map) do out[k] = v end
    return out
end

------------------------------------------------------------ errors

--- The error kind of an HTTP status (weft's ladder, the host's and the
--- shipped plugins'): 429 rate_limited; 401, 403 auth; 408, 409 and 5xx
--- transient; any other status invalid_request; nil when `status` is not
--- a number.
---@param status any
---@return string?
function M.status_kind(status)
    if type(status) ~= "number" then return nil end
    if status == 429 then return "rate_limited" end
    if status == 401 or status == 403 then return "auth" end
    if status == 408 or status == 409 or status >= 500 then return "transient" end
    return "invalid_request"
end

--- The error object of a JSON error body: its `error` member when that is
--- an object (OpenAI's, Anthropic's and Google's form), the body itself
--- when it is a bare `{"object": "error", "message": ...}` (some servers
--- of OpenAI's dialect), else an empty table; then the decoded body (nil
--- when it is not JSON).
---@param body any
---@return table error
---@return table? decoded
function M.error_of(body)
    local v = M.json_table(body)
    if not v then return {}, nil end
    if type(v.error) == "table" then return v.error, v end
    if v.object == "error" then return v, v end
    return {}, v
end

------------------------------------------------------------ rate limits

-- Seconds from the usual forms of the headers (runtime/retry.c), or nil.
local TIME = {
    --- A Go-style duration ("1m30s", "6ms", "0.5s") in seconds.
    duration = function(s) return type(s) == "string" and hint("retrydelay", s) or nil end,
    --- Seconds from now until an RFC 3339 time (0 when past).
    until_rfc3339 = function(s) return type(s) == "string" and hint("anthropic-ratelimit-x-reset", s) or nil end,
    --- A Retry-After value (seconds or an HTTP date) in seconds.
    retry_after = function(s) return type(s) == "string" and hint("retry-after", s) or nil end,
    --- A retry-after-ms value in seconds.
    retry_after_ms = function(s) return type(s) == "string" and hint("retry-after-ms", s) or nil end,
}
--- The parsers of `weft.time` (plugin API 1), for weft.plugins.
M.time = TIME

--- OpenAI's x-ratelimit-{remaining,reset}-{requests,tokens} (resets are Go
--- durations) and, on a 429, retry-after-ms or Retry-After: what a
--- provider's `rate_limits` returns.
---@param status integer
---@param headers table
---@return table
function M.openai_rate_limits(status, headers)
    local out = {}
    -- (header names written out: no string made per answer)
    local rem = tonumber(headers["x-ratelimit-remaining-requests"])
    if rem then out.requests = { remaining = rem, reset = TIME.duration(headers["x-ratelimit-reset-requests"]) } end
    rem = tonumber(headers["x-ratelimit-remaining-tokens"])
    if rem then out.tokens = { remaining = rem, reset = TIME.duration(headers["x-ratelimit-reset-tokens"]) } end
    if status == 429 then
        out.retry_after = TIME.retry_after_ms(headers["retry-after-ms"]) or TIME.retry_after(headers["retry-after"])
    end
    return out
end

--- Anthropic's anthropic-ratelimit-{requests,tokens}-{remaining,reset}
--- (resets are RFC 3339 times) and, on a 429, Retry-After.
---@param status integer
---@param headers table
---@return table
function M.anthropic_rate_limits(status, headers)
    local out = {}
    local rem = tonumber(headers["anthropic-ratelimit-requests-remaining"])
    if rem then
        out.requests = { remaining = rem, reset = TIME.until_rfc3339(headers["anthropic-ratelimit-requests-reset"]) }
    end
    rem = tonumber(headers["anthropic-ratelimit-tokens-remaining"])
    if rem then
        out.tokens = { remaining = rem, reset = TIME.until_rfc3339(headers["anthropic-ratelimit-tokens-reset"]) }
    end
    if status == 429 then out.retry_after = TIME.retry_after(headers["retry-after"]) end
    return out
end

--- The wait a Google error body asks for (`error.details[]` RetryInfo
--- `retryDelay`, such as "17s") in seconds, or nil.
---@param body any
---@return number?
function M.retry_info(body)
    local details = M.error_of(body).details
    if type(details) ~= "table" then return nil end
    for _, d in ipairs(details) do
        if type(d) == "table" and type(d.retryDelay) == "string" then return TIME.duration(d.retryDelay) end
    end
end

return M
