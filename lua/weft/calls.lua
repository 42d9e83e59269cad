--- weft.calls: what the host records about every call it handles.
---
--- A call is one logical request to a provider (model:complete, or a
--- `weft.retry.run` with provider/model set), made of one or more attempts.
--- The host opens it, and from then on every attempt, retry, byte on the
--- wire and token is attributed to it:
---
--- ```lua
--- local call = weft.calls.begin { provider = "openai", model = "gpt-4o-mini", operation = "chat" }
--- call:attempt()                     -- a try starts ("request" hook)
--- local res = weft.http.request { ..., on_data = function(chunk) call:first_token() ... end }
--- call:http(res)                     -- what weft.http measured: wire time, quota headers
--- call:usage(120, 35)                -- tokens in/out -> weft_tokens_total, weft_cost_usd_total
--- call:finish()                      -- or call:finish(err): outcome, latency, log line, hooks
--- ```
---
--- Lower layers do not look the call up: weft.http returns its time on the
--- wire with the response (`res.wire`, also on the error it raises), a
--- limiter's acquire returns the seconds it queued; whoever holds the call
--- records them (call:http, call:wait_time). weft.retry.run records its
--- backoff sleeps on its call and hands the call to the attempt function.
---
--- Metrics (weft.metrics.std): weft_calls_total{outcome}, weft_attempts_total,
--- weft_retries_total{reason}, weft_call_duration_seconds,
--- weft_time_to_first_token_seconds, weft_overhead_seconds, weft_tokens_total,
--- weft_cost_usd_total, weft_quota_remaining. They are the one ledger of
--- calls: `totals` (model:usage()) and the exit summary read them back.
---
--- Logs: every line a task writes while it runs a call carries `call_id`,
--- `provider` and `model`; the call ends with one line ("call" or "call
--- failed") with duration, attempts and outcome. Success lines beyond
--- `success_lines_per_second` (default 20) are sampled out; the next line
--- written says how many were left out (`sampled_out`). Failures are always
--- written.
---
--- Hooks: `weft.on(event, fn)` for "request" (an attempt starts), "response"
--- (a call succeeded), "retry", "error" (a call failed) and "reload" (a
--- plugin was loaded or failed to load). fn gets one table describing the
--- event. A hook that raises is logged and counted (weft_hook_errors_total);
--- the call goes on.
local metrics = require "weft.metrics"
local log = require "weft.log"
local T = require "weft._task"
local rate = require("weft._http_client").rate
local record = metrics.record

local type, error, pairs, ipairs, pcall, tostring, tonumber, setmetatable, unpack =
    type, error, pairs, ipairs, pcall, tostring, tonumber, setmetatable, unpack
local fmt, floor, max, random = string.format, math.floor, math.max, math.random

local std = metrics.std
local now = T.now

local M = {}

-- Every clock read goes through here so tests can inject one.
local clock = now

--- Replace the clock (a function returning seconds); nil restores weft.now.
---@param fn? fun(): number
function M.set_clock(fn)
    clock = fn or now
end

------------------------------------------------------------------ hooks

local EVENTS = { request = true, response = true, retry = true, error = true, reload = true, escalate = true }
local hooks = {}
for e in pairs(EVENTS) do hooks[e] = {} end

--- Subscribe fn(event_table) to an event. Returns a function that
--- unsubscribes it.
---@param event "request"|"response"|"retry"|"error"|"reload"|"escalate"
---@param fn fun(ev: table)
---@return fun()
function M.on(event, fn)
    if not EVENTS[event] then
        error("weft.on: unknown event " .. tostring(event) .. " (request, response, retry, error, reload, escalate)", 2)
    end
    if type(fn) ~= "function" then error("weft.on: expected a function", 2) end
    local list = hooks[event]
    list[#list + 1] = fn
    return function()
        for i = #list, 1, -1 do
            if list[i] == fn then table.remove(list, i) return end
        end
    end
end

--- Run the hooks of `event` with `payload`. A hook that raises is logged
--- and counted; the others still run.
---@param event string
---@param payload table
function M.emit(event, payload)
    local list = hooks[event]
    if not list or #list == 0 then return end
    payload.event = event
    -- a copy: a hook that unsubscribes does not make the next one skipped
    local copy = { unpack(list) }
    for _, fn in ipairs(copy) do
        local ok, err = pcall(fn, payload)
        if not ok then
            std.hooks:inc(1, event)
            log.warn("hook failed", { event = event, error = tostring(err) })
        end
    end
end

------------------------------------------------------------------ prices

-- USD per million tokens, by provider then model: {input=, output=}.
local prices = {}
local warned = {}

--- Set the price table of a provider (what its config carries):
--- model -> {input = USD per 1M input tokens, output = USD per 1M output}.
---@param provider string
---@param table table<string, {input: number, output: number}>
function M.set_prices(provider, table)
    if type(provider) ~= "string" or type(table) ~= "table" then
        error("weft.calls.set_prices: expected a provider name and a table", 2)
    end
    for model, p in pairs(table) do
        if type(p) ~= "table" or type(p.input) ~= "number" or type(p.output) ~= "number"
            or p.input < 0 or p.output < 0 then
            error(("weft.calls.set_prices: %s/%s: expected {input = USD per 1M tokens, output = ...}"):format(
                provider, tostring(model)), 2)
        end
    end
    prices[provider] = table
end

local function price_of(provider, model)
    local t = prices[provider]
    return t and t[model]
end

--- The price of provider/model ({input=, output=} USD per 1M tokens), or nil.
---@param provider string
---@param model string
function M.price(provider, model) return price_of(provider, model) end

------------------------------------------------------------------ sampling

local sample = { rate = 20, tokens = 20, last = nil, skipped = 0 }

--- Options: success_lines_per_second (20; 0 logs none, math.huge all).
---@param opts {success_lines_per_second?: number}
function M.configure(opts)
    if type(opts) ~= "table" then error("weft.calls.configure: expected a table", 2) end
    local r = opts.success_lines_per_second
    if r ~= nil then
        if type(r) ~= "number" or r < 0 then
            error("weft.calls.configure: success_lines_per_second must be a number >= 0", 2)
        end
        sample.rate, sample.tokens, sample.last = r, r, nil
    end
end

-- A token bucket of success lines: rate per second, burst = rate.
local function sample_admit()
    if sample.rate == math.huge then return true end
    local t = clock()
    if sample.last and t > sample.last then
        sample.tokens = math.min(sample.rate, sample.tokens + (t - sample.last) * sample.rate)
    end
    sample.last = t
    if sample.tokens >= 1 then
        sample.tokens = sample.tokens - 1
        return true
    end
    return false
end

------------------------------------------------------------------ totals

-- Series handles by provider, model and operation: a cached handle costs
-- a fraction of a lookup by label values, and a call touches eight. The
-- cache also names every provider/model/operation and outcome recorded.
local series_cache = {}
local function series_of(p, m, op)
    local bp = series_cache[p]
    if not bp then bp = {} series_cache[p] = bp end
    local bm = bp[m]
    if not bm then bm = {} bp[m] = bm end
    local s = bm[op]
    if not s then
        s = {
            attempts = std.attempts:labels(p, m, op),
            latency = std.latency:labels(p, m, op), overhead = std.overhead:labels(p, m, op),
            calls = {}, key = p .. "/" .. m, p = p, m = m, op = op,
            -- ttft, tokens_in, tokens_out, cost: made on first use (a model
            -- without a price must not show a cost series)
        }
        bm[op] = s
    end
    return s
end

-- What the registry holds for provider `p` and model `m`, every operation.
local function read(p, m)
    local total = std.calls:value(p, m)
    local t = { calls = total, errors = total - std.calls:value(p, m, nil, "success"), outcomes = {},
                input_tokens = std.tokens:value(p, m, "input"), output_tokens = std.tokens:value(p, m, "output") }
    local cost, priced = std.cost:value(p, m)
    t.cost, t.priced = cost, priced > 0
    local bm = series_cache[p] and series_cache[p][m]
    for _, s in pairs(bm or {}) do
        for outcome in pairs(s.calls) do
            if outcome ~= "success" and not t.outcomes[outcome] then
                t.outcomes[outcome] = std.calls:value(p, m, nil, outcome)
            end
        end
    end
    return t
end

--- A mark to count totals from: what the registry holds now for every
--- provider/model a call was recorded under.
---@return table
function M.mark()
    local mark = {}
    for p, bp in pairs(series_cache) do
        local mp = {}
        for m in pairs(bp) do mp[m] = read(p, m) end
        mark[p] = mp
    end
    return mark
end

---@class weft.CallTotals
---@field calls integer
---@field errors integer calls that failed (any outcome but success)
---@field outcomes table<string, integer> failed calls by outcome (error kind)
---@field input_tokens integer
---@field output_tokens integer
---@field cost number USD
---@field priced boolean a cost was recorded for this model (some price is known)

--- The calls recorded under provider/model (every operation), their
--- tokens and cost, read from the metrics registry (weft_calls_total,
--- weft_tokens_total, weft_cost_usd_total); since a mark() when given.
--- (Past a metric's series cap, calls of new label values go to its
--- `other` series and are not counted here.)
---@param provider string
---@param model string
---@param since? table a mark()
---@return weft.CallTotals
function M.totals(provider, model, since)
    local t = read(provider, model)
    local b = since and since[provider] and since[provider][model]
    if b then
        t.calls, t.errors = t.calls - b.calls, t.errors - b.errors
        t.input_tokens, t.output_tokens = t.input_tokens - b.input_tokens, t.output_tokens - b.output_tokens
        t.cost = t.cost - b.cost
        for outcome, n in pairs(t.outcomes) do t.outcomes[outcome] = n - (b.outcomes[outcome] or 0) end
    end
    return t
end

------------------------------------------------------------------ summary

-- The summary's counts, tokens and cost are the registry's (totals, since
-- the mark of the last reset_summary). Its latency quantiles are not read
-- from weft_call_duration_seconds: quantiles of those buckets (1 ms to
-- 5 min, 17 bounds) are bounds or interpolations between them, e.g. p95
-- of calls taking 1..20 ms reads 23.5 ms (between the 10 and 25 ms
-- bounds) where it is 19 ms. So each provider/model keeps a reservoir of
-- its latencies: every one up to RESERVOIR, then a uniform sample.
local RESERVOIR = 10000
local summary = {}   -- "provider/model" -> {provider=, model=, lat=, seen=}
local summary_order = {}
local summary_since -- a mark(), or nil: since the start

local function record_summary(c, duration)
    local key = c.series.key
    local a = summary[key]
    if not a then
        a = { provider = c.provider, model = c.model, lat = {}, seen = 0 }
        summary[key] = a
        summary_order[#summary_order + 1] = key
    end
    a.seen = a.seen + 1
    if #a.lat < RESERVOIR then
        a.lat[#a.lat + 1] = duration
    else
        local j = random(a.seen)
        if j <= RESERVOIR then a.lat[j] = duration end
    end
end

local function quantile(sorted, q)
    local n = #sorted
    if n == 0 then return nil end
    local i = math.ceil(q * n)
    if i < 1 then i = 1 end
    return sorted[i]
end

local function ms(v)
    if not v then return "-" end
    if v >= 1 then return fmt("%.2fs", v) end
    return fmt("%.1fms", v * 1000)
end

-- More sections of the summary (weft.policy adds its models'), each a
-- function returning text ("" when it has nothing to say).
local sections = {}

--- Add a section to the exit summary: `fn()` returns its text or "".
---@param fn fun(): string
function M.add_summary(fn)
    sections[#sections + 1] = fn
end

local function more_sections(out)
    for _, fn in ipairs(sections) do
        local ok, text = pcall(fn)
        if ok and type(text) == "string" and text ~= "" then out[#out + 1] = text end
    end
    return table.concat(out)
end

--- The summary table of the calls made so far ("" when none): per
--- provider/model, calls, errors by kind, p50/p95/p99 latency, tokens, cost;
--- then the sections other modules added (policy models).
--- Counts, tokens and cost are read from the metrics registry; the
--- latency quantiles come from a sample of the calls' latencies (see above).
---@return string
function M.summary()
    if #summary_order == 0 then return more_sections({}) end
    local rows = { { "provider/model", "calls", "errors", "p50", "p95", "p99", "tokens in", "tokens out", "cost USD" } }
    local total = { calls = 0, tin = 0, tout = 0, cost = 0, nerrors = 0, priced = false }
    for _, key in ipairs(summary_order) do
        local a = summary[key]
        local t = M.totals(a.provider, a.model, summary_since)
        local sorted = { unpack(a.lat) }
        table.sort(sorted)
        local errs = {}
        for kind, n in pairs(t.outcomes) do
            if n > 0 then errs[#errs + 1] = kind .. " " .. n end
        end
        table.sort(errs)
        rows[#rows + 1] = { key, tostring(t.calls), #errs > 0 and table.concat(errs, ", ") or "0",
            ms(quantile(sorted, 0.5)), ms(quantile(sorted, 0.95)), ms(quantile(sorted, 0.99)),
            tostring(t.input_tokens), tostring(t.output_tokens), t.priced and fmt("%.6f", t.cost) or "-" }
        total.calls, total.nerrors = total.calls + t.calls, total.nerrors + t.errors
        total.tin, total.tout = total.tin + t.input_tokens, total.tout + t.output_tokens
        if t.priced then total.cost, total.priced = total.cost + t.cost, true end
    end
    if #summary_order > 1 then
        rows[#rows + 1] = { "total", tostring(total.calls), tostring(total.nerrors), "", "", "",
            tostring(total.tin), tostring(total.tout), total.priced and fmt("%.6f", total.cost) or "-" }
    end
    local width = {}
    for _, r in ipairs(rows) do
        for i, cell in ipairs(r) do width[i] = max(width[i] or 0, #cell) end
    end
    local out = { "weft: calls summary\n" }
    for n, r in ipairs(rows) do
        local cells = {}
        for i, cell in ipairs(r) do
            cells[i] = i == 1 and cell .. (" "):rep(width[i] - #cell) or (" "):rep(width[i] - #cell) .. cell
        end
        out[#out + 1] = "  " .. table.concat(cells, "  ") .. "\n"
        if n == 1 then
            local rule = {}
            for i = 1, #width do rule[i] = ("-"):rep(width[i]) end
            out[#out + 1] = "  " .. table.concat(rule, "  ") .. "\n"
        end
    end
    return more_sections(out)
end

--- Forget the summary (tests): it counts from here.
function M.reset_summary()
    summary, summary_order, summary_since = {}, {}, M.mark()
end

------------------------------------------------------------------ calls

-- A process-unique prefix, so call ids from several processes differ.
local prefix
do
    local f = io.open("/dev/urandom", "rb")
    local b = f and f:read(4)
    if f then f:close() end
    if b and #b == 4 then
        prefix = fmt("%02x%02x%02x%02x", b:byte(1, 4))
    else
        prefix = fmt("%08x", floor((os.time() * 1000 + os.clock() * 1e6) % 4294967296))
    end
end
local seq = 0

---@class weft.Call
---@field id string
---@field provider string
---@field model string
---@field operation string
---@field attempts integer
---@field retries integer
---@field tokens_in integer
---@field tokens_out integer
---@field cost? number USD, when the price is known
local Call = {}
Call.__index = Call

---@class weft.CallOptions
---@field provider? string
---@field model? string
---@field operation? string default "call"
---@field id? string a call id to use (default: generated)
---@field price? {input: number, output: number} USD per 1M tokens (else the provider's price table)

-- What a call's log binding shows: line field -> the call's own field
-- (weft.log reads the metatable's __log_fields: no table per call).
Call.__log_fields = { call_id = "id", provider = "provider", model = "model" }

--- Open a call in the current task: begin without an options table (the
--- pipeline's form; `price` from the provider's price table).
---@param provider? string
---@param model? string
---@param operation? string default "call"
---@param id? string
---@param price? {input: number, output: number}
---@return weft.Call
local function open(provider, model, operation, id, price)
    seq = seq + 1
    id = id or (prefix .. "-" .. seq)
    provider, model = tostring(provider or "unknown"), tostring(model or "unknown")
    operation = tostring(operation or "call")
    local c = setmetatable({
        id = id, provider = provider, model = model, operation = operation, price = price,
        start = clock(), wire = 0, waited = 0, attempts = 0, retries = 0, tokens_in = 0, tokens_out = 0,
    }, Call)
    c.series = series_of(provider, model, operation)
    -- the task's log lines carry the call until it finishes
    c.prev_log = log._bound()
    log.bind(c)
    return c
end
M.open = open

--- Open a call in the current task.
---@param opts? weft.CallOptions
---@return weft.Call
function M.begin(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.calls.begin: expected a table", 2) end
    return open(opts.provider, opts.model, opts.operation, opts.id, opts.price)
end

local function event(c, extra)
    local e = { call_id = c.id, provider = c.provider, model = c.model, operation = c.operation,
                attempt = c.attempts }
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
end

--- An attempt starts.
function Call:attempt()
    self.attempts = self.attempts + 1
    self.series.attempts:inc()
    if self.attempts > 1 then log.debug("attempt", { attempt = self.attempts }) end
    if hooks.request[1] then M.emit("request", event(self)) end
end

--- libcurl sent the request of the current attempt `n` more times by
--- itself (a reused connection was dead): the server saw them, so they
--- count as attempts.
---@param n integer
function Call:resent(n)
    self.attempts = self.attempts + n
    self.series.attempts:inc(n)
    std.resends:inc(n, self.provider, self.model, self.operation)
    log.debug("request sent again by libcurl on a fresh connection", { sends = n + 1 })
end

--- The last attempt failed with `err` and the call retries after `delay` s.
---@param err weft.Error
---@param delay number
function Call:retry(err, delay)
    self.retries = self.retries + 1
    local kind = type(err) == "table" and err.kind or "error"
    std.retries:inc(1, self.provider, self.model, self.operation, kind)
    log.info("retry", { attempt = self.attempts + 1, delay = delay, reason = kind,
                        status = type(err) == "table" and err.status or nil })
    if hooks.retry[1] then M.emit("retry", event(self, { error = err, delay = delay, reason = kind })) end
end

--- Time spent on the wire (what weft.http measured: `res.wire`).
---@param dt number seconds
function Call:wire_time(dt) if dt > 0 then self.wire = self.wire + dt end end
--- Time spent waiting: backoff sleeps, limiter queues (what a limiter's
--- acquire returns).
---@param dt number seconds
function Call:wait_time(dt) if dt > 0 then self.waited = self.waited + dt end end

-- The units of weft_quota_remaining, in the order weft._http_client.rate
-- gives the remaining counts (it knows the headers: OpenAI x-ratelimit-*,
-- Anthropic anthropic-ratelimit-*).
local QUOTA_HEADERS = { { "requests" }, { "tokens" }, { "input-tokens" }, { "output-tokens" } }

-- weft_quota_remaining of the call's provider for QUOTA_HEADERS entry q
local function quota_series(self, q)
    local ser = self.series
    local g = ser[q]
    if not g then
        g = std.quota:labels(self.provider, q[1])
        ser[q] = g
    end
    return g
end

--- Read the provider's quota headers of a response (OpenAI x-ratelimit-*,
--- Anthropic anthropic-ratelimit-*) into weft_quota_remaining.
---@param headers table
local observe_quota
function Call:observe_headers(headers)
    if type(headers) ~= "table" then return end
    observe_quota(self, { headers = headers })
end

--- What weft.http measured for one request of this call: `r` is the
--- response, or the error value it raised. Adds its time on the wire
--- (`r.wire`) and reads the provider's quota headers of a response into
--- weft_quota_remaining (observe_headers).
---@param r weft.http.Response|weft.Error
function Call:http(r)
    local w = r.wire
    if w and w > 0 then self.wire = self.wire + w end
    -- (read from the header lines of a json answer: its headers table is
    -- not made for this)
    if type(r) == "table" then observe_quota(self, r) end
end

-- The quota readings of a response (or {headers = h}) into the gauges.
observe_quota = function(self, r)
    local rr, rt, ri, ro = rate(r)
    if rr or rt or ri or ro then
        record(rr and quota_series(self, QUOTA_HEADERS[1]), rr or 0, rt and quota_series(self, QUOTA_HEADERS[2]), rt or 0,
               ri and quota_series(self, QUOTA_HEADERS[3]), ri or 0, ro and quota_series(self, QUOTA_HEADERS[4]), ro or 0)
    end
end

--- The first streamed data arrived (once per call: later calls do
--- nothing). Call it from on_data when it first runs.
function Call:first_token()
    if self.ttft then return end
    self.ttft = clock() - self.start
    local ser = self.series
    if not ser.ttft then ser.ttft = std.ttft:labels(ser.p, ser.m, ser.op) end
    ser.ttft:observe(self.ttft)
end

--- Token usage of the call (added up over calls to usage). Records the
--- cost from the price table; an unknown price records none and warns
--- once per provider/model.
---@param input? integer
---@param output? integer
function Call:usage(input, output)
    input, output = tonumber(input) or 0, tonumber(output) or 0
    self.tokens_in, self.tokens_out = self.tokens_in + input, self.tokens_out + output
    local ser = self.series
    local tin, tout
    if input > 0 then
        tin = ser.tokens_in
        if not tin then
            tin = std.tokens:labels(ser.p, ser.m, "input")
            ser.tokens_in = tin
        end
    end
    if output > 0 then
        tout = ser.tokens_out
        if not tout then
            tout = std.tokens:labels(ser.p, ser.m, "output")
            ser.tokens_out = tout
        end
    end
    local p = self.price or price_of(self.provider, self.model)
    if p then
        local usd = (input * p.input + output * p.output) / 1e6
        self.cost = (self.cost or 0) + usd
        if not ser.cost then ser.cost = std.cost:labels(ser.p, ser.m) end
        record(tin, input, tout, output, ser.cost, usd)
    else
        record(tin, input, tout, output)
        local key = self.provider .. "/" .. self.model
        if not warned[key] then
            warned[key] = true
            log.warn("no price for this model: cost not recorded", { provider = self.provider, model = self.model })
        end
    end
end

-- The fields of a call's log line.
local function log_fields(self, d, outcome)
    local fields = { duration = d, attempts = self.attempts, outcome = outcome, operation = self.operation }
    if self.tokens_in > 0 or self.tokens_out > 0 then
        fields.tokens_in, fields.tokens_out = self.tokens_in, self.tokens_out
    end
    if self.cost then fields.cost_usd = self.cost end
    return fields
end

--- End the call: with nil on success, else the error it failed with.
---@param err? weft.Error|string
function Call:finish(err)
    if self.done then return end
    self.done = true
    local d = clock() - self.start
    local outcome = "success"
    if err ~= nil then outcome = type(err) == "table" and err.kind or "error" end
    local ser = self.series
    local by = ser.calls[outcome]
    if not by then
        by = std.calls:labels(self.provider, self.model, self.operation, outcome)
        ser.calls[outcome] = by
    end
    local overhead = d - self.wire - self.waited
    record(by, 1, ser.latency, d, ser.overhead, overhead > 0 and overhead or 0)
    record_summary(self, d)
    if outcome == "success" then
        -- (a level that writes no info line samples nothing: no clock read,
        -- no count of lines that would not have been written anyway)
        if not log.enabled("info") then
            -- nothing
        elseif sample_admit() then
            -- the line's fields are made only for a line that is written
            local skipped = sample.skipped
            sample.skipped = 0
            local fields = log_fields(self, d, outcome)
            if skipped > 0 then fields.sampled_out = skipped end
            log.info("call", fields)
        else
            sample.skipped = sample.skipped + 1
            std.log_sampled:inc()
        end
        if hooks.response[1] then M.emit("response", event(self, { duration = d, outcome = outcome })) end
    else
        local fields = log_fields(self, d, outcome)
        fields.error = type(err) == "table" and err.message or tostring(err)
        fields.status = type(err) == "table" and err.status or nil
        fields.retry_stopped = type(err) == "table" and err.retry_stopped or nil
        -- a cancelled call (the loser of a race, Ctrl-C) is no failure to warn about
        if outcome == "cancelled" then log.info("call cancelled", fields) else log.warn("call failed", fields) end
        if hooks.error[1] then M.emit("error", event(self, { duration = d, outcome = outcome, error = err })) end
    end
    if log._bound() == self then log.bind(self.prev_log) end
end

------------------------------------------------------------------ plugins

--- A plugin was loaded (ok) or failed to load (err): counted in
--- weft_plugin_loads_total and announced to "reload" hooks.
---@param name string
---@param ok boolean
---@param err? any
---@param level? "error"|"warn"|false how a failure is logged ("error"; false: not at all, the caller did)
function M.plugin_loaded(name, ok, err, level)
    std.plugins:inc(1, name, ok and "ok" or "failed")
    if not ok and level ~= false then
        log[level or "error"]("plugin load failed", { plugin = name, error = tostring(err) })
    end
    M.emit("reload", { plugin = name, ok = ok, error = err })
end

return M
