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
--- `check(cfg, targets)` (optional) validates a model's options beyond
--- the schema: true, or nil and a message. It runs when a model is
--- configured and before a new version of the file is swapped in (a
--- version that refuses a configured model is never served).
---
--- `run` decides; the host does. It runs in the plugin sandbox, under the
--- plugin budget (instructions, memory, time) between two calls of the
--- API, and sees copies only:
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
--- * `api.decide(i|nil, reason)`: records a decision that calls nothing.
--- * `api.sleep(seconds)`, `api.now()`, `api.remaining()` (seconds to the
---   call's deadline, or nil), `api.tokens(req)` (estimated input tokens),
---   `api.hook(h, ...)`, `api.escalate(i, err)` (the `escalate` event).
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

local type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, unpack =
    type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, unpack
local resume, create, status, yield = coroutine.resume, coroutine.create, coroutine.status, coroutine.yield
local now, sleep, spawn, suspend, wake, current = T.now, T.sleep, T.spawn, T.suspend, T.wake, T.current
local format, concat, sort = string.format, table.concat, table.sort
local ceil, huge, min = math.ceil, math.huge, math.min

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

local function live_of(name)
    local l = live[name]
    if not l then
        l = { in_flight = 0, lat = { n = 0, i = 0 }, ttft = { n = 0, i = 0 } }
        live[name] = l
    end
    return l
end

local function observe(series, v)
    series.ewma = series.ewma and series.ewma + ALPHA * (v - series.ewma) or v
    series.i = series.i % WINDOW + 1
    series[series.i] = v
    if series.n < WINDOW then series.n = series.n + 1 end
    series.sorted = nil
end

local function quantile(sorted, q)
    local n = #sorted
    if n == 0 then return nil end
    local i = ceil(q * n)
    return sorted[i < 1 and 1 or i]
end

local function summary_of(series)
    if series.n == 0 then return { n = 0 } end
    local s = series.sorted
    if not s then
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

-- The options of `spec` against plugin version `p`: true, or nil and why.
local function accepts(spec, p)
    local ok, why = pcall(plugins.configure, p, spec.opts)
    if not ok then return nil, tostring(why) end
    if type(p.check) == "function" then
        local hooks = {}
        local cok, res, msg = plugins.call(p, "check", hooked(why, hooks, 0), M.target_view(spec))
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
                   series = {}, outcome_series = {} }
    watch_specs(entry)
    specs_of[entry][spec] = true
    local ok, why = pcall(plugins.configure, entry.plugin, opts)
    if not ok then
        local key = tostring(why):match("unknown key '([^']+)'") or tostring(why):match(": ([%w_]+) must be")
            or tostring(why):match("missing required key '([^']+)'")
        fail(key and { key } or {}, (tostring(why):gsub("^policy [%w_%-]+: ", "")))
    end
    if type(entry.plugin.check) == "function" then
        local cfg = M.options(spec, entry.plugin).cfg
        local cok, res, msg = plugins.call(entry.plugin, "check", cfg, M.target_view(spec))
        if not cok then fail({}, res)
        elseif res ~= true then fail({}, type(msg) == "string" and msg or "refused by the policy's check") end
    end
    return spec
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
    local cfg = plugins.configure(p, spec.opts)
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
-- {spec=, plugin=, op=, req= (normalized, the host's), view= (the plugin's
--  copy), on_event=, deadline=, id=, route={}, real={view -> value},
--  parts={}, n=0 (target calls), tokens_in=, tokens_out=, cost=}

-- Counted always; logged at info once the call is off its first choice
-- (a fallback, a hedge, a skip: what explains a route), at debug before.
-- The series are cached per model, target and reason.
local log_enabled = require("weft._log").enabled
local function decide(run, target, reason)
    local spec = run.spec
    target = target or "-"
    local by = spec.series[target]
    if not by then
        by = {}
        spec.series[target] = by
    end
    local ser = by[reason]
    if not ser then
        ser = decisions:labels(spec.name, target, reason)
        by[reason] = ser
    end
    ser:inc()
    run.decisions = run.decisions + 1
    local level = run.decisions > 1 and "info" or "debug"
    if log_enabled(level) then
        log[level]("policy decision", { call_id = run.id, policy = spec.name, target = target, reason = reason })
    end
end

local function account(run, u, cost)
    if u then
        run.tokens_in = run.tokens_in + (tonumber(u.input) or 0)
        run.tokens_out = run.tokens_out + (tonumber(u.output) or 0)
    end
    if cost then run.cost = run.cost + cost end
