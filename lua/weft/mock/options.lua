--- weft.mock.options: the checks of weft.mock.start's options and of the
--- mock's fault rules.
---
--- Each check returns a checked copy (the caller's tables are never kept
--- or changed), or nil and a message that names what is wrong (the
--- option, the rule's index and key), says what is accepted and shows an
--- example in the syntax the caller wrote: Lua for weft.mock.start,
--- mock:set_faults and `weft mock --profile`, JSON for POST /_mock/faults.
--- Messages carry no file position, and never a key's value.
local json = require "weft.json"
local batch = require "weft.mock.batch"

local type, pairs, ipairs, next, tostring, tonumber, getmetatable = type, pairs, ipairs, next, tostring,
    tonumber, getmetatable
local floor, huge = math.floor, math.huge
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

local DIALECTS = {
    openai = require "weft.mock.openai",
    anthropic = require "weft.mock.anthropic",
    gemini = require "weft.mock.gemini",
}
local DIALECT_ORDER = { "openai", "anthropic", "gemini" }

--- Model names every dialect knows in strict mode, besides its own list
--- (`MODELS` of the dialect's module).
M.MOCK_MODELS = { "mock-words-embedding" }

--- The faults other than a status, in the order the messages list them.
M.FAULT_KINDS = { "ok", "reset", "reset_mid_body", "hang", "truncate", "malformed", "oversized",
                  "mid_stream_error" }
local FAULT_SET = {}
for _, k in ipairs(M.FAULT_KINDS) do FAULT_SET[k] = true end

--- The keys of a fault rule, in the order the messages list them.
M.RULE_KEYS = { "dialect", "model", "endpoint", "sequence", "probability", "latency", "retry_after",
                "stream_delay_ms", "bytes" }
local RULE_SET = {}
for _, k in ipairs(M.RULE_KEYS) do RULE_SET[k] = true end
local RULE_LIST = concat(M.RULE_KEYS, ", ")

--- The options of weft.mock.start, in the order the messages list them.
M.OPTION_KEYS = { "host", "port", "keys", "limits", "faults", "context", "strict_models", "models", "seed",
                  "max_log", "max_connections", "batch", "clock" }
local OPTION_SET = {}
for _, k in ipairs(M.OPTION_KEYS) do OPTION_SET[k] = true end

--- The most max_connections may be (weft.http.serve's own bound).
M.MAX_CONNECTIONS = 1000000
local MAX_CONNECTIONS = M.MAX_CONNECTIONS

local LIMIT_KEYS = { "rps", "rpm", "rpd", "tpm", "quota", "window" }
local LIMIT_SET = {}
for _, k in ipairs(LIMIT_KEYS) do LIMIT_SET[k] = true end

local FAULT_FORMS = 'a fault is an HTTP status 400..599 or one of "' .. concat(M.FAULT_KINDS, '", "') .. '"'

-- Examples shown with a message, in each syntax.
local EXAMPLES = {
    lua = {
        rule = '{ dialect = "openai", sequence = { 429, "ok" } }',
        rules = '{ { dialect = "openai", probability = { [503] = 1.0 } } }',
        model = 'model = "gpt-4o"',
        endpoint = 'endpoint = "chat"',
        sequence = 'sequence = { 429, 500, "ok" }',
        probability = 'probability = { [503] = 1.0 } or probability = { [429] = 0.2, reset = 0.1 }',
        latency = 'latency = 250, latency = { min = 100, max = 900 } or latency = { median = 300, tail = 1.5, cap = 5000 }',
        retry_after = "retry_after = 2",
        stream_delay_ms = "stream_delay_ms = 50",
        bytes = "bytes = 1048576",
        status = "to answer with a status, use sequence = { 503 } or probability = { [503] = 1.0 }",
        wrap = "wrap the rule in a list: { { ... } }",
    },
    json = {
        rule = '{"dialect": "openai", "sequence": [429, "ok"]}',
        rules = '[{"dialect": "openai", "probability": {"503": 1.0}}]',
        model = '"model": "gpt-4o"',
        endpoint = '"endpoint": "chat"',
        sequence = '"sequence": [429, 500, "ok"]',
        probability = '"probability": {"503": 1.0} or "probability": {"429": 0.2, "reset": 0.1}',
        latency = '"latency": 250, "latency": {"min": 100, "max": 900} or "latency": {"median": 300, "tail": 1.5, "cap": 5000}',
        retry_after = '"retry_after": 2',
        stream_delay_ms = '"stream_delay_ms": 50',
        bytes = '"bytes": 1048576',
        status = 'to answer with a status, use "sequence": [503] or "probability": {"503": 1.0}',
        wrap = "wrap the rule in a list: [{...}]",
    },
}

-- Unknown rule keys that mean "answer with this status".
local STATUS_GUESSES = { status = true, code = true, fault = true, error = true, http_status = true,
                         status_code = true }

------------------------------------------------------------ helpers

local function is_number(v)
    return type(v) == "number" and v == v and v ~= huge and v ~= -huge
end

local function is_integer(v)
    return is_number(v) and v == floor(v)
end

-- A table whose keys are exactly 1..n.
local function is_list(t)
    if type(t) ~= "table" then return false end
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" then return false end
        n = n + 1
    end
    for i = 1, n do
        if t[i] == nil then return false end
    end
    return true
end

-- A string for a message: quoted, control characters and quotes replaced,
-- cut after 40 bytes.
local function quote(s)
    local cut = #s > 40
    return '"' .. s:sub(1, 40):gsub('[%c"\\]', "?") .. (cut and '..."' or '"')
end

-- A value as a message shows it (a string quoted, a table by its kind).
local function show(v, syntax)
    if v == nil then return "nothing" end
    if v == json.null then return "null" end
    local t = type(v)
    if t == "string" then return quote(v) end
    if t == "number" or t == "boolean" then return tostring(v) end
    if t == "table" then
        if syntax == "json" then return is_list(v) and next(v) ~= nil and "an array" or "an object" end
        return "a table"
    end
    return "a " .. t
end

-- A table key as a message shows it.
local function show_key(k)
    if type(k) == "string" then return quote(k) end
    return "[" .. tostring(k) .. "]"
end

-- The keys of `t` that `known` lacks, sorted (so messages are stable).
local function unknown_keys(t, known)
    local out = {}
    for k in pairs(t) do
        if not known[k] then out[#out + 1] = k end
    end
    sort(out, function(a, b) return tostring(a) < tostring(b) end)
    return out
end

-- A known name close to `k` (a plural or singular, another case, "-"
-- for "_"), or nil.
local function suggest(k, names)
    if type(k) ~= "string" then return nil end
    local lk = k:lower():gsub("[-%s]", "_")
    local forms = { lk, lk .. "s", (lk:gsub("s$", "")), (lk:gsub("es$", "")), (lk:gsub("ies$", "y")) }
    for _, n in ipairs(names) do
        for _, f in ipairs(forms) do
            if f == n then return n end
        end
    end
    return nil
end

---------------------------------------------------------- fault rules

-- A fault as a rule gives it: a status number, a fault name, or (keys of
-- `probability`, which JSON makes strings) a status written as a string
-- when `string_status`. Returns the fault or nil.
local function fault_of(f, string_status)
    if string_status and type(f) == "string" and f:match("^%d+$") then f = tonumber(f) end
    if type(f) == "number" then
        if is_integer(f) and f >= 400 and f <= 599 then return f end
        return nil
    end
    if type(f) == "string" and FAULT_SET[f] then return f end
    return nil
end

-- The endpoint names of `dialect` (every dialect's when nil), for messages.
local function endpoint_list(dialect)
    if dialect then return '"' .. concat(DIALECTS[dialect].ENDPOINTS, '", "') .. '"' end
    local parts = {}
    for _, d in ipairs(DIALECT_ORDER) do
        parts[#parts + 1] = d .. ': "' .. concat(DIALECTS[d].ENDPOINTS, '", "') .. '"'
    end
    return concat(parts, "; ")
end

local function has_endpoint(dialect, ep)
    for _, d in ipairs(DIALECT_ORDER) do
        if dialect == nil or dialect == d then
            for _, e in ipairs(DIALECTS[d].ENDPOINTS) do
                if e == ep then return true end
            end
        end
    end
    return false
end

-- The checked latency (a number or a copied table), or nil and what is
-- wrong.
local function check_latency(l, ex)
    local forms = "latency must be milliseconds before answering: " .. ex.latency
    if is_number(l) then
        if l < 0 then return nil, forms .. "; got " .. tostring(l) end
        return l
    end
    if type(l) ~= "table" or l == json.null then return nil, forms .. "; got " .. show(l) end
    if l.min ~= nil or l.max ~= nil then
        local bad = unknown_keys(l, { min = true, max = true })
        if #bad > 0 then return nil, format("latency: unknown key %s next to min and max; %s", show_key(bad[1]), forms) end
        if not (is_number(l.min) and l.min >= 0 and is_number(l.max) and l.max >= 0) then
            return nil, format("latency = {min, max} needs both as milliseconds >= 0 (got min %s, max %s); %s",
                show(l.min), show(l.max), forms)
        end
        if l.min > l.max then return nil, format("latency: min (%s) is greater than max (%s)", tostring(l.min), tostring(l.max)) end
        return { min = l.min, max = l.max }
    end
    if l.median ~= nil then
        local bad = unknown_keys(l, { median = true, tail = true, cap = true })
        if #bad > 0 then return nil, format("latency: unknown key %s next to median; %s", show_key(bad[1]), forms) end
        if not (is_number(l.median) and l.median > 0) then
            return nil, "latency.median must be milliseconds > 0, got " .. show(l.median) .. "; " .. forms
        end
        if l.tail ~= nil and not (is_number(l.tail) and l.tail > 0) then
            return nil, "latency.tail (the Pareto shape, default 1.5) must be a number > 0, got " .. show(l.tail)
        end
        if l.cap ~= nil and not (is_number(l.cap) and l.cap >= 0) then
            return nil, "latency.cap must be milliseconds >= 0, got " .. show(l.cap)
        end
        return { median = l.median, tail = l.tail, cap = l.cap }
    end
    if is_list(l) and #l == 2 and is_number(l[1]) and is_number(l[2]) then
        return nil, format("latency: a range is written with names, latency = { min = %s, max = %s }; %s",
            tostring(l[1]), tostring(l[2]), forms)
    end
    return nil, forms .. "; got " .. show(l) .. (next(l) ~= nil and " without min and max or median" or "")
end

-- The checked probability table and its draw order ({fault, p} sorted:
-- statuses first, then names, so a seed replays the same faults), or nil
-- and what is wrong.
local function check_probability(p, ex, syntax)
    local forms = "probability must map faults to chances from 0 to 1, e.g. " .. ex.probability
    if type(p) ~= "table" or p == json.null then return nil, forms .. "; got " .. show(p, syntax) end
    if next(p) ~= nil and is_list(p) then
        return nil, forms .. "; got a list (the fault is the key, the chance its value)"
    end
    local out, draw, total = {}, {}, 0
    for f, chance in pairs(p) do
        local fault = fault_of(f, true)
        if fault == nil then
            return nil, format("probability: %s is not a fault; %s; e.g. %s", show(f), FAULT_FORMS, ex.probability)
        end
        if not (is_number(chance) and chance >= 0 and chance <= 1) then
            return nil, format("probability[%s] must be a chance from 0 to 1, got %s; e.g. %s",
                tostring(fault), show(chance, syntax), ex.probability)
        end
        if out[fault] ~= nil then
            return nil, format("probability: the fault %s is given twice", tostring(fault))
        end
        out[fault] = chance
        draw[#draw + 1] = { fault, chance }
        total = total + chance
    end
    if total > 1 + 1e-9 then
        return nil, format("probability: the chances add up to %.4g, more than 1 (what is left of 1 is \"ok\")", total)
    end
    sort(draw, function(a, b)
        local ta, tb = type(a[1]), type(b[1])
        if ta ~= tb then return ta == "number" end
        return a[1] < b[1]
    end)
    return out, draw
end

-- One rule checked and copied, or nil and what is wrong (without the
-- "rule i: " prefix).
local function check_rule(r, syntax)
    local ex = EXAMPLES[syntax]
    if type(r) ~= "table" or r == json.null then
        return nil, format("expected a rule (a table of named keys: %s), got %s; e.g. %s", RULE_LIST,
            show(r, syntax), ex.rule)
    end
    local bad = unknown_keys(r, RULE_SET)
    if #bad > 0 then
        local k = bad[1]
        local msg = format("unknown key %s; a rule takes %s", show_key(k), RULE_LIST)
        local near = suggest(k, M.RULE_KEYS)
        if type(k) == "string" and STATUS_GUESSES[k:lower()] then
            msg = msg .. " (" .. ex.status .. ")"
        elseif near then
            msg = msg .. format(" (did you mean %s?)", near)
        end
        return nil, msg
    end
    local out = {}
    if r.dialect ~= nil then
        if type(r.dialect) ~= "string" or not DIALECTS[r.dialect] then
            return nil, 'dialect must be "openai", "anthropic" or "gemini", got ' .. show(r.dialect, syntax)
        end
        out.dialect = r.dialect
    end
    if r.model ~= nil then
        if type(r.model) ~= "string" or r.model == "" then
            return nil, "model must be a model name (a string), got " .. show(r.model, syntax) .. "; e.g. " .. ex.model
        end
        out.model = r.model
    end
    if r.endpoint ~= nil then
        if type(r.endpoint) ~= "string" or not has_endpoint(out.dialect, r.endpoint) then
            return nil, format("endpoint %s is not an endpoint of %s; accepted: %s", show(r.endpoint, syntax),
                out.dialect and ("the " .. out.dialect .. " dialect") or "the mock", endpoint_list(out.dialect))
        end
        out.endpoint = r.endpoint
    end
    if r.sequence ~= nil then
        if not is_list(r.sequence) or r.sequence == json.null then
            return nil, "sequence must be a list of faults, e.g. " .. ex.sequence .. "; got " .. show(r.sequence, syntax)
        end
        local seq = {}
        for i, f in ipairs(r.sequence) do
            seq[i] = fault_of(f, false)
            if seq[i] == nil then
                return nil, format("sequence item %d: %s is not a fault; %s; e.g. %s", i, show(f, syntax), FAULT_FORMS,
                    ex.sequence)
            end
        end
        out.sequence = seq
        out._next = 1
    end
    if r.probability ~= nil then
        local p, draw = check_probability(r.probability, ex, syntax)
        if not p then return nil, draw end
        out.probability, out._draw = p, draw
    end
    if r.latency ~= nil then
        local l, why = check_latency(r.latency, ex)
        if l == nil then return nil, why end
        out.latency = l
    end
    if r.retry_after ~= nil then
        if not (is_number(r.retry_after) and r.retry_after >= 0) then
            return nil, "retry_after must be seconds >= 0 (the Retry-After of an injected 429), got "
                .. show(r.retry_after, syntax) .. "; e.g. " .. ex.retry_after
        end
        out.retry_after = r.retry_after
    end
    if r.stream_delay_ms ~= nil then
        if not (is_number(r.stream_delay_ms) and r.stream_delay_ms >= 0) then
            return nil, "stream_delay_ms must be milliseconds >= 0 between stream events, got "
                .. show(r.stream_delay_ms, syntax) .. "; e.g. " .. ex.stream_delay_ms
        end
        out.stream_delay_ms = r.stream_delay_ms
    end
    if r.bytes ~= nil then
        if not (is_integer(r.bytes) and r.bytes >= 1) then
            return nil, "bytes must be a whole number of bytes >= 1 (the size of an \"oversized\" answer), got "
                .. show(r.bytes, syntax) .. "; e.g. " .. ex.bytes
        end
        out.bytes = r.bytes
    end
    return out
end

--- Check a list of fault rules. `syntax` ("lua", the default, or "json")
--- chooses how the examples in a message are written. Returns a checked
--- copy (each rule's sequence starting over), or nil and a message naming
--- the rule ("rule 2: ...") and key.
---@param rules any
---@param syntax? "lua"|"json"
---@return table[]? rules
---@return string? err
function M.rules(rules, syntax)
    syntax = syntax == "json" and "json" or "lua"
    local ex = EXAMPLES[syntax]
    if type(rules) ~= "table" or rules == json.null then
        return nil, format("expected a list of fault rules, got %s; e.g. %s", show(rules, syntax), ex.rules)
    end
    if syntax == "json" and getmetatable(rules) == "weft.json.object" then -- `{}`
        return nil, format("expected a list of fault rules, got an object; e.g. %s (or [] for none)", ex.rules)
    end
    if not is_list(rules) then
        for k in pairs(rules) do
            if RULE_SET[k] then
                return nil, format("expected a list of fault rules, got a single rule: %s; e.g. %s", ex.wrap, ex.rules)
            end
        end
        local k = unknown_keys(rules, {})[1]
        return nil, format("expected a list of fault rules, got a table with the key %s; e.g. %s", show_key(k), ex.rules)
    end
    local out = {}
    for i, r in ipairs(rules) do
        local c, why = check_rule(r, syntax)
        if not c then return nil, format("rule %d: %s", i, why) end
        out[i] = c
    end
    return out
end

------------------------------------------------------------ options

--- A copy of context windows {[model] = max input tokens}, or nil and
--- what is wrong: model names are strings, windows positive integers.
---@param windows any
---@return table<string, integer>? windows
---@return string? err
function M.context(windows)
    if type(windows) ~= "table" then return nil, "context must be a table {[model] = max_input_tokens}" end
    local out = {}
    for k, v in pairs(windows) do
        if type(k) ~= "string" then return nil, "context: model names must be strings" end
        if not is_integer(v) or v < 1 then
            return nil, format("context[%q] must be a positive integer (max input tokens), got %s", k, show(v))
        end
        out[k] = v
    end
    return out
end

-- Checked `keys` ({dialect = expected key}), or nil and what is wrong. A
-- key's value is never shown.
local function check_keys(keys)
    if type(keys) ~= "table" then
        return nil, 'keys must be a table { openai = "...", anthropic = "...", gemini = "..." }, got ' .. show(keys)
    end
    local bad = unknown_keys(keys, DIALECTS)
    if #bad > 0 then
        return nil, format('keys: unknown dialect %s; accepted: openai, anthropic, gemini', show_key(bad[1]))
    end
    local out = {}
    for d, v in pairs(keys) do
        if type(v) ~= "string" or v == "" then
            return nil, format("keys.%s must be a non-empty string (the API key a client must send), got %s", d,
                type(v) == "string" and "an empty string" or show(v))
        end
        out[d] = v
    end
    return out
end

-- Checked `limits`, or nil and what is wrong.
local function check_limits(lim)
    if type(lim) ~= "table" then
        return nil, "limits must be a table { rps=, rpm=, rpd=, tpm=, quota=, window= }, got " .. show(lim)
    end
    local bad = unknown_keys(lim, LIMIT_SET)
    if #bad > 0 then
        local near = suggest(bad[1], LIMIT_KEYS)
        return nil, format("limits: unknown key %s; accepted: %s%s", show_key(bad[1]), concat(LIMIT_KEYS, ", "),
            near and format(" (did you mean %s?)", near) or "")
    end
    local out = {}
    for _, k in ipairs(LIMIT_KEYS) do
        local v = lim[k]
        if k == "window" then
            if v ~= nil and v ~= "bucket" and v ~= "fixed" then
                return nil, 'limits.window must be "bucket" or "fixed", got ' .. show(v)
            end
        elseif v ~= nil and not (is_number(v) and v > 0) then
            return nil, format("limits.%s must be a positive number, got %s", k, show(v))
        end
        out[k] = v
    end
    return out
end

-- Checked `models` (a list of names), or nil and what is wrong.
local function check_models(models)
    if not is_list(models) then
        return nil, 'models must be a list of model names, e.g. models = { "my-model" }, got ' .. show(models)
    end
    local out = {}
    for i, m in ipairs(models) do
        if type(m) ~= "string" or m == "" then
            return nil, format("models item %d must be a model name (a string), got %s", i, show(m))
        end
        out[i] = m
    end
    return out
end

--- Check the options of weft.mock.start. Returns a checked copy (faults,
--- context, batch timing and limits checked and copied), or nil and a
--- message naming the option (without a "weft.mock.start: " prefix).
---@param opts any
---@return weft.mock.Options? opts
---@return string? err
function M.check(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then return nil, "expected a table of options, got " .. show(opts) end
    local bad = unknown_keys(opts, OPTION_SET)
    if #bad > 0 then
        local near = suggest(bad[1], M.OPTION_KEYS)
        return nil, format("unknown option %s; accepted: %s%s", show_key(bad[1]), concat(M.OPTION_KEYS, ", "),
            near and format(" (did you mean %s?)", near) or "")
    end
    local out, why = {}, nil
    if opts.host ~= nil then
        if type(opts.host) ~= "string" or opts.host == "" then
            return nil, "host must be an address to bind (a string), got " .. show(opts.host)
        end
        out.host = opts.host
    end
    if opts.port ~= nil then
        if not (is_integer(opts.port) and opts.port >= 0 and opts.port <= 65535) then
            return nil, "port must be an integer from 0 to 65535 (0: pick a free one), got " .. show(opts.port)
        end
        out.port = opts.port
    end
    if opts.keys ~= nil then
        out.keys, why = check_keys(opts.keys)
        if not out.keys then return nil, why end
    end
    out.limits, why = check_limits(opts.limits or {})
    if not out.limits then return nil, why end
    if opts.faults ~= nil then
        out.faults, why = M.rules(opts.faults, "lua")
        if not out.faults then return nil, "faults: " .. why end
    end
    out.context, why = M.context(opts.context or {})
    if not out.context then return nil, why end
    if opts.strict_models ~= nil and type(opts.strict_models) ~= "boolean" then
        return nil, "strict_models must be true or false, got " .. show(opts.strict_models)
    end
    out.strict_models = opts.strict_models == true
    if opts.models ~= nil then
        out.models, why = check_models(opts.models)
        if not out.models then return nil, why end
    end
    if opts.seed ~= nil then
        if not is_integer(opts.seed) then return nil, "seed must be an integer, got " .. show(opts.seed) end
        out.seed = opts.seed
    end
    if opts.max_log ~= nil then
        if not (is_integer(opts.max_log) and opts.max_log >= 1) then
            return nil, "max_log must be a positive integer (request log entries kept), got " .. show(opts.max_log)
        end
        out.max_log = opts.max_log
    end
    if opts.max_connections ~= nil then
        local n = opts.max_connections
        if not (is_integer(n) and n >= 1 and n <= MAX_CONNECTIONS) then
            return nil, format("max_connections must be an integer from 1 to %d (connections open at once, "
                .. "all of them may come from one address), got %s", MAX_CONNECTIONS, show(n))
        end
        out.max_connections = n
    end
    out.batch, why = batch.options(opts.batch)
    if not out.batch then return nil, why end
    if opts.clock ~= nil and type(opts.clock) ~= "function" then
        return nil, "clock must be a function returning seconds, got " .. show(opts.clock)
    end
    out.clock = opts.clock
    return out
end

--- The model names each dialect knows in strict mode: its `MODELS`,
--- M.MOCK_MODELS and `extra`. Returns {[dialect] = {[name] = true}}.
---@param extra? string[]
---@return table<string, table<string, boolean>>
function M.known_models(extra)
    local out = {}
    for name, d in pairs(DIALECTS) do
        local set = {}
        for _, m in ipairs(d.MODELS) do set[m] = true end
        for _, m in ipairs(M.MOCK_MODELS) do set[m] = true end
        for _, m in ipairs(extra or {}) do set[m] = true end
        out[name] = set
    end
    return out
end

return M
