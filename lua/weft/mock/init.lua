--- weft.mock: a fault-injecting provider simulator speaking the OpenAI,
--- Anthropic and Gemini dialects, on weft.http.serve.
---
--- Answers are deterministic functions of the request: the reply to a chat
--- is `"echo: " .. <text of the last user message>`, cut to `max_tokens`
--- tokens; embeddings are a fixed function of the text. Token counts come
--- from one documented tokenizer (`M.count_tokens`): every maximal run of
--- letters/digits is one token and every other non-space character is one
--- token; a request's input tokens are the tokens of all its message texts
--- (and system prompt) plus 3 per message (OpenAI: 3 more to prime the
--- reply; Gemini: the texts only, nothing per message).
---
--- Tool calls: a chat request with tools whose last message is the user's
--- is answered with a call of one tool instead of text when its
--- tool_choice asks for a call (OpenAI "required" or a named function,
--- Anthropic {type = "any"} or {type = "tool"}, Gemini mode "ANY") or the
--- user's text starts with "call " ("call NAME" picks the tool NAME if the
--- request has it, else the first); tool_choice "none" (Gemini "NONE")
--- keeps text. The arguments are `{"text": <the user's text>}`; output
--- tokens are those of the tool's name and of the arguments' JSON. A
--- tool's result as the last turn (OpenAI role "tool", Anthropic
--- tool_result blocks, Gemini functionResponse) is answered with "echo: "
--- .. its text, which counts as input.
---
--- ```lua
--- local mock = weft.mock.start { port = 0, keys = { openai = "sk-test" } }
--- print(mock.url)                      -- http://127.0.0.1:PORT
--- mock:set_faults { { dialect = "openai", sequence = { 429, 500, "ok" } } }
--- print(mock:stats().requests)
--- mock:close()
--- ```
---
--- Rate limits (`limits`, per key and dialect): `rps`, `rpm`, `rpd`
--- (requests per second, minute, day), `tpm` (input tokens plus the
--- max_tokens asked, per minute), `quota` (requests before the dialect's
--- quota-exhausted answer). `window` chooses how every limit counts:
--- "bucket" (the default) is a token bucket refilling continuously, as
--- OpenAI and Anthropic describe theirs; "fixed" counts in consecutive
--- windows of the limit's period on a grid that starts with the key's
--- first request, all of it coming back when the next window begins. A
--- request beyond a limit gets the dialect's 429 with Retry-After (and
--- OpenAI's retry-after-ms, Gemini's retryDelay) = the time until it would
--- be admitted: for a full fixed window, until the window resets.
---
--- Context windows (`context = { [model] = max_input_tokens }`, or
--- `mock:set_context`): a chat request (OpenAI chat completions, Anthropic
--- messages, Gemini generateContent and streamGenerateContent) whose input
--- tokens, as counted above, exceed its model's window gets that dialect's
--- real context-length answer instead of a reply, before any rate limit
--- counts it: OpenAI 400 `context_length_exceeded` ("This model's maximum
--- context length is N tokens. However, your messages resulted in M
--- tokens..."), Anthropic 400 `invalid_request_error` "prompt is too long: M
--- tokens > N maximum", Gemini 400 `INVALID_ARGUMENT` "The input token count
--- (M) exceeds the maximum number of tokens allowed (N)." It is logged and
--- counted as the fault "context_length". Models without a window have
--- none.
---
--- Fault rules (`faults` of start, `set_faults`, POST /_mock/faults): a
--- list; the first rule matching a request's `dialect`, `model` and
--- `endpoint` (each optional; endpoints are each dialect's `ENDPOINTS`,
--- such as "chat", "messages", "generateContent", "batch_item") decides
--- its fault: the next of `sequence` (statuses 400..599 or "ok", "reset",
--- "reset_mid_body", "hang", "truncate", "malformed", "oversized",
--- "mid_stream_error"; "ok" once it is used up), else one drawn from
--- `probability` ({[fault] = chance}, chances adding up to at most 1; the
--- rest is "ok"), else "ok". Other keys: `latency` (ms before answering: a
--- number, {min=, max=}, or {median=, tail=, cap=}), `retry_after`
--- (seconds in an injected 429's Retry-After, default 1),
--- `stream_delay_ms` (between stream events), `bytes` (the size of an
--- "oversized" answer). Rules are checked when given
--- (weft.mock.options): an unknown key or a value of the wrong type is an
--- error naming the rule and key, never a rule that silently does nothing.
---
--- ```lua
--- { { dialect = "openai", probability = { [503] = 1.0 } } }          -- every OpenAI request: 503
--- { { model = "gpt-4o", sequence = { 429, 429, "ok" }, retry_after = 2 },
---   { dialect = "anthropic", latency = { min = 200, max = 800 } } }
--- ```
---
--- Strict models (`strict_models = true`, `weft mock --strict-models`): a
--- request for a model the mock does not know gets the dialect's real
--- "model not found" answer, before any rate limit counts it: OpenAI 404
--- `model_not_found` ("The model `x` does not exist or you do not have
--- access to it."), Anthropic 404 `not_found_error` ("model: x"), Gemini
--- 404 `NOT_FOUND` ("models/x is not found for API version v1beta, or is
--- not supported for generateContent. ..."). It is logged and counted as
--- the fault "model_not_found". Known are each dialect's `MODELS`,
--- "mock-words-embedding" and the names in the `models` option. Off by
--- default: any model name is answered.
---
--- Batch APIs: OpenAI's Files and Batches and Anthropic's Message Batches,
--- their processing compressed in time (`batch = {delay=, window=,
--- finalize=, cancel_delay=}`, `mock:set_batch`, POST /_mock/batch), each
--- of their requests answered as its endpoint would, fault rules matching
--- it as `endpoint = "batch_item"`: weft.mock.batch.
---
--- Clients that give up: the server notices a client that closes its
--- connection while its request is being handled (a timeout during a
--- `latency` fault, a hedged request cancelled). Such a request is counted
--- in `stats().closed_early` (and `closed_early_by_model`) and its log entry
--- gets `closed_early = true`, whether it went during the latency sleep
--- (then nothing is sent: status 0) or in the middle of a stream. A `hang`
--- fault's handler never wakes to see it and is not counted.
local json = require "weft.json"
local http = require "weft.http"
local errors = require "weft.error"

local type, pairs, ipairs, tostring, tonumber, error, select = type, pairs, ipairs, tostring,
    tonumber, error, select
local floor, max, min, ceil = math.floor, math.max, math.min, math.ceil
local format, gmatch, concat = string.format, string.gmatch, table.concat

local M = {}

local DIALECTS = {
    openai = require "weft.mock.openai",
    anthropic = require "weft.mock.anthropic",
    gemini = require "weft.mock.gemini",
}
M.DIALECTS = DIALECTS

--- The key each dialect expects unless `keys` (or `weft mock --key`) says
--- otherwise: OpenAI `Authorization: Bearer sk-weft-mock`, Anthropic
--- `x-api-key: sk-ant-weft-mock` (or a bearer token; with an
--- `anthropic-version` header), Gemini `x-goog-api-key: weft-mock-key` (or
--- `?key=`). Not secrets: constants for tests and examples.
local DEFAULT_KEYS = { openai = "sk-weft-mock", anthropic = "sk-ant-weft-mock", gemini = "weft-mock-key" }
M.DEFAULT_KEYS = DEFAULT_KEYS

local common = require "weft.mock.common"
local batch = require "weft.mock.batch"
local options = require "weft.mock.options"
--- The checks of start's options and of fault rules (weft.mock.options).
M.options = options
M.count_tokens = common.count_tokens
M.pieces = common.pieces
M.answer = common.answer
M.embedding = common.embedding
M.common = common

----------------------------------------------------------- rate limits

-- One limit of a key: `limit` units per `period` seconds, in one of two
-- shapes (the `window` option). A token bucket ("bucket", the default)
-- refills continuously; `level` is what is available. A fixed window
-- ("fixed") counts units in consecutive windows of `period` seconds on a
-- grid that starts with the key's first request; `level` is what is left
-- in the current window, which began at `start`, and everything comes back
-- at once when the next window begins.
local function bucket(limit, period, now, fixed)
    return { limit = limit, period = period, level = limit, t = now, fixed = fixed or nil,
             start = fixed and now or nil }
end

local function refill(b, now)
    if b.fixed then
        if now >= b.start + b.period then
            b.start = b.start + floor((now - b.start) / b.period) * b.period
            b.level = b.limit
        end
    else
        b.level = min(b.limit, b.level + (now - b.t) * (b.limit / b.period))
    end
    b.t = now
end

-- Seconds until `need` is available, 0 when it is now.
local function wait_for(b, need)
    if b.level >= need then return 0 end
    if b.fixed then return b.start + b.period - b.t end
    return (need - b.level) / (b.limit / b.period)
end

------------------------------------------------------------ the mock

local Mock = {}
Mock.__index = Mock

local function now() return weft.now() end

-- The request log is a ring of max_log entries (no shifting per request).
function Mock:_log_request(entry)
    local n = self.log_n + 1
    self.log_n = n
    self.log_entries[(n - 1) % self.max_log + 1] = entry
end

local function count(t, k)
    if k == nil then return end
    k = tostring(k)
    t[k] = (t[k] or 0) + 1
end

--- Replace the fault rules (see the module's notes). Every rule is
--- checked first (weft.mock.options.rules): an unknown key, a value of the
--- wrong type or a fault that does not exist raises, naming the rule and
--- key; the rules in force stay. The mock keeps a copy.
---@param rules table[]
function Mock:set_faults(rules)
    local checked, why = options.rules(rules, "lua")
    if not checked then error("mock:set_faults: " .. why, 2) end
    self.rules = checked
end

--- Clear stats, the request log, rate-limit state, faults, batch jobs and
--- files.
function Mock:reset()
    self.counters = { requests = 0, by_endpoint = {}, by_model = {}, by_status = {}, by_fault = {},
                      by_dialect = {}, closed_early = 0, closed_early_by_model = {}, in_flight = 0,
                      max_in_flight = 0, batch_items = 0 }
    self.batch_jobs, self.batch_order = {}, {}
    self.batch_files, self.batch_file_order = {}, {}
    self.log_entries = {}
    self.log_n = 0
    self.buckets = {}
    self.quota_used = {}
    self.rules = {}
end

--- Counters: requests, by_endpoint, by_model, by_status, by_fault,
--- by_dialect, closed_early (requests whose client went away before the
--- answer was complete), closed_early_by_model (model -> count),
--- in_flight (requests being answered now), max_in_flight (the most at
--- once since the last reset) and batch_items (requests of batch jobs
--- processed).
function Mock:stats()
    local c = self.counters
    return { requests = c.requests, by_endpoint = c.by_endpoint, by_model = c.by_model,
             by_status = c.by_status, by_fault = c.by_fault, by_dialect = c.by_dialect,
             closed_early = c.closed_early, closed_early_by_model = c.closed_early_by_model,
             in_flight = c.in_flight, max_in_flight = c.max_in_flight, batch_items = c.batch_items }
end

--- Change the batch timing ({delay=, window=, finalize=, cancel_delay=},
--- seconds; see weft.mock.batch) of jobs created from now on; options not
--- given keep their value.
---@param opts table
function Mock:set_batch(opts)
    local o, why = batch.options(opts, self.batch_opts)
    if not o then error("mock:set_batch: " .. why, 2) end
    self.batch_opts = o
end

--- Replace the context windows ({[model] = max_input_tokens}; see the
--- module's notes). Models not named have no window.
---@param windows table<string, integer>
function Mock:set_context(windows)
    local w, why = options.context(windows)
    if not w then error("mock:set_context: " .. why, 2) end
    self.context = w
end

--- The request log (newest last): method, path, dialect, model, headers
--- (credentials redacted), body, status (0 when nothing was sent: reset,
--- hang, a client gone during the latency), fault, closed_early.
function Mock:requests()
    local out, ring, n, cap = {}, self.log_entries, self.log_n, self.max_log
    for i = math.max(1, n - cap + 1), n do out[#out + 1] = ring[(i - 1) % cap + 1] end
    return out
end

--- Stop listening and end every request still being answered (a `hang`
--- fault would otherwise keep its handler, and the process, alive).
function Mock:close()
    if self.server then self.server:close() end
    for task in pairs(self.active) do task:cancel() end
end

-- The client of `entry`'s request went away before its answer was
-- complete (it gave up: a timeout, a cancelled hedge). Counted once.
function Mock:_closed_early(entry)
    if entry.closed_early then return end
    entry.closed_early = true
    local c = self.counters
    c.closed_early = c.closed_early + 1
    count(c.closed_early_by_model, entry.model)
end

-- In strict mode, the dialect's "model not found" answer for a request
-- whose model the mock does not know; nil otherwise (and for requests
-- without a model).
function Mock:_unknown_model(ctx)
    if not self.known_models or ctx.model == nil then return nil end
    local known = self.known_models[ctx.dialect]
    if known[ctx.model] then return nil end
    return self.dialects[ctx.dialect].model_not_found(ctx)
end

-- Pick the fault for a request; returns fault, rule.
function Mock:_pick_fault(dialect, model, endpoint)
    for _, r in ipairs(self.rules) do
        if (not r.dialect or r.dialect == dialect) and (not r.model or r.model == model)
            and (not r.endpoint or r.endpoint == endpoint) then
            if r.sequence then
                local f = r.sequence[r._next or 1]
                if f ~= nil then
                    r._next = (r._next or 1) + 1
                    return f, r
                end
                if not r.probability then return "ok", r end
            end
            if r.probability then
                local x = self.random()
                local acc = 0
                for _, fp in ipairs(r._draw) do
                    acc = acc + fp[2]
                    if x < acc then return fp[1], r end
                end
                return "ok", r
            end
            return "ok", r
        end
    end
    return "ok", nil
end

function Mock:_latency(rule)
    local l = rule and rule.latency
    if l == nil then return 0 end
    if type(l) == "number" then return l / 1000 end
    if l.min and l.max then return (l.min + (l.max - l.min) * self.random()) / 1000 end
    if l.median then
        -- heavy tail: Pareto with the given median and shape `tail` (default 1.5)
        local a = l.tail or 1.5
        local xm = l.median / (2 ^ (1 / a))
        local ms = xm / ((1 - self.random()) ^ (1 / a))
        if l.cap then ms = min(ms, l.cap) end
        return ms / 1000
    end
    return 0
end

-- Rate limits of one key. Returns nil when admitted, or a limit record
-- {what=, wait=, daily=, quota=} when refused. Fills `hdr` with the state.
function Mock:_admit(dialect, key, tokens, st)
    local lim = self.limits
    local t = now()
    local b = self.buckets[dialect .. "\0" .. key]
    if not b then
        local fixed = self.window == "fixed"
        b = {
            requests = bucket(lim.rpm, 60, t, fixed),
            tokens = bucket(lim.tpm, 60, t, fixed),
            daily = lim.rpd and bucket(lim.rpd, 86400, t, fixed) or nil,
            second = lim.rps and bucket(lim.rps, 1, t, fixed) or nil,
        }
        self.buckets[dialect .. "\0" .. key] = b
    end
    refill(b.requests, t)
    refill(b.tokens, t)
    if b.daily then refill(b.daily, t) end
    if b.second then refill(b.second, t) end
    st.buckets = b
    if lim.quota then
        local used = self.quota_used[dialect .. "\0" .. key] or 0
        if used >= lim.quota then return { quota = true } end
    end
    if b.daily and b.daily.level < 1 then
        return { what = "requests", daily = true, wait = wait_for(b.daily, 1) }
    end
    if b.second then
        local ws = wait_for(b.second, 1)
        if ws > 0 then return { what = "requests", wait = ws } end
    end
    local wr = wait_for(b.requests, 1)
    if wr > 0 then return { what = "requests", wait = wr } end
    local wt = wait_for(b.tokens, min(tokens, b.tokens.limit))
    if wt > 0 then return { what = "tokens", wait = wt } end
    b.requests.level = b.requests.level - 1
    if b.second then b.second.level = b.second.level - 1 end
    b.tokens.level = b.tokens.level - tokens
    if b.daily then b.daily.level = b.daily.level - 1 end
    if lim.quota then
        local k = dialect .. "\0" .. key
        self.quota_used[k] = (self.quota_used[k] or 0) + 1
    end
    return nil
end

--- Seconds until a limit is whole again (the x-ratelimit-reset-* value):
--- a bucket refilled, or the end of a fixed window something was used in.
M.reset_in = common.reset_in

-- An admin request refused: 400 {"error": message}.
local function bad_request(message)
    return { status = 400, headers = { ["content-type"] = "application/json" },
             body = json.encode { error = message } }
end

-- Admin endpoints: /_mock/faults, /_mock/stats, /_mock/reset, /_mock/requests.
function Mock:_admin(req)
    local p = req.path
    if p == "/_mock/stats" and req.method == "GET" then
        return { status = 200, headers = { ["content-type"] = "application/json" },
                 body = json.encode(self:stats(), { sort_keys = true }) }
    elseif p == "/_mock/requests" and req.method == "GET" then
        return { status = 200, headers = { ["content-type"] = "application/json" },
                 body = json.encode(json.array(self:requests()), { sort_keys = true }) }
    elseif p == "/_mock/reset" and req.method == "POST" then
        self:reset()
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' }
    elseif p == "/_mock/batch" and req.method == "POST" then
        local o, err = json.decode(req.body)
        if o == nil then return bad_request(err) end -- json.decode's message says "invalid JSON: ..."
        local opts, why = batch.options(type(o) == "table" and o or nil, self.batch_opts)
        if type(o) ~= "table" or not opts then
            return bad_request(why or "expected a JSON object of batch options {delay, window, finalize, cancel_delay}")
        end
        self.batch_opts = opts
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = json.encode(opts) }
    elseif p == "/_mock/faults" and req.method == "POST" then
        local rules, err = json.decode(req.body)
        if rules == nil then return bad_request(err) end
        local checked, why = options.rules(rules, "json")
        if not checked then return bad_request(why) end
        self.rules = checked
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' }
    end
    return { status = 404, body = '{"error":"unknown admin endpoint"}' }
end

local REDACT = { authorization = true, ["x-api-key"] = true, ["x-goog-api-key"] = true }

-- The request log never holds a credential: auth headers and key=
-- parameters are blanked, and every value loaded in this process's secrets
-- store is replaced wherever it appears (weft.secrets.redact).
local redact = require("weft._secrets").redact

local function redacted_headers(h)
    local out = {}
    for k, v in pairs(h) do
        if REDACT[k] then out[k] = "<redacted>"
        elseif type(v) == "string" then out[k] = redact(v)
        else out[k] = v end
    end
    return out
end

local function redact_query(q)
    if not q then return nil end
    return redact((q:gsub("([Kk][Ee][Yy]=)[^&]*", "%1<redacted>")))
end

-- The whole request path: dialect, parse, auth, limits, faults, answer.
function Mock:_handle(req, res)
    if req.path:sub(1, 7) == "/_mock/" then return self:_admin(req) end
    local dname, endpoint, model, id = nil, nil, nil, nil
    for name, d in pairs(DIALECTS) do
        local ep, m, i = d.route(req)
        if ep then
            dname, endpoint, model, id = name, ep, m, i
            break
        end
    end
    local c = self.counters
    c.requests = c.requests + 1
    local entry = { method = req.method, path = req.path, query = redact_query(req.query),
                    headers = redacted_headers(req.headers), body = redact(req.body), time = weft.time() }
    self:_log_request(entry)
    if not dname then
        count(c.by_status, 404)
        entry.status = 404
        return { status = 404, headers = { ["content-type"] = "application/json" },
                 body = '{"error":{"message":"Unknown endpoint","type":"invalid_request_error"}}' }
    end
    local d = DIALECTS[dname]
    entry.dialect, entry.endpoint = dname, endpoint
    count(c.by_dialect, dname)
    count(c.by_endpoint, dname .. " " .. endpoint)

    local function reply(status, r)
        entry.status = status
        count(c.by_status, status)
        return r
    end

    -- auth
    local key_ok, auth_resp = d.auth(req, self.keys[dname])
    if not key_ok then return reply(auth_resp.status, auth_resp) end

    -- body
    local body = {}
    if req.method == "POST" and not (d.RAW_BODY and d.RAW_BODY[endpoint]) then
        local v, err = json.decode(req.body)
        if type(v) ~= "table" then
            return reply(400, d.error_response(400, "invalid_request", "Invalid JSON body: " .. tostring(err)))
        end
        body = v
    end
    model = model or body.model
    entry.model = model
    count(c.by_model, model)
    local ctx = { mock = self, req = req, res = res, body = body, model = model, endpoint = endpoint,
                  dialect = dname, entry = entry, id = id }

    -- the request must be well-formed before it is counted against limits
    local bad = d.validate and d.validate(ctx)
    if bad then return reply(bad.status, bad) end

    -- strict_models: a model the mock does not know gets the dialect's 404,
    -- before any limit counts the request
    local unknown = self:_unknown_model(ctx)
    if unknown then
        entry.fault = "model_not_found"
        count(c.by_fault, entry.fault)
        return reply(unknown.status, unknown)
    end

    -- rate limits and quota
    local key = d.key_of(req) or ""
    local in_tokens = d.input_tokens and d.input_tokens(ctx) or 0
    ctx.input_tokens = in_tokens

    -- the model's context window: a prompt too long is refused as the
    -- provider would, before it counts against any limit
    local window = self.context[model]
    if window and in_tokens > window then
        local r = d.context_response(ctx, in_tokens, window)
        if r then
            entry.fault = "context_length"
            count(c.by_fault, entry.fault)
            return reply(r.status, r)
        end
    end
    local max_out = d.max_tokens and d.max_tokens(ctx) or 0
    local st = {}
    local refused = self:_admit(dname, key, in_tokens + max_out, st)
    ctx.limits = st.buckets
    if refused then
        entry.fault = refused.quota and "quota" or "rate_limit"
        count(c.by_fault, entry.fault)
        local r = d.limit_response(ctx, refused)
        return reply(r.status, r)
    end

    -- faults
    local fault, rule = self:_pick_fault(dname, model, endpoint)
    entry.fault = fault ~= "ok" and tostring(fault) or nil
    if entry.fault then count(c.by_fault, fault) end
    local delay = self:_latency(rule)
    if delay > 0 then weft.sleep(delay) end
    if res:gone() then -- the client gave up while the answer was delayed
        entry.status = 0
        self:_closed_early(entry)
        return
    end
    ctx.stream_delay = rule and rule.stream_delay_ms and rule.stream_delay_ms / 1000 or 0
    ctx.rule = rule
    ctx.fault = fault
    if type(fault) == "number" then
        return reply(fault, d.status_response(ctx, fault))
    elseif fault == "reset" then
        entry.status = 0
        res:abort()
        return
    elseif fault == "hang" then
        entry.status = 0
        weft.sleep(1e9)
        return
    elseif fault == "malformed" then
        return reply(200, { status = 200, headers = { ["content-type"] = "application/json" },
                            body = '{"id": "broken", "choices": [ {"message": ' })
    elseif fault == "oversized" then
        entry.status = 200
        local bytes = rule and rule.bytes or 80 * 1024 * 1024
        res:start(200, { ["content-type"] = "application/json" })
        local chunk = string.rep(" ", 64 * 1024)
        local sent = 0
        while sent < bytes do
            if not res:write(chunk) then
                if res:gone() then self:_closed_early(entry) end
                return
            end
            sent = sent + #chunk
        end
        res:finish()
        return
    end
    local r = d.answer(ctx)
    if r then return reply(r.status or 200, r) end
    -- streamed (or cut by a fault): the writers stop when a write finds
    -- the client gone
    if res:gone() then self:_closed_early(entry) end
    entry.status = entry.status or 200
    count(c.by_status, entry.status)
end

---@class weft.mock.Options
---@field host? string default "127.0.0.1"
---@field port? integer default 0 (ephemeral)
---@field keys? {openai?: string, anthropic?: string, gemini?: string} expected keys (defaults: M.DEFAULT_KEYS)
---@field limits? {rps?: number, rpm?: number, tpm?: number, rpd?: number, quota?: integer, window?: "bucket"|"fixed"} per key and dialect (see the module's notes)
---@field faults? table[] fault rules (see set_faults)
---@field seed? integer seed of the fault/latency random generator (default 1)
---@field max_log? integer request log entries kept (default 1000)
---@field max_connections? integer connections open at once, all of them may come from one address (default weft.http.serve's: 10000, a quarter of them from one address)
---@field context? table<string, integer> context windows: model -> max input tokens (see the module's notes)
---@field strict_models? boolean answer unknown model names with the dialect's 404 (see the module's notes)
---@field models? string[] more model names strict_models knows
---@field batch? {delay?: number, window?: number, finalize?: number, cancel_delay?: number} batch timing (weft.mock.batch)
---@field clock? fun(): number the batch engine's clock (default weft.now; tests step it)

--- Start a mock provider on weft.http.serve. Returns the mock handle with
--- `url`, `port`, `set_faults`, `set_context`, `set_batch`, `reset`,
--- `stats`, `requests`, `close`. Every option is checked first
--- (weft.mock.options.check): an unknown option, limit, dialect or fault
--- rule key, or a value of the wrong type, raises naming it.
---@param opts? weft.mock.Options
function M.start(opts)
    local o, why = options.check(opts)
    if not o then error("weft.mock.start: " .. why, 2) end
    local self = setmetatable({}, Mock)
    self.keys = {}
    for name in pairs(DIALECTS) do
        self.keys[name] = (o.keys and o.keys[name]) or DEFAULT_KEYS[name]
    end
    local lim = o.limits
    self.limits = { rpm = lim.rpm or 10000, tpm = lim.tpm or 10000000, rpd = lim.rpd, rps = lim.rps,
                    quota = lim.quota }
    self.window = lim.window or "bucket"
    self.max_log = o.max_log or 1000
    self.context = o.context
    self.batch_opts = o.batch
    self.clock = o.clock or weft.now
    self.dialects = DIALECTS
    self.known_models = o.strict_models and options.known_models(o.models) or nil
    -- A private generator (Park-Miller) so faults replay exactly for a seed.
    local state = (o.seed or 1) % 2147483647
    if state <= 0 then state = state + 2147483646 end
    self.random = function()
        state = (state * 16807) % 2147483647
        return (state - 1) / 2147483646
    end
    self.active = setmetatable({}, { __mode = "k" }) -- handler tasks running now
    self:reset()
    self.rules = o.faults or {}
    self.server = http.serve {
        host = o.host or "127.0.0.1",
        port = o.port or 0,
        max_body_size = 32 * 1024 * 1024,
        -- A mock's clients are usually one process (a test, a benchmark
        -- holding thousands of calls open): when the cap is given, one
        -- address may use all of it, not weft.http.serve's quarter.
        max_connections = o.max_connections,
        max_connections_per_address = o.max_connections,
        handler = function(req, res)
            local task = weft.current()
            self.active[task] = true
            local c = self.counters
            c.in_flight = c.in_flight + 1
            if c.in_flight > c.max_in_flight then c.max_in_flight = c.in_flight end
            local ok, r = pcall(self._handle, self, req, res)
            -- (a reset meanwhile started the counters again: only its own count)
            if self.counters == c then c.in_flight = c.in_flight - 1 end
            self.active[task] = nil
            if not ok then error(r, 0) end
            return r
        end,
    }
    self.port = self.server.port
    local host = o.host or "127.0.0.1"
    self.url = "http://" .. (host:find(":") and ("[" .. host .. "]") or host) .. ":" .. self.port
    return self
end

return M
