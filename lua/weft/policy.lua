--- weft.policy: orchestration policies (plugins/policies/*.lua) as
--- AIModels (DESIGN.md, "The call pipeline", steps 1 and 2).
---
--- A model configured with `policy` is used like any other:
---
--- ```lua
--- weft.configure { models = {
---     smart = { policy = "fallback", targets = { "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest" } },
---     fast  = { policy = "hedge", targets = { "openai/gpt-4o-mini", "gemini/gemini-2.0-flash" }, delay = 0.2 },
---     both  = { policy = "fallback", targets = { "fast", "smart" } },        -- policies compose
--- } }
--- local r = weft.model("smart"):complete("Hi")   -- r.provider: who answered; r.route: the path taken
--- ```
---
--- Targets are model names (aliases, policies included, or
--- "provider/model"), or tables `{ model = NAME, weight = N,
--- context_window = TOKENS }`. Every other key of the entry but the
--- request defaults (system, max_tokens, temperature, top_p, stop,
--- priority, timeout, extra, tags, metadata) is an option of the policy
--- plugin, checked against its schema.
---
--- ## Writing a policy plugin
---
--- ```lua
--- return {
---     api = 1, kind = "policy", name = "first", version = "1.0.0",
---     schema = { note = { type = "string", default = "", description = "..." } },
---     check = function(cfg, targets) return #targets >= 1 or nil, "needs a target" end,
---     run = function(req, targets, api, cfg, state)
---         local ok, res = api.call(1, nil, "first")    -- nil: the request as it came
---         if ok then return res end
---         return nil, res                               -- the target's error, as it is
---     end,
--- }
--- ```
---
--- `first(op, targets, states, cfg, state)` (optional): the target to call
--- before `run` (its index, and a reason), or nil to let `run` decide. It
--- gets no request and calls no API (`states[i]` is `api.state(i)`); when
--- that target answers, its result is the call's and `run` never runs (the
--- cheap path of a healthy call); when it fails, `run` gets a sixth
--- argument `{target = i, error = err}` and goes on from there.
---
--- `check(cfg, targets)` (optional) validates a model's options beyond
--- the schema: true, or nil and a message. It runs when a model is
--- configured and before a new version of the file is swapped in (a
--- version that refuses a configured model is never served).
---
--- `run` decides; the host does. It runs in the plugin sandbox, under one
--- plugin budget per call (instructions, memory, time) spread over the
--- stretches of its code between API calls, and sees copies only:
--- * `req`: the normalized request (messages, system, tools, priority,
---   tags, metadata, ... and `op`: "complete", "stream" or "embed"; `input`
---   for embed);
--- * `targets[i]`: `{name=, weight=, context_window=}`;
--- * `cfg`: its options (a function in them is a hook: `api.hook(cfg.x, ...)`
---   runs it in the host);
--- * `state`: a table of its own per configured model, kept across calls.
---
--- The API (each call may wait; the budget does not run meanwhile):
--- * `api.call(i, req?, reason?, opts?)` -> true, result | false, error:
---   one call of target i (its retries included). `req` replaces the
---   request (a transform); `opts.continues = true` marks a stream request
---   that continues the text already delivered (see "Streams").
--- * `api.race(list, opts?)` -> true, result | false, error, started: runs
---   `list = {{target = i, req =, after = seconds, reason =}, ...}`
---   concurrently; an entry starts `after` seconds in, or at once when
---   every entry started before it failed; the first success wins (for a
---   stream: the first to deliver text) and the others are cancelled (their
---   transfers stop). `opts.hedge_budget = r` starts an entry after the
---   first only while the model's hedges stay below r x its races + 1.
---   `started[k]` says which entries ran.
--- * `api.all(list)` -> {{ok=, result= | error=}, ...}.
--- * `api.state(i)` -> the live state of target i: `breaker` ("closed",
---   "open", "half_open"), `retry_in` (seconds until an open breaker
---   probes), `wait` (the limiter's expected wait), `queued`, `in_flight`,
---   `latency` and `ttft` ({ewma=, p50=, p90=, p99=, n=}, over calls made
---   through policies), `price` ({input=, output=} USD per 1M tokens),
---   `headroom` (0..1: the smallest remaining share of its limits, as the
---   provider's quota headers last said), `context_window`.
--- * `api.states()` -> the states of every target, in order.
--- * `api.coalesce(i, {window=, size=})` (embed calls only) -> true, result
---   | false, error: this call joins target i's batch; a batch is sent
---   when it holds `size` texts, after `window` seconds, or at once for a
---   caller whose deadline comes first; each caller gets its own vectors
---   and its share of the usage and cost.
--- * `api.decide(i|nil, reason)`: records a decision that calls nothing.
--- * `api.sleep(seconds)`, `api.now()`, `api.remaining()` (seconds to the
---   call's deadline, or nil), `api.tokens(req)` (estimated input tokens),
---   `api.hook(h, ...)`, `api.escalate(i, err)` (the `escalate` event).
---
--- What the plugin hands the API is read as plain data (raw copies: none
--- of its metamethods runs in the host). A call makes at most 10,000 API
--- calls and 100 target calls; `api.all` is not for streams. A decision's
--- reason is a short word of letters, digits and _ (else "other"), and a
--- model keeps at most 64 decision series.
---
--- Every decision (a target called, skipped, hedged) is logged with the
--- call id (at debug for the first of a call, at info for the ones after
--- it: a fallback, a hedge, a skip) and counted in
--- weft_policy_decisions_total{policy, target, reason}. The result carries `route`: each target tried, in order, with
--- outcome, reason, attempts and latency (a target that is a policy nests
--- its own route). A policy returns a result a target produced, or an error
--- (one a target raised, or its own weft.error value); anything else is an
--- `integration` error naming the plugin.
---
--- Streams: events reach the caller from one target at a time. When a
--- target fails after delivering text, the policy may call another with
--- `opts.continues` (the delivered text as an assistant prefix: the new
--- text is appended) or without (the caller first gets `{type =
--- "restart"}` and the earlier text is dropped). The result's `parts`
--- always says which target produced which text.
local plugins = require "weft.plugins"
local errors = require "weft.error"
local log = require "weft.log"
local metrics = require "weft.metrics"
local calls = require "weft.calls"
local budget = require "weft._budget"
local T = require "weft._task"

local type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, unpack, next, rawset, rawget =
    type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, unpack, next, rawset, rawget
local now, sleep, spawn, suspend, wake, current = T.now, T.sleep, T.spawn, T.suspend, T.wake, T.current
local join = T.methods.join
local format, concat, sort = string.format, table.concat, table.sort
local ceil, huge, min, floor = math.ceil, math.huge, math.min, math.floor

local M = {}

--- Keys of a policy model that are the host's, not the plugin's.
M.HOST_KEYS = { policy = true, targets = true }
--- Keys of a target entry.
local TARGET_KEYS = { model = true, weight = true, context_window = true }

local decisions = metrics.counter("weft_policy_decisions_total",
    "Decisions of orchestration policies: a target called, skipped or hedged, and why.", { "policy", "target", "reason" })
local outcomes = metrics.counter("weft_policy_calls_total",
    "Calls through a policy model, by outcome (success or the error kind).", { "policy", "outcome" })
local ptokens = metrics.counter("weft_policy_tokens_total",
    "Tokens of the calls made through a policy model (every target's, losers' included), by direction.",
    { "policy", "direction" })
local pcost = metrics.counter("weft_policy_cost_usd_total",
    "Cost of the calls made through a policy model, from the providers' price tables.", { "policy" })

local function pack(...) return { n = select("#", ...), ... } end
local watch_specs

------------------------------------------------------------ live state

-- Per target name, what calls through policies measured: in flight,
-- latency and time to first token (EWMA, and the last WINDOW values for
-- percentiles).
local WINDOW, ALPHA = 128, 0.2
local live = {}
-- The policy models that took calls, in the order they first did (for the
-- exit summary): name -> the policy's name.
local summary_order, summary_seen = {}, {}

local function live_of(name)
    local l = live[name]
    if not l then
        l = { in_flight = 0, lat = { n = 0, i = 0, fresh = 0 }, ttft = { n = 0, i = 0, fresh = 0 } }
        live[name] = l
    end
    return l
end

local function observe(series, v)
    series.ewma = series.ewma and series.ewma + ALPHA * (v - series.ewma) or v
    series.i = series.i % WINDOW + 1
    series[series.i] = v
    if series.n < WINDOW then series.n = series.n + 1 end
    series.fresh = series.fresh + 1
end

local function quantile(sorted, q)
    local n = #sorted
    if n == 0 then return nil end
    local i = ceil(q * n)
    return sorted[i < 1 and 1 or i]
end

-- Percentiles are worked out again after RESORT new values (or when there
-- were fewer than that): a sort of the window per read would cost more
-- than the call it decides.
local RESORT = 16
local function summary_of(series)
    if series.n == 0 then return { n = 0 } end
    local s = series.sorted
    if not s or series.fresh >= RESORT or series.n < RESORT then
        series.fresh = 0
        s = {}
        for i = 1, series.n do s[i] = series[i] end
        sort(s)
        series.sorted = s
    end
    return { ewma = series.ewma, p50 = quantile(s, 0.5), p75 = quantile(s, 0.75), p90 = quantile(s, 0.9),
             p95 = quantile(s, 0.95), p99 = quantile(s, 0.99), n = series.n }
end

--- Forget the live state (tests).
function M.reset()
    live = {}
end

------------------------------------------------------------ configuration

-- A copy of the options for the plugin: functions become hook names
-- ("<hook N>", run by api.hook in the host), so no function of the
-- user's is handed to plugin code.
local function hooked(v, hooks, depth)
    if type(v) == "function" then
        hooks[#hooks + 1] = v
        local h = "<hook " .. #hooks .. ">"
        hooks[h] = v
        return h
    end
    if type(v) ~= "table" then return v end
    if depth > 16 then error("policy options nest too deep", 0) end
    local out = {}
    for k, x in pairs(v) do out[k] = hooked(x, hooks, depth + 1) end
    return out
end

-- The policy models configured, by plugin entry (weak: a model that is
-- configured again drops its old spec).
local specs_of = setmetatable({}, { __mode = "k" })

-- The plugin's copy of its configured options `cfg`: a cache's `shared`
-- (where the Redis is, its password) is the host's, the plugin sees only
-- whether there is one.
local function for_plugin(cfg)
    if type(cfg.shared) == "string" or type(cfg.shared) == "table" then cfg.shared = true end
    return cfg
end

-- The options of `spec` against plugin version `p`: true, or nil and why.
local function accepts(spec, p)
    local ok, why = pcall(plugins.configure, p, spec.opts)
    if not ok then return nil, tostring(why) end
    if type(p.check) == "function" then
        local hooks = {}
        local cok, res, msg = plugins.call(p, "check", hooked(for_plugin(why), hooks, 0), M.target_view(spec))
        if not cok then return nil, res end
        if res ~= true then return nil, type(msg) == "string" and msg or "refused by the policy's check" end
    end
    return true
end

-- A new version of a policy plugin must accept every model configured
-- with it (else it is refused and the loaded one keeps serving).
function watch_specs(entry)
    if specs_of[entry] then return end
    specs_of[entry] = setmetatable({}, { __mode = "k" })
    plugins.add_check(entry, function(np)
        local current = require("weft.model").policy_spec
        for spec in pairs(specs_of[entry]) do
            if current(spec.name) == spec then
                local ok, why = accepts(spec, np)
                if not ok then return nil, "models." .. spec.name .. ": " .. why end
            end
        end
        return true
    end)
end

--- Check a policy model's configuration: `m` is the `models` entry,
--- `fail(path, msg)` raises a configuration error at `path` (a list of
--- keys below the model). Returns the spec kept for the model.
---@param name string
---@param m table
---@param request_keys table<string, boolean> keys that are request defaults
---@param fail fun(path: string[], msg: string)
function M.check(name, m, request_keys, fail)
    if type(m.policy) ~= "string" then fail({ "policy" }, "must be the name of a policy plugin") end
    local entry, err = plugins.get("policy", m.policy)
    if not entry then fail({ "policy" }, err) end
    if type(m.targets) ~= "table" or m.targets[1] == nil then
        fail({ "targets" }, "must be a non-empty list of model names")
    end
    local targets = {}
    for i, t in ipairs(m.targets) do
        if type(t) == "string" then t = { model = t } end
        if type(t) ~= "table" or type(t.model) ~= "string" then
            fail({ "targets", tostring(i) }, "must be a model name or {model = NAME, weight =, context_window =}")
        end
        for k in pairs(t) do
            if not TARGET_KEYS[k] then fail({ "targets", tostring(i), tostring(k) }, "unknown key (model, weight, context_window)") end
        end
        if t.weight ~= nil and not (type(t.weight) == "number" and t.weight >= 0 and t.weight < 1e9) then
            fail({ "targets", tostring(i), "weight" }, "must be a number >= 0")
        end
        if t.context_window ~= nil and not (type(t.context_window) == "number" and t.context_window >= 1 and t.context_window < 1e12) then
            fail({ "targets", tostring(i), "context_window" }, "must be a number of tokens >= 1")
        end
        targets[i] = { name = t.model, weight = t.weight or 1, context_window = t.context_window, index = i }
    end
    local defaults, opts = {}, {}
    for k, v in pairs(m) do
        if request_keys[k] then defaults[k] = v
        elseif not M.HOST_KEYS[k] then opts[k] = v end
    end
    local spec = { name = name, policy = m.policy, entry = entry, targets = targets, defaults = defaults,
                   opts = opts, cfgs = setmetatable({}, { __mode = "k" }), state = {}, hedges = 0, races = 0,
                   series = {}, nseries = 0, outcome_series = {} }
    watch_specs(entry)
    specs_of[entry][spec] = true
    local ok, why = pcall(plugins.configure, entry.plugin, opts)
    if not ok then
        local key = tostring(why):match("unknown key '([^']+)'") or tostring(why):match(": ([%w_]+) must be")
            or tostring(why):match("missing required key '([^']+)'")
        fail(key and { key } or {}, (tostring(why):gsub("^policy [%w_%-]+: ", "")))
    end
    -- the Redis of a shared cache: the host reads it (api.cached), so the
    -- host checks it, whatever the plugin's schema says
    if opts.shared ~= nil and opts.shared ~= false then
        local bad = M.bad_shared(opts.shared)
        if bad then fail({ "shared" }, bad) end
        if opts.semantic ~= nil then
            fail({ "semantic" }, "not with shared: the semantic index is kept in the process")
        end
    end
    if type(entry.plugin.check) == "function" then
        local cfg = M.options(spec, entry.plugin).cfg
        local cok, res, msg = plugins.call(entry.plugin, "check", cfg, M.target_view(spec))
        if not cok then fail({}, res)
        elseif res ~= true then fail({}, type(msg) == "string" and msg or "refused by the policy's check") end
    end
    return spec
end

--- Why `v` is not a cache's `shared` setting, or nil: true (needs the
--- configuration's redis), a Redis URL, or {url =, password =, timeout =,
--- key =}.
---@param v any
---@return string?
function M.bad_shared(v)
    local config = require "weft._config"
    if v == true then
        return not config.redis and "true needs the configuration's redis setting (weft.configure{redis = ...})" or nil
    end
    if type(v) == "string" then v = { url = v } end
    if type(v) ~= "table" then return "must be true, a Redis URL or {url =, password =, timeout =, key =}" end
    for k in pairs(v) do
        if k ~= "url" and k ~= "password" and k ~= "timeout" and k ~= "key" then
            return "unknown key '" .. tostring(k) .. "' (url, password, timeout, key)"
        end
    end
    local why = config.shared_rule(v) -- (the url parsed as weft.redis would)
    if why then return why end
    local pw = v.password
    if pw ~= nil and type(pw) ~= "string" and not require("weft.secrets").is(pw) then
        return "password must be a secret handle or a reference such as env:NAME"
    end
    if v.key ~= nil and (type(v.key) ~= "string" or not v.key:match("^[%w_%-%.:]+$")) then
        return "key must be letters, digits, _, -, . and :"
    end
    return nil
end

-- The plugin's view of the targets: a fresh copy per call.
function M.target_view(spec)
    local out = {}
    for i, t in ipairs(spec.targets) do
        out[i] = { name = t.name, weight = t.weight, context_window = t.context_window }
    end
    return out
end

-- The options of `spec` for plugin version `p`: validated, defaults
-- filled in, functions turned into hooks (one copy per version).
function M.options(spec, p)
    local c = spec.cfgs[p]
    if c then return c end
    local cfg = for_plugin(plugins.configure(p, spec.opts))
    local hooks = {}
    -- the plugin's own copies for this version: what it changes in them
    -- stays with its later calls of this model
    c = { cfg = hooked(cfg, hooks, 0), hooks = hooks, targets = M.target_view(spec) }
    spec.cfgs[p] = c
    return c
end

--- Cycles: `lookup(name)` is the spec of the policy model `name` (nil for
--- a provider model). Raises `fail(path, msg)` naming the cycle.
function M.check_cycles(names, lookup, fail)
    local state = {}
    local function visit(name, path)
        if state[name] == "done" then return end
        if state[name] == "open" then
            local from
            for i, p in ipairs(path) do if p == name then from = i break end end
            local cyc = {}
            for i = from, #path do cyc[#cyc + 1] = path[i] end
            cyc[#cyc + 1] = name
            fail(path[from], "policies form a cycle: " .. concat(cyc, " -> "))
        end
        local spec = lookup(name)
        if not spec then return end
        state[name] = "open"
        path[#path + 1] = name
        for _, t in ipairs(spec.targets) do visit(t.name, path) end
        path[#path] = nil
        state[name] = "done"
    end
    for _, n in ipairs(names) do visit(n, {}) end
end

------------------------------------------------------------ one run

-- A run: one call through a policy model.
-- {spec=, plugin=, op=, req= (normalized, the host's), on_event=,
--  deadline=, id=, route={}, real={view -> the host's value}, parts={},
--  n= (target calls), ops= (API calls), opened= (a budget span is open),
--  aborted= (an error every later API call raises), tokens_in=, ...}

-- The id of a run: the caller's (req.id), else made when first needed
-- (a log line, an event): most calls never need one.
local seq = 0
local function run_id(run)
    local id = run.id
    if not id then
        seq = seq + 1
        id = "policy-" .. seq
        run.id = id
    end
    return id
end

-- Counted always; logged at info once the call is off its first choice
-- (a fallback, a hedge, a skip: what explains a route), at debug before.
-- The series are cached per model, target and reason.
local log_enabled = require("weft._log").enabled
-- A plugin names its reasons: label values, so they are kept short and
-- plain, and a model has at most MAX_REASONS series (then "other"): a
-- plugin cannot fill the metric up for everyone else.
local MAX_REASONS = 64
local function decide(run, target, reason)
    local spec = run.spec
    target = target or "-"
    if type(reason) ~= "string" or #reason > 40 or not reason:find("^[%w_]+$") then reason = "other" end
    local by = spec.series[target]
    if not by then
        by = {}
        spec.series[target] = by
    end
    local ser = by[reason]
    if not ser then
        if spec.nseries >= MAX_REASONS then
            reason = "other"
            ser = by[reason]
        end
        if not ser then
            spec.nseries = spec.nseries + 1
            ser = decisions:labels(spec.name, target, reason)
            by[reason] = ser
        end
    end
    ser:inc()
    run.decisions = run.decisions + 1
    local level = run.decisions > 1 and "info" or "debug"
    if log_enabled(level) then
        log[level]("policy decision", { call_id = run_id(run), policy = spec.name, target = target, reason = reason })
    end
end

-- The usage series of a policy model: tokens in, tokens out, cost.
local function usage_series(spec)
    local ser = spec.usage_series
    if not ser then
        ser = { ptokens:labels(spec.name, "input"), ptokens:labels(spec.name, "output"), pcost:labels(spec.name) }
        spec.usage_series = ser
    end
    return ser
end

-- What a target call used, on this run's account; once the run has been
-- recorded (a stopped race entry unwinding late), straight to the metrics.
local function account(run, u, cost)
    local i = u and tonumber(u.input) or 0
    local o = u and tonumber(u.output) or 0
    cost = tonumber(cost) or 0
    if run.flushed then
        local ser = usage_series(run.spec)
        if i > 0 then ser[1]:inc(i) end
        if o > 0 then ser[2]:inc(o) end
        if cost > 0 then ser[3]:inc(cost) end
        return
    end
    run.tokens_in, run.tokens_out, run.cost = run.tokens_in + i, run.tokens_out + o, run.cost + cost
end

-- What a target's outcome used: a nested policy's whole usage (its losers
-- and fallbacks included), a provider call's usage, or what a failed one
-- used before it failed.
local function account_outcome(run, ok, res)
    if type(res) ~= "table" and not errors.is(res) then return end
    local pu = res.policy_usage
    if pu then return account(run, pu, pu.cost) end
    if ok then return account(run, res.usage, res.cost) end
    local pt = res.partial
    if type(pt) == "table" then account(run, pt.usage, pt.cost) end
end

-- What a plugin sees of a result or an error: a copy of what a decision
-- needs (vectors are counted, not copied), kept so that the value it
-- returns is mapped back to the host's.
local plain = plugins.plain
local ERROR_FIELDS = { "kind", "message", "status", "reason", "retry_after", "attempts", "provider", "model",
                       "should_retry" }

local function view_of(run, v)
    local out
    if errors.is(v) then
        out = {}
        for i = 1, #ERROR_FIELDS do
            local k = ERROR_FIELDS[i]
            out[k] = v[k]
        end
        local pt = v.partial
        if type(pt) == "table" then out.partial = { text = pt.text } end
    elseif type(v) == "table" then
        local u = v.usage
        out = { text = v.text, finish_reason = v.finish_reason, provider = v.provider, model = v.model,
                attempts = v.attempts, policy = v.policy, latency = v.latency, ttft = v.ttft, cost = v.cost,
                usage = u and { input = u.input, output = u.output } or nil }
        if v.tool_calls then out.tool_calls = plain(v.tool_calls) end
        if v.vectors then out.count = #v.vectors end
    else
        return v
    end
    local real = run.real
    if not real then
        real = {}
        run.real = real
    end
    real[out] = v
    return out
end

local function target_of(run, i)
    local targets = run.spec.targets
    local t = targets[i]
    if t then return t end
    if type(i) == "string" then
        for _, x in ipairs(targets) do if x.name == i then return x end end
    end
    error(format("policy %s: no target %s", run.spec.policy, tostring(i)), 0)
end

local model_mod -- weft.model (it requires this module: looked up on first use)
local function model_of(run, t)
    model_mod = model_mod or require "weft.model"
    local cache = run.spec.resolved
    local gen = model_mod.generation
    if not cache or cache.gen ~= gen then
        cache = { gen = gen }
        run.spec.resolved = cache
    end
    local m = cache[t.name]
    if not m then
        m = model_mod.model(t.name)
        cache[t.name] = m
    end
    return m, cache
end

-- The circuit breaker of target t's provider (false: none), cached with
-- the model.
local function breaker_of(run, t)
    local m, cache = model_of(run, t)
    local key = cache[t]
    if key == nil then
        key = m.provider and model_mod.provider(m.provider).breaker or false
        cache[t] = key
    end
    return key, m
end

-- Streams: the sink of target call `entry`. Text goes to the caller only
-- from the target that holds the stream (the first to deliver, in a race).
local function sink(run, entry, continues, race)
    if not run.parts then run.parts = {} end
    return function(ev)
        if run.holder ~= entry then
            if run.holder and run.holder.outcome == "running" then return false end -- lost the race
            if race and race.settled then return false end
            -- this target takes the stream
            if run.holder and run.holder ~= entry then
                local last = run.parts[#run.parts]
                if last and #last.chunks > 0 and not continues then
                    for _, p in ipairs(run.parts) do p.discarded = true end
                    run.on_event { type = "restart", target = entry.target }
                end
            end
            run.holder = entry
            run.parts[#run.parts + 1] = { target = entry.target, text = "", chunks = {} }
            if race then race.commit(race.k) end
        end
        local cap = run.capture
        if cap then cap[#cap + 1] = plain(ev) end
        local part = run.parts[#run.parts]
        if ev.type == "text" and type(ev.text) == "string" then
            part.chunks[#part.chunks + 1] = ev.text
        elseif ev.type == "restart" then
            -- the target (a policy) dropped what it had sent: so does its part
            part.chunks = {}
        end
        return run.on_event(ev)
    end
end

-- The fields of a request a policy may pass on to a target.
local REQUEST_FIELDS = { "messages", "system", "max_tokens", "temperature", "top_p", "stop", "tools",
                         "tool_choice", "priority", "extra", "tags", "metadata" }
local pipeline -- weft._pipeline, required on first use (it requires nothing of this)

-- Call target `t` (model `m`) with request `req` (a plugin's replacement,
-- or nil: the caller's), the call's deadline and an id of this run's.
-- The caller's request was normalized once: it goes on as it is, with the
-- target's defaults; a replacement is checked by normalize.
local function invoke(run, t, m, req, n, snk)
    local op, src = run.op, run.req
    pipeline = pipeline or require "weft._pipeline"
    -- the targets' calls have ids of their own (in the route), or the
    -- caller's with a suffix when the caller gave one
    local id = run.given_id and run.given_id .. "." .. n or nil
    if op == "embed" then
        local input = src.input
        if req ~= nil then
            if type(req) ~= "table" or type(req.input) ~= "table" then error("an embed request is {input = {...}}", 0) end
            input = plain(req.input)
        end
        return m:_call("embed", { model = m.model or m.name, input = input, id = id, priority = src.priority,
                                  deadline = run.deadline })
    end
    local r
    if req == nil then
        r = {}
        for k, v in pairs(src) do r[k] = v end
        local d = m.defaults
        if next(d) then
            for k, v in pairs(d) do if r[k] == nil then r[k] = v end end
        end
    else
        if type(req) ~= "table" then error("the request must be a table", 0) end
        local copy, why = plain(req)
        if not copy then error("the request is not plain data (" .. tostring(why) .. ")", 0) end
        r = {}
        for i = 1, #REQUEST_FIELDS do
            local k = REQUEST_FIELDS[i]
            r[k] = copy[k]
        end
        if r.priority == nil then r.priority = src.priority end
        r = pipeline.normalize(r, m.defaults, m.model or m.name)
    end
    r.model = m.model or m.name
    r.id, r.deadline, r.timeout = id, run.deadline, nil
    return m:_call(op, r, snk)
end

-- One call of a target, as the policy asked; returns ok, value.
local function call_target(run, i, req, reason, opts, race)
    local t = target_of(run, i)
    local n = run.n + 1
    run.n = n
    reason = type(reason) == "string" and reason or "call"
    decide(run, t.name, reason)
    local t0 = now()
    -- the route entry (the caller's to read): outcome "running" until the
    -- call ends; made with room for the fields it gets then
    local entry = { target = t.name, reason = reason, outcome = "running", latency = 0, provider = nil,
                    call_id = nil, attempts = nil }
    local route = run.route
    route[#route + 1] = entry
    if race then race.entry, race.t0 = entry, t0 end
    local l = live[t.name] or live_of(t.name)
    l.in_flight = l.in_flight + 1
    local sim = run.spec.simulate
    local ok, res
    if sim then
        ok, res = pcall(sim, t.index, req, run.op)
    else
        local snk = run.op == "stream" and sink(run, entry, opts and opts.continues, race) or nil
        ok, res = pcall(invoke, run, t, model_of(run, t), req, n, snk)
    end
    l.in_flight = l.in_flight - 1
    if entry.outcome == "cancelled" then
        -- a race's loser: its route entry was settled when it was stopped;
        -- what it used still counts
        if errors.is(res) then entry.call_id = res.call_id end
        account_outcome(run, false, res)
        return false, errors.is(res) and res or errors.new("cancelled", tostring(res))
    end
    local dt = now() - t0
    entry.latency = dt
    if ok then
        entry.outcome, entry.provider, entry.call_id = "success", res.provider, res.call_id
        if res.route then entry.route = res.route else entry.attempts = res.attempts end
        observe(l.lat, dt)
        if res.ttft then observe(l.ttft, res.ttft) end
        account_outcome(run, true, res)
        return true, res
    end
    local kind = errors.is(res) and res.kind or "error"
    entry.outcome = kind
    if errors.is(res) then
        entry.call_id = res.call_id
        if res.route then entry.route = res.route else entry.attempts = res.attempts end
        account_outcome(run, false, res)
        if kind == "transient" or kind == "timeout" then observe(l.lat, dt) end
    else
        res = errors.new("integration", tostring(res))
    end
    return false, res
end

-- Run `list` concurrently (see api.race); returns ok, value, started.
local function race(run, list, opts)
    if type(list) ~= "table" or list[1] == nil then error("api.race: expected a non-empty list", 0) end
    local n = #list
    -- every entry is checked before any starts
    for k = 1, n do
        local e = list[k]
        if type(e) ~= "table" then error("api.race: entry " .. k .. " must be a table", 0) end
        target_of(run, e.target)
        if e.after ~= nil and type(e.after) ~= "number" then error("api.race: entry " .. k .. ": after must be seconds", 0) end
    end
    local parent = current()
    local spec = run.spec
    local ratio = type(opts) == "table" and tonumber(opts.hedge_budget) or nil
    if ratio then spec.races = spec.races + 1 end
    local tasks, state, started, runners = {}, {}, {}, {}
    -- stop entry k: its task is cancelled (a transfer in flight is freed)
    -- and its route entry says so at once
    local stopped = {}
    local function stop(k)
        state[k] = "done"
        tasks[k]:cancel()
        stopped[#stopped + 1] = tasks[k]
        local e = runners[k] and runners[k].entry
        if e and e.outcome == "running" then
            e.outcome, e.latency = "cancelled", now() - runners[k].t0
        end
    end
    local settled, winner, last_err = false, nil, nil
    local r = { settled = false }
    local function active()
        for k = 1, n do if state[k] == "running" or state[k] == "starting" then return true end end
        return false
    end
    local function finish(ok, v)
        if settled then return end
        settled, r.settled = true, true
        winner = ok and v or nil
        if not ok then last_err = v end
        wake(parent)
    end
    local launch
    local function next_waiting()
        for k = 1, n do if state[k] == "waiting" then return k end end
    end
    local function done(k, ok, v)
        state[k] = "done"
        if settled then return end
        if ok then
            -- a stream is decided by its first text (commit), its end is the result
            finish(true, v)
            return
        end
        last_err = v
        if r.holder_k == k then finish(false, v) return end
        if not active() then
            local w = next_waiting()
            if w then
                tasks[w]:cancel()
                launch(w, 0, true)
            elseif r.holder_k == nil then
                finish(false, v)
            end
        end
    end
    r.commit = function(hk)
        -- the first to deliver in a stream race: the others stop now
        r.holder_k = hk
        for k = 1, n do
            if k ~= hk and tasks[k] and state[k] ~= "done" then stop(k) end
        end
    end
    -- entry k starts after `delay`; `early` when every entry started before
    -- it failed: then it is a failover, not a hedge (no budget, no delay)
    launch = function(k, delay, early)
        local e = list[k]
        state[k] = delay > 0 and "waiting" or "starting"
        tasks[k] = spawn(function()
            if delay > 0 then
                local _, err = sleep(delay)
                if err or state[k] ~= "waiting" then return end
            end
            if k > 1 and ratio and not early then
                if ratio <= 0 or spec.hedges >= ratio * spec.races + 1 then
                    decide(run, target_of(run, e.target).name, "hedge_budget_exhausted")
                    state[k] = "done"
                    if not active() and not next_waiting() and not settled and r.holder_k == nil then
                        finish(false, last_err)
                    end
                    return
                end
                spec.hedges = spec.hedges + 1
            end
            state[k], started[k] = "running", true
            local entry_race = setmetatable({ k = k }, { __index = r })
            runners[k] = entry_race
            local reason = e.reason or (k > 1 and "hedge" or "race")
            if early then reason = "failover" end
            local pok, ok, v = pcall(call_target, run, e.target, e.req, reason, e, entry_race)
            if not pok then ok, v = false, errors.is(ok) and ok or errors.new("integration", tostring(ok)) end
            done(k, ok, v)
        end)
    end
    for k = 1, n do
        local after = list[k].after or 0
        launch(k, k == 1 and 0 or after)
    end
    local _, err = suspend()
    -- decided (or the caller cancelled): nothing may wake the caller again
    settled, r.settled = true, true
    for k = 1, n do
        if tasks[k] and state[k] ~= "done" then stop(k) end
    end
    -- the stopped ones unwind now (their transfers freed): what they used
    -- is on this run's account before it returns
    for _, t in ipairs(stopped) do join(t) end
    if err then error(err, 0) end
    local st = {}
    for k = 1, n do st[k] = started[k] or false end
    if winner then return true, winner, st end
    return false, last_err or errors.new("integration", "api.race: no entry ran"), st
end

-- A target's live state as the plugin sees it: what is cheap is filled
-- in; the rest (latency, ttft, wait, queued, headroom, price) is worked
-- out when the plugin first reads it. The metatable is the host's and
-- hidden (__metatable).
-- (Each state table has a metatable of its own holding its source: no
-- side table keyed by a short-lived table, which would grow by one entry a
-- call until the collector ran. The host reads it with debug.getmetatable;
-- the plugin's getmetatable sees __metatable.)
local dgetmetatable = debug.getmetatable
local LAZY = {}
function LAZY.latency(l) return summary_of(l.lat) end
function LAZY.ttft(l) return summary_of(l.ttft) end
local function limiter_state(src)
    local s = src.lim
    if s == nil then
        s = false
        local inst = src.m and src.m.provider and require("weft.model").provider(src.m.provider)
        if inst then s = inst.limiter:state() end
        src.lim = s
    end
    return s
end
function LAZY.wait(_, src) local s = limiter_state(src) return s and s.next_admit or 0 end
function LAZY.queued(_, src) local s = limiter_state(src) return s and s.queued or 0 end
function LAZY.headroom(_, src)
    local s = limiter_state(src)
    if not s then return 1 end
    local head
    for _, d in pairs(s.limits or {}) do
        if d.limit and d.limit > 0 and d.limit < 1e11 then
            local h = d.level / (d.burst > 0 and d.burst or d.limit)
            if not head or h < head then head = h end
        end
    end
    return head and (head < 0 and 0 or head) or 1
end
function LAZY.price(_, src)
    local m = src.m
    local pr = m and m.provider and calls.price(m.provider, m.model)
    return pr and { input = pr.input, output = pr.output } or nil
end
local function lazy_state(st, k)
    local f = LAZY[k]
    if not f then return nil end
    local src = dgetmetatable(st)
    local v = f(src.live, src)
    rawset(st, k, v)
    return v
end

local function state_of(run, i)
    local t = target_of(run, i)
    local l = live[t.name] or live_of(t.name)
    local breaker, retry_in, m = "closed", 0, nil
    if not run.spec.simulate then
        local br
        br, m = breaker_of(run, t)
        if br then
            breaker, retry_in = br:status()
            -- cooled down: the next call through it is a half-open probe
            if breaker == "open" and retry_in <= 0 then breaker = "half_open" end
        end
    end
    return setmetatable({ breaker = breaker, retry_in = retry_in, in_flight = l.in_flight,
                          context_window = t.context_window },
                        { __index = lazy_state, __metatable = false, live = l, m = m })
end

-- The API handed to plugin code. Each function closes the plugin's budget
-- span, does the host's part (which may wait: other tasks run meanwhile),
-- and opens a fresh span before going back. The run is the one this task
-- is in (a stack: a target may itself be a policy model).
local benter, bleave = budget.enter, budget.leave
budget.span_host() -- this file opens and closes the spans
local running = coroutine.running
local MAIN = {}
local active = setmetatable({}, { __mode = "k" })
-- Bounds of one run: API calls (each opens a fresh budget span, so a loop
-- around them would never run out of budget) and target calls.
local MAX_OPS, MAX_CALLS = 10000, 100

local function policy_error(run, msg)
    return errors.new("integration", format("policy %s (plugin %s %s): %s", run.spec.name, run.spec.policy,
        tostring(run.plugin.version or "?"), tostring(msg)))
end

-- Stop the run: this error is raised by this API call and every later one.
local function abort(run, e)
    run.aborted = run.aborted or e
    error(run.aborted, 0)
end

-- Close the plugin's span. The budget is the call's, spread over its
-- spans: what is left after this one is where the next one starts. Returns
-- nil, or the message when the budget ran out (counted for the plugin).
local function close_span(run, raised)
    local trip, limit, li, lt, lm = bleave(run.opened)
    run.opened = false
    if not trip and li then
        run.li, run.lt, run.lm = li, lt, lm
        if li <= 0 then trip, limit = "instructions", budget.limits().instructions
        elseif lt <= 0 then trip, limit = "time", budget.limits().time
        elseif lm <= 0 then trip, limit = "memory", budget.limits().memory end
    end
    if not trip then return nil end
    -- the call's limit, not what was left of it for the last span
    limit = budget.limits()[trip]
    local _, msg = plugins.budget_result(run.spec.policy, "run", false, raised, trip, limit)
    return (msg:gsub("^run ", ""))
end

local function to_host(calls_target)
    local run = active[running() or MAIN]
    if not run then error("the policy API is only for the run it was given to", 2) end
    if run.aborted then error(run.aborted, 0) end
    local over = close_span(run)
    if over then abort(run, policy_error(run, over)) end
    run.ops = (run.ops or 0) + 1
    if run.ops > MAX_OPS then abort(run, policy_error(run, "made more than " .. MAX_OPS .. " API calls in one call")) end
    if calls_target and run.n >= MAX_CALLS then
        abort(run, policy_error(run, "called targets more than " .. MAX_CALLS .. " times in one call"))
    end
    return run
end

-- Back to the plugin with the host's results, or stop the run when the
-- host's part failed (cancelled, or a misuse of the API: a bug in the
-- plugin).
local function to_plugin(run, ok, ...)
    if not ok then
        local e = ...
        if errors.is(e) and e.kind == "cancelled" then abort(run, e) end
        abort(run, policy_error(run, errors.is(e) and e.message or tostring(e)))
    end
    run.opened = benter(run.li, run.lt, run.lm)
    return ...
end

-- Arguments from plugin code are read through plain copies (raw access,
-- no metatable): no plugin code runs while the host reads them.
local function copied(v, what)
    if type(v) ~= "table" then return v end
    local c, why = plain(v)
    if c == nil then error(what .. " is not plain data (" .. tostring(why) .. ")", 0) end
    return c
end

local function room_for(run, k)
    if run.n + k > MAX_CALLS then error("more than " .. MAX_CALLS .. " target calls in one call", 0) end
end

local function op_call(run, i, req, reason, opts)
    room_for(run, 1)
    local ok, v = call_target(run, i, copied(req, "the request"), reason,
        type(opts) == "table" and copied(opts, "opts") or nil, nil)
    -- the caller was cancelled (a target of api.call is only cancelled
    -- with it): the run stops, whatever the plugin would do with it
    if not ok and errors.is(v) and v.kind == "cancelled" then error(v, 0) end
    return ok, view_of(run, v)
end
local function op_race(run, list, opts)
    list, opts = copied(list, "the race"), copied(opts, "opts")
    if type(list) == "table" then room_for(run, #list) end
    local ok, v, started = race(run, list, opts)
    return ok, view_of(run, v), started
end
local function op_all(run, list)
    list = copied(list, "the list")
    if type(list) ~= "table" then error("api.all: expected a list", 0) end
    if run.op == "stream" then error("api.all: one stream at a time (api.race for streams)", 0) end
    room_for(run, #list)
    local fns = {}
    for k, e in ipairs(list) do
        if type(e) ~= "table" then error("api.all: entry " .. k .. " must be a table", 0) end
        fns[k] = function() return pack(call_target(run, e.target, e.req, e.reason or "all", e, nil)) end
    end
    local results = require("weft").all(fns)
    local out = {}
    for k, r in ipairs(results) do
        out[k] = r[1] and { ok = true, result = view_of(run, r[2]) } or { ok = false, error = view_of(run, r[2]) }
    end
    return out
end
local function op_states(run)
    local out = {}
    for i = 1, #run.spec.targets do out[i] = state_of(run, i) end
    return out
end
local function op_decide(run, i, reason)
    local t = i ~= nil and target_of(run, i) or nil
    decide(run, t and t.name, type(reason) == "string" and reason or "decision")
end
local function op_sleep(run, s)
    s = tonumber(s)
    if not s or s < 0 or s ~= s or s == huge then error("api.sleep: seconds must be a finite number >= 0", 0) end
    local rem = run.deadline and run.deadline - now()
    if rem and s > rem then s = rem > 0 and rem or 0 end
    local _, err = sleep(s)
    if err then error(err, 0) end
end
local function op_hook(run, h, ...)
    local fn = type(h) == "string" and run.hooks[h]
    if not fn then error("api.hook: not a hook of this policy's options", 0) end
    local args = pack(...)
    for k = 1, args.n do args[k] = copied(args[k], "a hook argument") end
    local r = pack(fn(unpack(args, 1, args.n)))
    for k = 1, r.n do
        if type(r[k]) == "table" then r[k] = plain(r[k]) end
    end
    return unpack(r, 1, r.n)
end
local function op_escalate(run, i, err)
    local t = target_of(run, i)
    -- only an error a target raised (the plugin's view of it) says anything
    local real = err ~= nil and run.real and run.real[err]
    if not errors.is(real) then real = nil end
    calls.emit("escalate", { call_id = run_id(run), policy = run.spec.name, target = t.name,
                             kind = real and real.kind, message = real and real.message, error = real })
end

-- Coalescing: embed calls of one target arriving within a window become
-- one provider request. pending[target entry] = the batch filling now.
local pending = setmetatable({}, { __mode = "k" })

-- Split n units over shares (counts of texts), the rest to the last.
local function split(n, counts, total)
    local out, given = {}, 0
    for k = 1, #counts do
        local v = k < #counts and floor(n * counts[k] / total) or (n - given)
        out[k], given = v, given + v
    end
    return out
end

local function flush(run0, t, batch)
    if batch.sent then return end
    batch.sent = true
    if pending[t] == batch then pending[t] = nil end
    if batch.timer then batch.timer:cancel() end
    spawn(function()
        local waiters = batch.waiters
        local texts, deadline = {}, nil
        for _, w in ipairs(waiters) do
            for _, x in ipairs(w.input) do texts[#texts + 1] = x end
            if w.deadline and (not deadline or w.deadline < deadline) then deadline = w.deadline end
        end
        local t0 = now()
        local ok, res
        local sim = run0.spec.simulate
        if sim then
            ok, res = pcall(sim, t.index, nil, "embed")
        else
            local m = model_of(run0, t)
            ok, res = pcall(m._call, m, "embed", { model = m.model or m.name, input = texts, deadline = deadline })
        end
        local dt = now() - t0
        if not ok then
            for _, w in ipairs(waiters) do wake(w.task, false, res, dt, #texts) end
            return
        end
        local counts, total = {}, #texts
        for k, w in ipairs(waiters) do counts[k] = #w.input end
        local u = res.usage or { input = 0, output = 0 }
        local ins = split(tonumber(u.input) or 0, counts, total)
        local costs = {}
        for k, c in ipairs(counts) do costs[k] = (res.cost or 0) * c / total end
        local at = 0
        for k, w in ipairs(waiters) do
            local vectors = {}
            for j = 1, counts[k] do vectors[j] = res.vectors and res.vectors[at + j] end
            at = at + counts[k]
            wake(w.task, true, { vectors = vectors, usage = { input = ins[k], output = 0 }, cost = costs[k],
                                 provider = res.provider, model = res.model, attempts = res.attempts,
                                 call_id = res.call_id, latency = dt, batch = total }, dt, total)
        end
    end)
end

-- api.coalesce(i, {window=, size=}): this embed call joins the batch of
-- target i; returns ok, its share of the batch's result (or the error).
local function op_coalesce(run, i, opts)
    opts = copied(opts, "opts")
    if run.op ~= "embed" then error("api.coalesce: only embed calls are coalesced", 0) end
    local window = type(opts) == "table" and tonumber(opts.window) or 0.01
    local size = type(opts) == "table" and tonumber(opts.size) or 100
    if not (window >= 0 and window <= 10) then error("api.coalesce: window must be 0..10 seconds", 0) end
    if not (size >= 1) then error("api.coalesce: size must be >= 1", 0) end
    room_for(run, 1)
    local t = target_of(run, i)
    run.n = run.n + 1
    decide(run, t.name, "coalesced")
    local entry = { target = t.name, reason = "coalesced", outcome = "running", latency = 0, provider = nil,
                    call_id = nil, attempts = nil, batch = nil }
    run.route[#run.route + 1] = entry
    local batch = pending[t]
    if not batch then
        batch = { waiters = {}, n = 0, t0 = now() }
        pending[t] = batch
        batch.timer = spawn(function()
            local _, e = sleep(window)
            if not e then flush(run, t, batch) end
        end)
    end
    local me = { task = current(), input = run.req.input, deadline = run.deadline }
    batch.waiters[#batch.waiters + 1] = me
    batch.n = batch.n + #me.input
    -- full, or this caller cannot wait for the window: it goes now
    if batch.n >= size or (run.deadline and run.deadline < batch.t0 + window) then flush(run, t, batch) end
    local ok, res, dt, n = suspend()
    if ok == nil then
        -- this caller was cancelled while the batch filled or flew
        me.gone = true
        entry.outcome = "cancelled"
        error(res, 0)
    end
    entry.latency, entry.batch = dt, n
    if ok then
        entry.outcome, entry.provider, entry.call_id, entry.attempts = "success", res.provider, res.call_id, res.attempts
        account(run, res.usage, res.cost)
        return true, view_of(run, res)
    end
    entry.outcome = errors.is(res) and res.kind or "error"
    return false, view_of(run, errors.is(res) and res or errors.new("integration", tostring(res)))
end

-- Caching: api.cached(i, opts). The store is per policy model
-- (weft.cache), keyed on what decides an answer: the target, the
-- operation, the messages and parameters, tools; not id, priority,
-- deadline or tags. Identical calls in flight share one provider request.
local json_encode = require("weft.json").encode
local KEY_FIELDS = { "messages", "system", "max_tokens", "temperature", "top_p", "stop", "tools", "tool_choice",
                     "extra", "input" }

local function cache_key(run, t)
    local k = { t = t.name, op = run.op }
    local req = run.req
    for _, f in ipairs(KEY_FIELDS) do k[f] = req[f] end
    return json_encode(k, { sort_keys = true })
end

local function cache_count(run, result)
    local spec = run.spec
    local ser = spec.cache_series and spec.cache_series[result]
    if not ser then
        spec.cache_series = spec.cache_series or {}
        ser = metrics.std.cache:labels(spec.name, result)
        spec.cache_series[result] = ser
    end
    ser:inc()
end

-- The answer from a cache entry: a copy of the stored result (the
-- caller's to change), and a stream's events replayed to the caller.
local function from_entry(run, t, entry, how)
    local res = plain(entry.result)
    res.cached = true
    res.usage = { input = 0, output = 0 }
    res.cost = 0
    run.route[#run.route + 1] = { target = t.name, reason = how, outcome = "success", latency = 0 }
    if run.op == "stream" and entry.events then
        if not run.parts then run.parts = {} end
        local part = { target = t.name, text = "", chunks = {} }
        run.parts[#run.parts + 1] = part
        for _, ev in ipairs(entry.events) do
            local e = plain(ev)
            if e.type == "text" and type(e.text) == "string" then part.chunks[#part.chunks + 1] = e.text end
            if run.on_event(e) == false then break end
        end
    end
    return true, view_of(run, res)
end

local function size_of(res, events)
    local n = #(res.text or "")
    for _, v in ipairs(res.vectors or {}) do n = n + 8 * #v end
    for _, e in ipairs(events or {}) do n = n + #(e.text or "") + 32 end
    return n
end

-- Semantic mode: the text of a chat request, its embedding, and the
-- cosine of two unit-ish vectors.
local function text_of_request(req)
    local parts = { req.system or "" }
    for _, m in ipairs(req.messages or {}) do parts[#parts + 1] = type(m.content) == "string" and m.content or "" end
    return concat(parts, "\n")
end

local function cosine(a, b)
    local dot, na, nb = 0, 0, 0
    for k = 1, #a do
        local x, y = a[k], b[k] or 0
        dot, na, nb = dot + x * y, na + x * x, nb + y * y
    end
    if na == 0 or nb == 0 then return 0 end
    return dot / math.sqrt(na * nb)
end

-- The closest answer in the semantic index of `spec` to vector v: its
-- store entry and similarity, when at least `threshold`. Entries the store
-- has dropped leave the index as they are met.
local function semantic_lookup(spec, store, v, threshold)
    local index = spec.semantic_index
    if not index then return nil end
    local best, best_sim, k = nil, -2, 1
    while k <= #index do
        local it = index[k]
        local entry = store:get(it.key)
        if not entry then
            table.remove(index, k)
        else
            local sim = cosine(v, it.vec)
            if sim > best_sim then best, best_sim = entry, sim end
            k = k + 1
        end
    end
    if best and best_sim >= threshold then return best, best_sim end
    return nil, best_sim
end

-- A shared store's single flight: nil when this caller is to ask the
-- provider (it holds the lock, or Redis fails, or the other process's
-- answer did not come in time), else that answer's entry. Raises when
-- the caller is cancelled.
local function shared_flight(store, key, deadline)
    local got = store:lock(key, deadline and deadline - now())
    if got == false then return store:await(key, deadline) end
    return nil
end

local function op_cached(run, i, opts)
    opts = copied(opts, "opts") or {}
    local t = target_of(run, i)
    local spec = run.spec
    local mode = run.req.cache
    if mode == false then
        cache_count(run, "bypass")
        local ok, v = call_target(run, i, nil, "cache_bypass", nil, nil)
        if not ok and errors.is(v) and v.kind == "cancelled" then error(v, 0) end
        return ok, view_of(run, v)
    end
    -- The embedding model and the Redis are the configuration's (the
    -- user's `semantic` and `shared`), never what the plugin passes: the
    -- host decides where requests and credentials go.
    local conf = spec.opts
    local store = spec.store
    if not store then
        if conf.shared ~= nil and conf.shared ~= false then
            local cok, client, o = pcall(require("weft._config").redis_client, conf.shared)
            if not cok then
                error(errors.new("invalid_request", format("cache %s: shared: %s", spec.name,
                    errors.is(client) and client.message or tostring(client))), 0)
            end
            store = require("weft.shared_cache").new(spec.name, {
                client = client, key = type(o) == "table" and o.key or nil, ttl = tonumber(opts.ttl),
                max_entry_bytes = tonumber(conf.max_entry_bytes) })
        else
            store = require("weft.cache").new { max_entries = tonumber(opts.max_entries),
                                                max_bytes = tonumber(opts.max_bytes), ttl = tonumber(opts.ttl) }
        end
        spec.store = store
        spec.flights = {}
    end
    local key = cache_key(run, t)
    local semantic = type(conf.semantic) == "string" and run.op ~= "embed" and conf.semantic or nil
    local threshold = tonumber(conf.threshold) or tonumber(opts.threshold) or 0.95
    local vec
    while true do
        if mode ~= "refresh" then
            local entry = store:get(key)
            if entry then
                cache_count(run, "hit")
                return from_entry(run, t, entry, "cache_hit")
            end
            if semantic and not vec then
                -- a close enough question asked before: its answer (the
                -- risk: a false hit when two different questions embed close)
                model_mod = model_mod or require "weft.model"
                local er = model_mod.model(semantic):embed(text_of_request(run.req))
                account(run, er.usage, er.cost)
                vec = er.vectors[1]
                local hit, sim = semantic_lookup(spec, store, vec, threshold)
                if hit then
                    cache_count(run, "hit")
                    local ok, v = from_entry(run, t, hit, "cache_semantic")
                    run.route[#run.route].similarity = sim
                    return ok, v
                end
            end
        end
        local flight = spec.flights[key]
        if flight and mode ~= "refresh" then
            -- the same call is in flight: its answer is this one's too
            flight.waiters[#flight.waiters + 1] = current()
            local ok, entry = suspend()
            if ok == nil then error(entry, 0) end -- this caller was cancelled
            if ok then
                cache_count(run, "hit")
                return from_entry(run, t, entry, "cache_shared")
            end
            -- the leader's call failed (not cached): this one tries itself,
            -- unless it failed for everyone (its error)
            if not (errors.is(entry) and entry.kind == "cancelled") then
                cache_count(run, "miss")
                return false, view_of(run, entry)
            end
        else
            flight = { waiters = {} }
            spec.flights[key] = flight
            if store.lock and mode ~= "refresh" then
                -- Across processes (a shared store), best effort: the
                -- first to lock the key asks the provider, the others
                -- look for its answer a while before asking themselves.
                local wok, got = pcall(shared_flight, store, key, run.deadline)
                if not wok or got then
                    if spec.flights[key] == flight then spec.flights[key] = nil end
                    for _, w in ipairs(flight.waiters) do
                        -- (this caller was cancelled: the waiters try again themselves)
                        if wok then wake(w, true, got)
                        else wake(w, false, errors.new("cancelled", "the call this one waited on was cancelled")) end
                    end
                    if not wok then error(got, 0) end
                    cache_count(run, "hit")
                    return from_entry(run, t, got, "cache_shared")
                end
            end
            cache_count(run, "miss")
            if run.op == "stream" then run.capture = {} end
            local ok, v = call_target(run, i, nil, "cache_miss", nil, nil)
            local events = run.capture
            run.capture = nil
            if spec.flights[key] == flight then spec.flights[key] = nil end
            local entry
            if ok then
                entry = { result = plain(v), events = events }
                entry.result.route, entry.result.policy_usage = nil, nil
                if store:put(key, entry, size_of(v, events)) and vec then
                    spec.semantic_index = spec.semantic_index or {}
                    local index = spec.semantic_index
                    index[#index + 1] = { key = key, vec = vec }
                    if #index > store.max_entries then table.remove(index, 1) end
                end
            elseif store.unlock then
                if errors.is(v) and v.kind == "cancelled" then
                    -- every wait of a cancelled task fails: another task lets go
                    spawn(store.unlock, store, key)
                else
                    store:unlock(key)
                end
            end
            for _, w in ipairs(flight.waiters) do
                if ok then wake(w, true, entry) else wake(w, false, v) end
            end
            if not ok and errors.is(v) and v.kind == "cancelled" then error(v, 0) end
            return ok, view_of(run, v)
        end
    end
end

local function tokens_of(req)
    if type(req) ~= "table" then return 0 end
    local n = #(type(req.system) == "string" and req.system or "")
    for _, m in ipairs(type(req.messages) == "table" and req.messages or {}) do
        n = n + #(type(m) == "table" and type(m.content) == "string" and m.content or "") + 12
    end
    return ceil(n / 4)
end

local API = {
    call = function(i, req, reason, opts)
        local run = to_host(true)
        return to_plugin(run, pcall(op_call, run, i, req, reason, opts))
    end,
    race = function(list, opts)
        local run = to_host(true)
        return to_plugin(run, pcall(op_race, run, list, opts))
    end,
    all = function(list)
        local run = to_host(true)
        return to_plugin(run, pcall(op_all, run, list))
    end,
    state = function(i)
        local run = to_host()
        return to_plugin(run, pcall(state_of, run, i))
    end,
    states = function()
        local run = to_host()
        return to_plugin(run, pcall(op_states, run))
    end,
    decide = function(i, reason)
        local run = to_host()
        return to_plugin(run, pcall(op_decide, run, i, reason))
    end,
    sleep = function(s)
        local run = to_host()
        return to_plugin(run, pcall(op_sleep, run, s))
    end,
    hook = function(h, ...)
        local run = to_host()
        return to_plugin(run, pcall(op_hook, run, h, ...))
    end,
    escalate = function(i, err)
        local run = to_host()
        return to_plugin(run, pcall(op_escalate, run, i, err))
    end,
    coalesce = function(i, opts)
        local run = to_host(true)
        return to_plugin(run, pcall(op_coalesce, run, i, opts))
    end,
    cached = function(i, opts)
        local run = to_host(true)
        return to_plugin(run, pcall(op_cached, run, i, opts))
    end,
    remaining = function()
        local run = active[running() or MAIN]
        local d = run and run.deadline
        return d and d - now() or nil
    end,
    now = now,
    tokens = tokens_of,
}

-- The API table of a plugin version: its own copy (a plugin that changes
-- it changes nothing of anyone else's), made once.
local apis = setmetatable({}, { __mode = "k" })
local function api_for(p)
    local a = apis[p]
    if a then return a end
    a = {}
    for k, f in pairs(API) do a[k] = f end
    apis[p] = a
    return a
end

-- What the plugin's run gave back: a value a target produced, or an error.
local function settle(run, v, e)
    if v ~= nil then
        local real = run.real and run.real[v]
        if real then return not errors.is(real), real end
        return false, policy_error(run, "returned a value that no target produced")
    end
    if e == nil then return false, policy_error(run, "returned nothing") end
    local real = run.real and run.real[e]
    if real then
        if errors.is(real) then return false, real end
        return false, policy_error(run, "returned a target's result as its error")
    end
    if errors.is(e) then
        local m = rawget(e, "message")
        return false, errors.new(rawget(e, "kind"), type(m) == "string" and require("weft._secrets").redact(m) or nil)
    end
    return false, policy_error(run, type(e) == "string" and e or "failed")
end

-- Run the plugin's `run` in budget spans (see the API): ok, value.
local function drive(run, p, view, targets, api, cfg, state, first)
    local co = running() or MAIN
    local prev = active[co]
    active[co] = run
    run.opened = benter()
    local ok, v, e = pcall(p.run, view, targets, api, cfg, state, first)
    local over = close_span(run, not ok and v or nil)
    active[co] = prev
    if run.aborted then return false, run.aborted end
    if over then return false, policy_error(run, over) end
    if not ok then
        -- what it raised: an error of a target's, its own error value, or
        -- anything else (a bug in it)
        return settle(run, nil, v)
    end
    return settle(run, v, e)
end

-- The states of a run's targets for `first`: each worked out when read
-- (the run is in the table's own metatable, as for a state).
local function lazy_states(t, i)
    local run = dgetmetatable(t).run
    if type(i) ~= "number" or not run.spec.targets[i] then return nil end
    local st = state_of(run, i)
    rawset(t, i, st)
    return st
end

-- The plugin's `first`: the target to call before `run`, if any. Returns
-- the index and the reason, nil (no first choice: `run` decides), or
-- false and the error when `first` failed.
local bcall = budget.call
local function first_choice(run, p, op, opts, spec)
    local states = setmetatable({}, { __index = lazy_states, __metatable = false, run = run })
    local ok, i, why, trip, limit = bcall(p.first, op, opts.targets, states, opts.cfg, spec.state)
    if not ok then
        local _, msg = plugins.budget_result(spec.policy, "first", false, i, why, trip or limit)
        return false, policy_error(run, msg)
    end
    if i == nil then return nil end
    if type(i) ~= "number" or not spec.targets[i] then
        return false, policy_error(run, "first returned " .. type(i) .. ", not a target's index")
    end
    return i, type(why) == "string" and why or "first"
end

local function outcome(spec, o)
    local ser = spec.outcome_series[o]
    if not ser then
        if not summary_seen[spec.name] and not spec.simulate then
            summary_seen[spec.name] = spec.policy
            summary_order[#summary_order + 1] = spec.name
        end
        ser = outcomes:labels(spec.name, o)
        spec.outcome_series[o] = ser
    end
    ser:inc()
end

--- Run one call through policy model `spec`. `req` is normalized (its
--- `model` field is the policy model's name).
function M.run(spec, op, req, on_event)
    local entry = spec.entry
    local p = entry.plugin -- this call's version, whatever is loaded meanwhile
    local opts = spec.cfgs[p] or M.options(spec, p)
    -- (what only a slow path needs is added there: real, parts, ops,
    -- opened, aborted, the budget left; the rest fits a 16-slot table)
    local run = {
        spec = spec, plugin = p, op = op, req = req, on_event = on_event, hooks = opts.hooks,
        deadline = req.deadline or (req.timeout and now() + req.timeout) or nil,
        id = req.id, given_id = req.id, route = {}, n = 0, decisions = 0, tokens_in = 0, tokens_out = 0, cost = 0,
        flushed = false,
    }
    local t0 = now()
    local ok, v
    local fi, why
    if p.first then fi, why = first_choice(run, p, op, opts, spec) end
    local first
    if fi == false then
        ok, v = false, why
    elseif fi then
        -- the healthy path: the first choice answers, `run` never runs
        local fok, fv = call_target(run, fi, nil, why, nil, nil)
        if fok then
            ok, v = true, fv
        elseif errors.is(fv) and fv.kind == "cancelled" then
            ok, v = false, fv -- the caller gave up
        else
            first = { target = fi, error = view_of(run, fv) }
        end
    end
    if ok == nil then
        local view = plain(req) or {}
        view.model, view.op, view.id = nil, op, nil
        ok, v = drive(run, p, view, opts.targets, api_for(p), opts.cfg, spec.state, first)
    end
    local name = spec.name
    local ser = usage_series(spec)
    if run.tokens_in > 0 then ser[1]:inc(run.tokens_in) end
    if run.tokens_out > 0 then ser[2]:inc(run.tokens_out) end
    if run.cost > 0 then ser[3]:inc(run.cost) end
    run.flushed = true
    -- what this run used in all, for a policy over this one (when it is
    -- more than what the answer says: another target was called too)
    local used
    if run.n > 1 then
        used = { input = run.tokens_in, output = run.tokens_out, cost = run.cost }
    elseif type(v) == "table" or errors.is(v) then
        used = v.policy_usage -- one target, itself a policy: what it used in all
    end
    if not ok then
        outcome(spec, errors.is(v) and v.kind or "error")
        if errors.is(v) then
            if v.route == nil or rawget(v, "policy") ~= name then
                -- the error of a target: this policy's route on it
                v.route, v.policy = run.route, name
            end
            v.policy_usage = used
        end
        error(v, 0)
    end
    outcome(spec, "success")
    local out = v
    if out.route and out.policy ~= name then
        -- the result of a nested policy: keep its route inside ours
        local copy = {}
        for k, x in pairs(out) do copy[k] = x end
        out = copy
    end
    out.route, out.policy, out.policy_usage = run.route, name, used
    out.policy_version = p.version and tostring(p.version) or tostring(entry.n)
    out.latency = now() - t0
    if op == "stream" then
        local parts, texts = {}, {}
        for _, pt in ipairs(run.parts or {}) do
            local text = concat(pt.chunks)
            parts[#parts + 1] = { target = pt.target, text = text, discarded = pt.discarded or nil }
            if not pt.discarded then texts[#texts + 1] = text end
        end
        out.parts = parts
        if #parts > 1 then out.text = concat(texts) end
    end
    return out
end

--- Run policy plugin `p` with options `opts` over `n` simulated targets
--- ("sim1".."simN"): `outcome(i, req, op)` returns target i's result or
--- raises its error. Returns ok, result or error, route (weft check).
---@param p table a loaded policy plugin
---@param opts table
---@param n integer
---@param op "complete"|"stream"|"embed"
---@param result fun(i: integer, req: table?, op: string): table
function M.simulate(p, opts, n, op, result)
    local targets = {}
    for i = 1, n do targets[i] = { name = "sim" .. i, weight = 1, context_window = 1000000, index = i } end
    local spec = { name = "check:" .. p.name, policy = p.name, entry = { plugin = p, n = 1 }, targets = targets,
                   defaults = {}, opts = opts, cfgs = setmetatable({}, { __mode = "k" }), state = {},
                   hedges = 0, races = 0, simulate = result, series = {}, nseries = 0, outcome_series = {} }
    local req = op == "embed" and { input = { "a", "b" } }
        or { messages = { { role = "user", content = "Hello" } }, model = spec.name }
    local route
    local ok, v = pcall(M.run, spec, op, req, op == "stream" and function() end or nil)
    if type(v) == "table" then route = v.route end
    return ok, v, route
end

------------------------------------------------------------ the model

---@class weft.PolicyModel
---@field name string
---@field policy string the policy plugin's name
local PolicyModel = {}
PolicyModel.__index = PolicyModel

function PolicyModel:__tostring() return "weft.model(" .. self.name .. ": policy " .. self.spec.policy .. ")" end

-- A call with a request normalized already (a policy over this one).
function PolicyModel:_call(op, req, on_event)
    return M.run(self.spec, op, req, on_event)
end

--- Complete a chat through the policy: a target's result, with `route`.
---@param req string|weft.Request
---@return weft.Result
function PolicyModel:complete(req)
    return M.run(self.spec, "complete", self.normalize(req, self.defaults, self.name))
end

--- Stream a chat through the policy (see the module doc, "Streams").
---@param req string|weft.Request
---@param on_event fun(ev: table): boolean?
---@return weft.Result
function PolicyModel:stream(req, on_event)
    if type(on_event) ~= "function" then error("model:stream: on_event must be a function", 2) end
    return M.run(self.spec, "stream", self.normalize(req, self.defaults, self.name), on_event)
end

--- Embed one text or a list through the policy.
---@param texts string|string[]
---@param opts? {id?: string, priority?: string, deadline?: number, timeout?: number}
---@return weft.Result
function PolicyModel:embed(texts, opts)
    if type(texts) == "string" then texts = { texts } end
    if type(texts) ~= "table" or texts[1] == nil then error(errors.new("invalid_request", "embed: expected a string or a non-empty list of strings"), 0) end
    opts = opts or {}
    local req = { input = texts, id = opts.id, priority = opts.priority or self.defaults.priority,
                  deadline = opts.deadline, timeout = opts.timeout or self.defaults.timeout }
    return M.run(self.spec, "embed", req)
end

--- Calls, errors, tokens and cost through this policy model (every
--- target call it made, hedges and fallbacks included), from the metrics
--- registry.
---@return {calls: integer, errors: integer, input_tokens: integer, output_tokens: integer, cost: number}
function PolicyModel:usage()
    local v = metrics.value
    local name = self.name
    local ok = v("weft_policy_calls_total", { policy = name, outcome = "success" }) or 0
    local total = ok + (v("weft_policy_calls_total", { policy = name, outcome = "error" }) or 0)
    for kind in pairs(errors.KINDS) do
        total = total + (v("weft_policy_calls_total", { policy = name, outcome = kind }) or 0)
    end
    return { calls = total, errors = total - ok,
             input_tokens = v("weft_policy_tokens_total", { policy = name, direction = "input" }) or 0,
             output_tokens = v("weft_policy_tokens_total", { policy = name, direction = "output" }) or 0,
             cost = v("weft_policy_cost_usd_total", { policy = name }) or 0 }
end

-- The exit summary's section of policy models: calls, errors by kind,
-- tokens and cost of everything their targets did, from the registry.
calls.add_summary(function()
    if #summary_order == 0 then return "" end
    local v = metrics.value
    local rows = { { "policy model", "policy", "calls", "errors", "tokens in", "tokens out", "cost USD", "cache hits" } }
    for _, name in ipairs(summary_order) do
        local n = v("weft_policy_calls_total", { policy = name, outcome = "success" }) or 0
        local errs = {}
        for _, kind in ipairs { "rate_limited", "transient", "timeout", "auth", "quota_exhausted", "invalid_request",
                                "integration", "circuit_open", "budget_exceeded", "cancelled", "error" } do
            local e = v("weft_policy_calls_total", { policy = name, outcome = kind }) or 0
            if e > 0 then
                n = n + e
                errs[#errs + 1] = kind .. " " .. e
            end
        end
        local cost = v("weft_policy_cost_usd_total", { policy = name })
        -- the hit rate of a model that caches: hits / (hits + misses)
        local hits = v("weft_cache_requests_total", { cache = name, result = "hit" })
        local misses = v("weft_cache_requests_total", { cache = name, result = "miss" })
        local rate = "-"
        if hits or misses then
            hits, misses = hits or 0, misses or 0
            rate = format("%.2f", hits + misses > 0 and hits / (hits + misses) or 0)
        end
        rows[#rows + 1] = { name, summary_seen[name], tostring(n), #errs > 0 and concat(errs, ", ") or "0",
            tostring(v("weft_policy_tokens_total", { policy = name, direction = "input" }) or 0),
            tostring(v("weft_policy_tokens_total", { policy = name, direction = "output" }) or 0),
            cost and format("%.6f", cost) or "-", rate }
    end
    local width = {}
    for _, r in ipairs(rows) do
        for i, cell in ipairs(r) do width[i] = math.max(width[i] or 0, #cell) end
    end
    local out = { "weft: policy models (their targets' calls are in the rows above)\n" }
    for k, r in ipairs(rows) do
        local cells = {}
        for i, cell in ipairs(r) do
            cells[i] = i <= 2 and cell .. (" "):rep(width[i] - #cell) or (" "):rep(width[i] - #cell) .. cell
        end
        out[#out + 1] = "  " .. concat(cells, "  ") .. "\n"
        if k == 1 then
            local rule = {}
            for i = 1, #width do rule[i] = ("-"):rep(width[i]) end
            out[#out + 1] = "  " .. concat(rule, "  ") .. "\n"
        end
    end
    return concat(out)
end)

--- The model object of policy model `spec`.
function M.model(spec, defaults, normalize)
    return setmetatable({ name = spec.name, spec = spec, policy = spec.policy, defaults = defaults,
                          normalize = normalize }, PolicyModel)
end

return M