end

-- What a plugin may see of a result or an error: a plain copy, kept so the
-- value it returns can be mapped back to the host's.
local plain = plugins.plain
local ERROR_FIELDS = { "kind", "message", "status", "reason", "retry_after", "attempts", "provider", "model", "should_retry" }

local function view_of(run, v)
    local out
    if errors.is(v) then
        out = {}
        for _, k in ipairs(ERROR_FIELDS) do out[k] = v[k] end
        if type(v.partial) == "table" then out.partial = { text = v.partial.text } end
    else
        out = plain(v) or {}
    end
    run.real[out] = v
    return out
end

local function target_of(run, i)
    local t = run.spec.targets[tonumber(i) or -1]
    if not t and type(i) == "string" then
        for _, x in ipairs(run.spec.targets) do if x.name == i then t = x break end end
    end
    if not t then error(format("policy %s: no target %s", run.spec.policy, tostring(i)), 0) end
    return t
end

-- The request a target gets: the plugin's replacement (checked by the
-- target's own normalization) or the caller's, with the call's deadline.
local REQUEST_FIELDS = { messages = true, system = true, max_tokens = true, temperature = true, top_p = true,
                         stop = true, tools = true, tool_choice = true, priority = true, extra = true,
                         tags = true, metadata = true }

local function target_request(run, req, n)
    local src = run.req
    if req ~= nil then
        if type(req) ~= "table" then error("the request must be a table", 0) end
        local copy, why = plain(req)
        if not copy then error("the request is not plain data (" .. tostring(why) .. ")", 0) end
        src = copy
    end
    local out = {}
    if run.op == "embed" then
        out.input = src.input or run.req.input
    else
        for k in pairs(REQUEST_FIELDS) do out[k] = src[k] end
    end
    out.priority = src.priority or run.req.priority
    out.deadline = run.deadline
    out.id = run.id .. "." .. n
    return out
end

local function model_of(run, t)
    local cache = run.spec.resolved
    local gen = require("weft.model").generation
    if not cache or cache.gen ~= gen then
        cache = { gen = gen }
        run.spec.resolved = cache
    end
    local m = cache[t.name]
    if not m then
        m = require("weft.model").model(t.name)
        cache[t.name] = m
    end
    return m
end

-- Streams: the sink of target call `entry`. Text goes to the caller only
-- from the target that holds the stream (the first to deliver, in a race).
local function sink(run, entry, continues)
    return function(ev)
        if run.holder ~= entry then
            if run.holder and run.holder.state == "running" then return false end -- lost the race
            if entry.race and entry.race.settled then return false end
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
            if entry.race then entry.race.commit(entry.race.k) end
        end
        local part = run.parts[#run.parts]
        if ev.type == "text" and type(ev.text) == "string" then
            part.chunks[#part.chunks + 1] = ev.text
        end
        return run.on_event(ev)
    end
end

-- One call of a target, as the policy asked; returns ok, value.
local function call_target(run, i, req, reason, opts, race)
    local t = target_of(run, i)
    run.n = run.n + 1
    local r = target_request(run, req, run.n)
    reason = type(reason) == "string" and reason or "call"
    decide(run, t.name, reason)
    local entry = { target = t.name, reason = reason, state = "running", race = race }
    run.route[#run.route + 1] = entry
    if race then race.entry = entry end
    local l = live_of(t.name)
    l.in_flight = l.in_flight + 1
    local t0 = now()
    entry.t0 = t0
    local sim = run.spec.simulate
    local m = not sim and model_of(run, t)
    local ok, res
    if sim then
        ok, res = pcall(sim, t.index, r, run.op)
    elseif run.op == "stream" then
        ok, res = pcall(m.stream, m, r, sink(run, entry, opts and opts.continues))
    elseif run.op == "embed" then
        ok, res = pcall(m.embed, m, r.input, { id = r.id, priority = r.priority, deadline = r.deadline })
    else
        ok, res = pcall(m.complete, m, r)
    end
    l.in_flight = l.in_flight - 1
    entry.t0 = nil
    if entry.state == "cancelled" then
        -- a race's loser: its route entry was settled when it was stopped;
        -- what it used still counts
        if errors.is(res) and res.partial then account(run, res.partial.usage, nil) end
        return false, errors.is(res) and res or errors.new("cancelled", tostring(res))
    end
    entry.latency = now() - t0
    entry.state = "done"
    if ok then
        entry.outcome = "success"
        entry.provider = res.provider
        if res.route then entry.route = res.route else entry.attempts = res.attempts end
        observe(l.lat, entry.latency)
        if res.ttft then observe(l.ttft, res.ttft) end
        if not res.route then account(run, res.usage, res.cost) end
        return true, res
    end
    local kind = errors.is(res) and res.kind or "error"
    entry.outcome = kind
    if errors.is(res) then
        if res.route then entry.route = res.route else entry.attempts = res.attempts end
        if res.partial and not res.route then account(run, res.partial.usage, nil) end
        if kind == "transient" or kind == "timeout" then observe(l.lat, entry.latency) end
    else
        res = errors.new("integration", tostring(res))
    end
    return false, res
end

-- Run `list` concurrently (see api.race); returns ok, value, started.
local function race(run, list, opts)
    if type(list) ~= "table" or list[1] == nil then error("api.race: expected a non-empty list", 0) end
    local parent = current()
    local spec = run.spec
    local ratio = opts and tonumber(opts.hedge_budget)
    if ratio then spec.races = spec.races + 1 end
    local n = #list
    local tasks, state, started, runners = {}, {}, {}, {}
    -- stop entry k: its task is cancelled (a transfer in flight is freed)
    -- and its route entry says so at once
    local function stop(k)
        state[k] = "done"
        tasks[k]:cancel()
        local e = runners[k] and runners[k].entry
        if e and e.state == "running" then
            e.outcome, e.state, e.latency = "cancelled", "cancelled", now() - e.t0
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
        local e = list[k]
        if type(e) ~= "table" then error("api.race: entry " .. k .. " must be a table", 0) end
        target_of(run, e.target)
        local after = tonumber(e.after) or 0
        launch(k, k == 1 and 0 or after)
    end
    -- the entry of a route marks which race entry it was (stream commits)
    local _, err = suspend()
    for k = 1, n do
        if tasks[k] and state[k] ~= "done" then stop(k) end
    end
    if err then error(err, 0) end
    local st = {}
    for k = 1, n do st[k] = started[k] or false end
    if winner then return true, winner, st end
    return false, last_err or errors.new("integration", "api.race: no entry ran"), st
end

local function state_of(run, i)
    local t = target_of(run, i)
    local l = live_of(t.name)
    local m = not run.spec.simulate and model_of(run, t) or {}
    local out = { in_flight = l.in_flight, latency = summary_of(l.lat), ttft = summary_of(l.ttft),
                  context_window = t.context_window, breaker = "closed", retry_in = 0, wait = 0, queued = 0 }
    if m.provider then
        local inst = require("weft.model").provider(m.provider)
        if inst.breaker then
            local b = inst.breaker:state()
            out.breaker, out.retry_in = b.state, b.retry_in or 0
            -- cooled down: the next call through it is a half-open probe
            if out.breaker == "open" and out.retry_in <= 0 then out.breaker = "half_open" end
        end
        local s = inst.limiter:state()
        out.wait, out.queued = s.next_admit or 0, s.queued or 0
        local head
        for _, d in pairs(s.limits or {}) do
            if d.limit and d.limit > 0 and d.limit < 1e11 then
                local h = d.level / (d.burst > 0 and d.burst or d.limit)
                if not head or h < head then head = h end
            end
        end
        out.headroom = head and (head < 0 and 0 or head) or 1
        local pr = calls.price(m.provider, m.model)
        out.price = pr and { input = pr.input, output = pr.output } or nil
    end
    return out
end

-- Do what the plugin's coroutine yielded; returns what it gets back.
local ops = {}
ops.call = function(run, i, req, reason, opts)
    local ok, v = call_target(run, i, req, reason, type(opts) == "table" and opts or nil, nil)
    return ok, view_of(run, v)
end
ops.race = function(run, list, opts)
    local ok, v, started = race(run, list, opts)
    return ok, view_of(run, v), started
end
ops.all = function(run, list)
    if type(list) ~= "table" then error("api.all: expected a list", 0) end
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
ops.state = state_of
ops.states = function(run)
    local out = {}
    for i = 1, #run.spec.targets do out[i] = state_of(run, i) end
    return out
end
ops.decide = function(run, i, reason)
    local t = i ~= nil and target_of(run, i) or nil
    decide(run, t and t.name, type(reason) == "string" and reason or "decision")
end
ops.sleep = function(run, s)
    s = tonumber(s)
    if not s or s < 0 or s ~= s or s == huge then error("api.sleep: seconds must be a finite number >= 0", 0) end
    local rem = run.deadline and run.deadline - now()
    if rem and s > rem then s = rem > 0 and rem or 0 end
    local _, err = sleep(s)
    if err then error(err, 0) end
end
ops.remaining = function(run)
    local d = run.deadline
    return d and d - now() or nil
end
ops.hook = function(run, h, ...)
    local fn = run.hooks[h]
    if not fn then error("api.hook: " .. tostring(h) .. " is not a hook of this policy's options", 0) end
    local r = pack(fn(...))
    for k = 1, r.n do
        if type(r[k]) == "table" then r[k] = plain(r[k]) end
    end
    return unpack(r, 1, r.n)
end
ops.escalate = function(run, i, err)
    local t = target_of(run, i)
    local real = run.real[err] or err
    calls.emit("escalate", { call_id = run.id, policy = run.spec.name, target = t.name,
                             kind = errors.is(real) and real.kind or nil,
                             message = errors.is(real) and real.message or nil, error = errors.is(real) and real or nil })
end

-- The API handed to plugin code: every function yields to the host.
local API = {
    call = function(i, req, reason, opts) return yield("call", i, req, reason, opts) end,
    race = function(list, opts) return yield("race", list, opts) end,
    all = function(list) return yield("all", list) end,
    state = function(i) return yield("state", i) end,
    states = function() return yield("states") end,
    decide = function(i, reason) return yield("decide", i, reason) end,
    sleep = function(s) return yield("sleep", s) end,
    hook = function(h, ...) return yield("hook", h, ...) end,
    escalate = function(i, err) return yield("escalate", i, err) end,
    remaining = function() return yield("remaining") end,
}

local function tokens_of(req)
    if type(req) ~= "table" then return 0 end
    local n = #(type(req.system) == "string" and req.system or "")
    for _, m in ipairs(type(req.messages) == "table" and req.messages or {}) do
        n = n + #(type(m) == "table" and type(m.content) == "string" and m.content or "") + 12
    end
    return ceil(n / 4)
end

-- The API table of a plugin version: its own copy (a plugin that changes
-- it changes nothing of anyone else's), made once.
local apis = setmetatable({}, { __mode = "k" })
local function api_for(p)
    local a = apis[p]
    if a then return a end
    a = {}
    for k, f in pairs(API) do a[k] = f end
    a.now = now
    a.tokens = tokens_of
    apis[p] = a
    return a
end

-- After a budget segment: re-raise an error caused by the budget while it
-- still counts (so lua_budget.c reports the trip).
local function resume_checked(co, ...)
    local r = pack(resume(co, ...))
    if not r[1] and budget.tripped() then error(r[2], 0) end
    return unpack(r, 1, r.n)
end

local function policy_error(run, msg)
    return errors.new("integration", format("policy %s (plugin %s %s): %s", run.spec.name, run.spec.policy,
        tostring(run.plugin.version or "?"), tostring(msg)))
end

-- What the plugin returned: a value a target produced, or an error.
local function settle(run, r)
    local v, e = r[3], r[4]
    if v ~= nil then
        local real = run.real[v]
        if real and not errors.is(real) then return true, real end
        if real and errors.is(real) then return false, real end
        return false, policy_error(run, "returned a value that no target produced")
    end
    if e == nil then return false, policy_error(run, "returned nothing") end
    local real = run.real[e]
    if real then return false, real end
    if errors.is(e) then
        local m = rawget(e, "message")
        return false, errors.new(rawget(e, "kind"), type(m) == "string" and require("weft._secrets").redact(m) or nil)
    end
    return false, policy_error(run, type(e) == "string" and e or "failed")
end

-- Bounds of one run: API calls (each a budget segment of its own, so a
-- loop around them would never run out of budget) and target calls.
local MAX_OPS, MAX_CALLS = 10000, 100

local function drive(run, co, ...)
    local label = run.spec.policy
    local what = format("policy plugin %s (%s): run", run.spec.policy, tostring(run.plugin.version or "?"))
    local args = pack(...)
    while true do
        local r = pack(plugins.guard(label, what, resume_checked, co, unpack(args, 1, args.n)))
        if not r[1] then return false, policy_error(run, (r[2]:gsub("^.-: run ", ""))) end
        -- r = {true, resumed_ok, ...}
        if not r[2] then
            local e = r[3]
            local real = run.real[e]
            if real then return false, real end
            if errors.is(e) then return settle(run, { true, true, nil, e }) end
            return false, policy_error(run, type(e) == "string" and e or "failed")
        end
        if status(co) == "dead" then return settle(run, r) end
        local op = ops[r[3]]
        if not op then return false, policy_error(run, "yielded " .. tostring(r[3]) .. " (only the api functions wait)") end
        run.ops = run.ops + 1
        if run.ops > MAX_OPS then return false, policy_error(run, "made more than " .. MAX_OPS .. " API calls in one call") end
        if run.n >= MAX_CALLS and (r[3] == "call" or r[3] == "race" or r[3] == "all") then
            return false, policy_error(run, "called targets more than " .. MAX_CALLS .. " times in one call")
        end
        local res = pack(pcall(op, run, unpack(r, 4, r.n)))
        if not res[1] then
            -- the caller cancelled, or the plugin misused the API (a bug in it)
            local e = res[2]
            if errors.is(e) and e.kind == "cancelled" then error(e, 0) end
            return false, policy_error(run, errors.is(e) and e.message or tostring(e))
        end
        args = pack(unpack(res, 2, res.n))
    end
end

local seq = 0

--- Run one call through policy model `spec`. `req` is normalized (its
--- `model` field is the policy model's name).
function M.run(spec, op, req, on_event)
    local entry = spec.entry
    local p = entry.plugin -- this call's version, whatever is loaded meanwhile
    local opts = M.options(spec, p)
    seq = seq + 1
    local run = {
        spec = spec, plugin = p, op = op, req = req, on_event = on_event, hooks = opts.hooks,
        deadline = req.deadline or (req.timeout and now() + req.timeout) or nil,
        id = req.id or ("policy-" .. seq), route = {}, real = {},
        parts = {}, n = 0, ops = 0, decisions = 0, tokens_in = 0, tokens_out = 0, cost = 0,
    }
    local view = plain(req) or {}
    view.model, view.op, view.id = nil, op, nil
    local co = create(p.run)
    local t0 = now()
    local ok, v = drive(run, co, view, opts.targets, api_for(p), opts.cfg, spec.state)
    local name = spec.name
    if run.tokens_in > 0 then ptokens:inc(run.tokens_in, name, "input") end
    if run.tokens_out > 0 then ptokens:inc(run.tokens_out, name, "output") end
    if run.cost > 0 then pcost:inc(run.cost, name) end
    local function outcome(o)
        local ser = spec.outcome_series[o]
        if not ser then
            ser = outcomes:labels(name, o)
            spec.outcome_series[o] = ser
        end
        ser:inc()
    end
    if not ok then
        outcome(errors.is(v) and v.kind or "error")
        if errors.is(v) then
            if v.route == nil or rawget(v, "policy") ~= name then
                -- the error of a target: this policy's route on it (a copy
                -- when it is one a nested policy already marked)
                v.route, v.policy = run.route, name
            end
        end
        error(v, 0)
    end
    outcome("success")
    local out = v
    if out.route and out.policy ~= name then
        -- the result of a nested policy: keep its route inside ours
        local copy = {}
        for k, x in pairs(out) do copy[k] = x end
        out = copy
    end
    out.route, out.policy = run.route, name
    out.policy_version = p.version and tostring(p.version) or tostring(entry.n)
    out.latency = now() - t0
    if op == "stream" then
        local parts, texts = {}, {}
        for _, pt in ipairs(run.parts) do
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
---@param outcome fun(i: integer, req: table, op: string): table
function M.simulate(p, opts, n, op, outcome)
    local targets = {}
    for i = 1, n do targets[i] = { name = "sim" .. i, weight = 1, context_window = 1000000, index = i } end
    local spec = { name = "check:" .. p.name, policy = p.name, entry = { plugin = p, n = 1 }, targets = targets,
                   defaults = {}, opts = opts, cfgs = setmetatable({}, { __mode = "k" }), state = {},
                   hedges = 0, races = 0, simulate = outcome, series = {}, outcome_series = {} }
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

--- The model object of policy model `spec`.
function M.model(spec, defaults, normalize)
    return setmetatable({ name = spec.name, spec = spec, policy = spec.policy, defaults = defaults,
                          normalize = normalize }, PolicyModel)
end

return M
