-- policy_spec.lua: orchestration policies (plugins/policies/*.lua) as
-- AIModels against weft mock fault profiles, with exact counts: fallback,
-- hedge, balance, router, priority, composition, configuration errors.
local model = require "weft.model"
local policy = require "weft.policy"
local mockmod = weft.mock
local value = weft.metrics.value
local keys = mockmod.DEFAULT_KEYS

local OPENAI, ANTHROPIC, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"

local mock
local n = 0

local function decisions(policy_name, target, reason)
    return value("weft_policy_decisions_total", { policy = policy_name, target = target, reason = reason }) or 0
end

-- Providers openai, anthropic, gemini on `mock` (fast retries, no retry
-- budget, no breaker unless given), and the models `models`.
local function setup(models, extra)
    model.reset()
    policy.reset()
    n = n + 1
    local providers = {}
    for _, d in ipairs { "openai", "anthropic", "gemini" } do
        providers[d] = {
            base_url = mock.url,
            secret = weft.secrets.value("policy-" .. d .. n, keys[d]),
            retry = { base = 0.001, cap = 0.002, max_attempts = 3, budget = false, seed = 3 },
            breaker = false,
        }
        for k, v in pairs(extra and extra[d] or {}) do providers[d][k] = v end
    end
    weft.configure { providers = providers, models = models }
end

local function by_dialect(d) return mock:stats().by_dialect[d] or 0 end

-- Wait (bounded) until cond() holds.
local function eventually(cond, what)
    for _ = 1, 500 do
        if cond() then return end
        weft.sleep(0.01)
    end
    error("never happened: " .. what)
end

describe("policy models", function()
    before_each(function() mock = mockmod.start { port = 0 } end)
    after_each(function() mock:close() end)

    describe("fallback", function()
        it("answers every call from the second target when the first always fails with 503", function()
            -- a fresh name per spec: the metrics registry outlives model.reset()
            local name = "fb503_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } } }
            mock:set_faults { { dialect = "openai", probability = { [503] = 1 } } }
            local m = weft.model(name)
            for _ = 1, 100 do
                local r = m:complete("Hello there")
                assert.are.equal("anthropic", r.provider)
                assert.are.equal("echo: Hello there", r.text)
                assert.are.equal(2, #r.route)
                assert.are.equal(OPENAI, r.route[1].target)
                assert.are.equal("transient", r.route[1].outcome)
                assert.are.equal(3, r.route[1].attempts)
                assert.are.equal("success", r.route[2].outcome)
                assert.are.equal("transient", r.route[2].reason)
            end
            -- exactly what the first target's retry policy allows: 3 attempts a call
            assert.are.equal(300, by_dialect("openai"))
            assert.are.equal(100, by_dialect("anthropic"))
            assert.are.equal(100, decisions(name, OPENAI, "first"))
            assert.are.equal(100, decisions(name, ANTHROPIC, "transient"))
            local u = m:usage()
            assert.are.equal(100, u.calls)
            assert.are.equal(0, u.errors)
            assert.is_true(u.input_tokens > 0)
            -- the exit summary has a row for the policy model
            assert.matches(name .. "%s+fallback%s+100%s+0%s+" .. u.input_tokens, weft.calls.summary())
        end)

        it("does not fall back on auth, and escalates exactly once", function()
            local name = "fbauth_" .. n
            setup({ [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } } },
                { openai = { secret = weft.secrets.value("policy-wrong" .. n, "sk-wrong-key") } })
            local seen = {}
            local off = weft.on("escalate", function(ev) seen[#seen + 1] = ev end)
            local ok, err = pcall(weft.model(name).complete, weft.model(name), "Hi")
            off()
            assert.is_false(ok)
            assert.are.equal("auth", err.kind)
            assert.are.equal(0, by_dialect("anthropic"))
            assert.are.equal(1, #seen)
            assert.are.equal(name, seen[1].policy)
            assert.are.equal(OPENAI, seen[1].target)
            assert.are.equal("auth", seen[1].kind)
            assert.are.equal(1, #err.route)
            assert.are.equal("auth", err.route[1].outcome)
        end)

        it("falls back on auth when configured, still escalating", function()
            local name = "fbauth2_" .. n
            setup({ [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC }, on_auth = true } },
                { openai = { secret = weft.secrets.value("policy-wrong" .. n, "sk-wrong-key") } })
            local seen = 0
            local off = weft.on("escalate", function() seen = seen + 1 end)
            local r = weft.model(name):complete("Hi")
            off()
            assert.are.equal("anthropic", r.provider)
            assert.are.equal(1, seen)
            assert.are.equal("auth", r.route[2].reason)
        end)

        it("shares the caller's deadline over the whole chain", function()
            local name = "fbdeadline_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } } }
            mock:set_faults { { dialect = "openai", latency = 2000 }, { dialect = "anthropic", latency = 2000 } }
            local t0 = weft.now()
            local ok, err = pcall(weft.model(name).complete, weft.model(name), { prompt = "Hi", timeout = 0.3 })
            assert.is_false(ok)
            assert.are.equal("timeout", err.kind)
            assert.is_true(weft.now() - t0 >= 0.3)
            assert.are.equal("timeout", err.route[1].outcome)
            -- what is left of the deadline went to the second target: it timed out too, or was not sent
            assert.is_true(#err.route <= 2)
            if err.route[2] then assert.are.equal("timeout", err.route[2].outcome) end
        end)

        it("stops at an error kind it does not move on for", function()
            local name = "fbstop_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } } }
            mock:set_faults { { dialect = "openai", sequence = { 400 } } }
            local ok, err = pcall(weft.model(name).complete, weft.model(name), "Hi")
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
            assert.are.equal(0, by_dialect("anthropic"))
        end)

        it("rewrites the request with transform and tries once more before moving on", function()
            local name = "fbtransform_" .. n
            local seen
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC },
                               on = { "transient", "invalid_request" },
                               transform = function(req, err)
                                   seen = err.kind
                                   return { messages = { req.messages[#req.messages] } }
                               end } }
            mock:set_faults { { dialect = "openai", sequence = { 400 } } }
            local r = weft.model(name):complete { messages = {
                { role = "user", content = "old" }, { role = "assistant", content = "x" },
                { role = "user", content = "new" } } }
            assert.are.equal("openai", r.provider)
            assert.are.equal("invalid_request", seen)
            assert.are.equal("transform", r.route[2].reason)
            assert.are.equal(2, by_dialect("openai"))
            local second = weft.json.decode(mock:requests()[2].body)
            assert.are.equal(1, #second.messages)
            assert.are.equal("new", second.messages[1].content)
        end)

        it("moves a context-length refusal to the next target whose window holds the request", function()
            local name = "fbctx_" .. n
            mock:close()
            mock = mockmod.start { port = 0, context = { ["gpt-4o-mini"] = 40 } }
            setup { [name] = { policy = "fallback", targets = {
                { model = OPENAI, context_window = 40 },
                { model = GEMINI, context_window = 60 },
                { model = ANTHROPIC, context_window = 200000 } } } }
            local long = string.rep("many words here ", 40)
            local r = weft.model(name):complete(long)
            assert.are.equal("anthropic", r.provider)
            assert.are.equal(1, by_dialect("openai")) -- one attempt: a refusal is not retried
            assert.are.equal(0, by_dialect("gemini")) -- its window is too small: skipped
            assert.are.equal("invalid_request", r.route[1].outcome)
            assert.are.equal(1, r.route[1].attempts)
            assert.are.equal("context_length", r.route[2].reason)
            assert.are.equal(1, decisions(name, GEMINI, "skip_context_window"))
            -- a short request stays on the first target
            assert.are.equal("openai", weft.model(name):complete("short").provider)
        end)

        it("embeds through the chain: the second embedding model answers when the first is down", function()
            local name = "fbembed_" .. n
            setup { [name] = { policy = "fallback", targets = { "openai/text-embedding-3-small", "gemini/text-embedding-004" } } }
            mock:set_faults { { dialect = "openai", probability = { [503] = 1 } } }
            local r = weft.model(name):embed { "alpha beta", "gamma" }
            assert.are.equal("gemini", r.provider)
            assert.are.equal(2, #r.vectors)
            local want = mockmod.embedding("alpha beta", #r.vectors[1])
            for i, x in ipairs(want) do assert.is_true(math.abs(r.vectors[1][i] - x) < 1e-6) end
            assert.are.equal("transient", r.route[2].reason)
        end)

        it("moves on after a content-filter refusal only when configured", function()
            local fallback = require("weft.plugins").get("policy", "fallback").plugin
            local function outcome(i)
                if i == 1 then
                    return { text = "", finish_reason = "content_filter", usage = { input = 1, output = 0 }, provider = "sim1" }
                end
                return { text = "ok", finish_reason = "stop", usage = { input = 1, output = 1 }, provider = "sim" .. i }
            end
            local ok, r = policy.simulate(fallback, { on_content_filter = true }, 2, "complete", outcome)
            assert.is_true(ok)
            assert.are.equal("sim2", r.provider)
            assert.are.equal("content_filter", r.route[2].reason)
            ok, r = policy.simulate(fallback, {}, 2, "complete", outcome)
            assert.is_true(ok)
            assert.are.equal("sim1", r.provider)
            assert.are.equal("content_filter", r.finish_reason)
            -- every target refusing: the last refusal is the answer
            ok, r = policy.simulate(fallback, { on_content_filter = true }, 2, "complete", function()
                return { text = "", finish_reason = "content_filter", usage = { input = 1, output = 0 }, provider = "simX" }
            end)
            assert.is_true(ok)
            assert.are.equal("content_filter", r.finish_reason)
            assert.are.equal(2, #r.route)
        end)

        it("streams: a cut stream with continue = delivered text + the continuation, both in route and parts", function()
            local name = "fbcont_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC }, stream_failure = "continue" } }
            mock:set_faults { { dialect = "openai", sequence = { "reset_mid_body" } } }
            local got = {}
            local r = weft.model(name):stream("one two three four five six", function(ev)
                if ev.type == "text" then got[#got + 1] = ev.text end
            end)
            assert.are.equal(2, #r.route)
            assert.are.equal("transient", r.route[1].outcome)
            assert.are.equal("stream_continue", r.route[2].reason)
            assert.are.equal(2, #r.parts)
            assert.are.equal(OPENAI, r.parts[1].target)
            assert.are.equal(ANTHROPIC, r.parts[2].target)
            assert.is_true(#r.parts[1].text > 0)
            assert.are.equal(r.parts[1].text .. r.parts[2].text, r.text)
            assert.are.equal(r.text, table.concat(got))
            -- the second target got the delivered text as the assistant's start
            local last = mock:requests()
            local body = weft.json.decode(last[#last].body)
            assert.are.equal("assistant", body.messages[#body.messages].role)
            assert.are.equal(r.parts[1].text, body.messages[#body.messages].content)
        end)

        it("streams: restart tells the caller and keeps only the new text", function()
            local name = "fbrestart_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC }, stream_failure = "restart" } }
            mock:set_faults { { dialect = "openai", sequence = { "reset_mid_body" } } }
            local restarts, got = 0, {}
            local r = weft.model(name):stream("one two three four five six", function(ev)
                if ev.type == "restart" then restarts, got = restarts + 1, {} end
                if ev.type == "text" then got[#got + 1] = ev.text end
            end)
            assert.are.equal(1, restarts)
            assert.are.equal("echo: one two three four five six", r.text)
            assert.are.equal(r.text, table.concat(got))
            assert.is_true(r.parts[1].discarded)
        end)

        it("streams: error (the default) raises with the partial text", function()
            local name = "fberr_" .. n
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } } }
            mock:set_faults { { dialect = "openai", sequence = { "reset_mid_body" } } }
            local ok, err = pcall(weft.model(name).stream, weft.model(name), "one two three four five six", function() end)
            assert.is_false(ok)
            assert.is_true(#err.partial.text > 0)
            assert.are.equal(0, by_dialect("anthropic"))
        end)
    end)

    describe("hedge", function()
        it("answers from the second target when the first is slow, and cancels the first", function()
            local name = "hedge_" .. n
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.1, budget = 1 } }
            mock:set_faults { { dialect = "openai", latency = 2000 } }
            local t0 = weft.now()
            local r = weft.model(name):complete("Hi")
            assert.are.equal("anthropic", r.provider)
            assert.is_true(weft.now() - t0 >= 0.1)
            assert.are.equal("cancelled", r.route[1].outcome)
            assert.are.equal("hedge", r.route[2].reason)
            assert.are.equal(1, decisions(name, ANTHROPIC, "hedge"))
            -- the first request's transfer was stopped: its connection closed
            -- before the mock answered (seen when its 2 s handler wakes)
            eventually(function() return (mock:stats().closed_early or 0) >= 1 end, "first request closed early")
            assert.are.equal(1, mock:stats().closed_early_by_model["gpt-4o-mini"])
            assert.are.equal(1, by_dialect("openai"))
            -- the loser's input is still counted (estimated: its answer never came)
            assert.is_string(r.route[1].call_id)
            local u = weft.model(name):usage()
            assert.is_true(u.input_tokens > r.usage.input, u.input_tokens .. " vs " .. r.usage.input)
            assert.is_true((value("weft_tokens_total", { provider = "openai", model = "gpt-4o-mini", direction = "input" }) or 0) > 0)
        end)

        it("fails over at once, without spending the budget, when the first target fails before the delay", function()
            local name = "hedgefail_" .. n
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 5, budget = 0 } }
            mock:set_faults { { dialect = "openai", probability = { [400] = 1 } } }
            for _ = 1, 3 do
                local r = weft.model(name):complete("Hi")
                assert.are.equal("anthropic", r.provider)
                -- started when the first failed, not after the delay
                assert.are.equal("failover", r.route[2].reason)
            end
            assert.are.equal(0, decisions(name, ANTHROPIC, "hedge"))
        end)

        it("takes its delay from a percentile of the first target's measured latency", function()
            local name, warm = "hedgepct_" .. n + 1, "warm_" .. n + 1
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.01, percentile = 90,
                               min_delay = 0.01, max_delay = 5, budget = 1 },
                    [warm] = { policy = "fallback", targets = { OPENAI } } }
            mock:set_faults { { dialect = "openai", latency = 150 } }
            for _ = 1, 10 do weft.model(warm):complete("x") end -- ten measured latencies of about 150 ms
            mock:set_faults { { dialect = "openai", latency = 2000 } }
            local r = weft.model(name):complete("Hi")
            assert.are.equal("anthropic", r.provider)
            -- the hedge went out after the 90th percentile (>= 150 ms), not after `delay`
            assert.is_true(r.latency >= 0.15, "latency " .. r.latency)
        end)

        it("streams: hedges when no first token came by the TTFT deadline; text only from the winner", function()
            local name = "hedgestream_" .. n
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 5, ttft = 0.1, budget = 1 } }
            mock:set_faults { { dialect = "openai", latency = 2000 } }
            local got = {}
            local r = weft.model(name):stream("one two three", function(ev)
                if ev.type == "text" then got[#got + 1] = ev.text end
            end)
            assert.are.equal("anthropic", r.provider)
            assert.are.equal("echo: one two three", table.concat(got))
            assert.are.equal(1, #r.parts)
            assert.are.equal(ANTHROPIC, r.parts[1].target)
            assert.are.equal("cancelled", r.route[1].outcome)
        end)

        it("keeps hedges within the budget: at most 10% + 1 of 200 calls", function()
            local name = "hedgebudget_" .. n
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.01, budget = 0.1 } }
            mock:set_faults { { dialect = "openai", latency = 60 } }
            local m = weft.model(name)
            local tasks = {}
            for w = 1, 20 do
                tasks[w] = weft.spawn(function()
                    for _ = 1, 10 do m:complete("Hi") end
                end)
            end
            for _, t in ipairs(tasks) do t:wait() end
            local hedges = decisions(name, ANTHROPIC, "hedge")
            local refused = decisions(name, ANTHROPIC, "hedge_budget_exhausted")
            print(("\n# hedge budget: %d hedges, %d refused by the budget, of 200 calls"):format(hedges, refused))
            assert.is_true(hedges <= 21, "hedges " .. hedges)
            assert.is_true(hedges >= 1)
            assert.is_true(refused >= 1)
            assert.are.equal(hedges, by_dialect("anthropic"))
        end)
    end)

    describe("balance", function()
        it("weights 3:1 over 4,000 calls give shares within 2 points of 75/25", function()
            local name = "weighted_" .. n
            setup { [name] = { policy = "balance", strategy = "weighted",
                               targets = { { model = OPENAI, weight = 3 }, { model = ANTHROPIC, weight = 1 } } } }
            math.randomseed(11)
            local m = weft.model(name)
            local count = {}
            for _ = 1, 4000 do
                local r = m:complete("x")
                count[r.provider] = (count[r.provider] or 0) + 1
            end
            local share = count.openai / 4000
            assert.is_true(math.abs(share - 0.75) <= 0.02, "share " .. share)
            assert.are.equal(count.openai, by_dialect("openai"))
            assert.are.equal(count.openai, decisions(name, OPENAI, "weighted"))
        end)

        it("lowest latency sends at least 90% of the last 100 of 300 calls to the faster target", function()
            local name = "latency_" .. n
            setup { [name] = { policy = "balance", strategy = "latency", targets = { OPENAI, ANTHROPIC } } }
            mock:set_faults { { dialect = "openai", latency = 20 } }
            math.randomseed(5)
            local m = weft.model(name)
            local fast = 0
            for i = 1, 300 do
                local r = m:complete("x")
                if i > 200 and r.provider == "anthropic" then fast = fast + 1 end
            end
            assert.is_true(fast >= 90, "fast " .. fast)
        end)

        it("round robin alternates; least in flight prefers the idle target", function()
            local rr, lif = "rr_" .. n, "lif_" .. n
            setup { [rr] = { policy = "balance", strategy = "round_robin", targets = { OPENAI, ANTHROPIC } },
                    [lif] = { policy = "balance", strategy = "least_in_flight", targets = { OPENAI, ANTHROPIC } } }
            local seq = {}
            for i = 1, 4 do seq[i] = weft.model(rr):complete("x").provider end
            assert.are.same({ "openai", "anthropic", "openai", "anthropic" }, seq)
            mock:set_faults { { dialect = "openai", latency = 300 } }
            local m = weft.model(lif)
            local first = weft.spawn(function() return m:complete("x").provider end)
            eventually(function() return mock:stats().in_flight == 1 end, "the first call at the server")
            assert.are.equal("anthropic", m:complete("y").provider)
            first:wait()
        end)

        it("most headroom prefers the target with more of its limits left", function()
            local name = "headroom_" .. n + 1
            setup({ [name] = { policy = "balance", strategy = "headroom", targets = { OPENAI, ANTHROPIC } } },
                { openai = { limits = { rpm = 10 } }, anthropic = { limits = { rpm = 100 } } })
            local count = {}
            for _ = 1, 20 do
                local p = weft.model(name):complete("x").provider
                count[p] = (count[p] or 0) + 1
            end
            assert.is_true((count.anthropic or 0) >= 15, "anthropic " .. tostring(count.anthropic))
            assert.are.equal(count.anthropic, decisions(name, ANTHROPIC, "most_headroom"))
        end)

        it("skips a target whose breaker is open until its cooldown, then uses it again", function()
            local name = "brk_" .. n
            setup({ [name] = { policy = "balance", strategy = "round_robin", failover = false, targets = { OPENAI, ANTHROPIC } } },
                { openai = { retry = { max_attempts = 1, budget = false }, breaker = { min_calls = 2, threshold = 0.5, cooldown = 0.5 } } })
            mock:set_faults { { dialect = "openai", sequence = { 503, 503 } } }
            local direct = weft.model(OPENAI)
            for _ = 1, 2 do pcall(direct.complete, direct, "x") end
            assert.are.equal("open", model.provider("openai").breaker:state().state)
            local opened = weft.now()
            local m = weft.model(name)
            local before = by_dialect("openai")
            local k = 0
            while weft.now() - opened < 0.4 do
                assert.are.equal("anthropic", m:complete("x").provider)
                k = k + 1
            end
            assert.is_true(k > 0)
            assert.are.equal(before, by_dialect("openai"))
            eventually(function() return model.provider("openai").breaker:state().retry_in <= 0 end, "cooldown over")
            local saw = false
            for _ = 1, 4 do if m:complete("x").provider == "openai" then saw = true end end
            assert.is_true(saw)
        end)

        it("waits for the first target back when all are cooling down and the deadline allows", function()
            local name = "cool_" .. n
            local br = { min_calls = 1, threshold = 0.5, cooldown = 0.3 }
            setup({ [name] = { policy = "balance", targets = { OPENAI, ANTHROPIC } } },
                { openai = { retry = { max_attempts = 1, budget = false }, breaker = br },
                  anthropic = { retry = { max_attempts = 1, budget = false }, breaker = br } })
            mock:set_faults { { sequence = { 503, 503 } } }
            pcall(weft.model(OPENAI).complete, weft.model(OPENAI), "x")
            pcall(weft.model(ANTHROPIC).complete, weft.model(ANTHROPIC), "x")
            assert.are.equal("open", model.provider("openai").breaker:state().state)
            assert.are.equal("open", model.provider("anthropic").breaker:state().state)
            local left = model.provider("openai").breaker:state().retry_in
            local t0 = weft.now()
            local r = weft.model(name):complete { prompt = "x", timeout = 5 }
            assert.is_true(weft.now() - t0 >= math.min(left, model.provider("anthropic").breaker:state().retry_in or left) - 0.01)
            assert.are.equal("echo: x", r.text)
            assert.are.equal(1, decisions(name, "-", "wait_for_cooldown"))
        end)

        it("fails at once with circuit_open when the deadline is too short to wait", function()
            local name = "cool2_" .. n
            local br = { min_calls = 1, threshold = 0.5, cooldown = 30 }
            setup({ [name] = { policy = "balance", targets = { OPENAI, ANTHROPIC } } },
                { openai = { retry = { max_attempts = 1, budget = false }, breaker = br },
                  anthropic = { retry = { max_attempts = 1, budget = false }, breaker = br } })
            mock:set_faults { { sequence = { 503, 503 } } }
            pcall(weft.model(OPENAI).complete, weft.model(OPENAI), "x")
            pcall(weft.model(ANTHROPIC).complete, weft.model(ANTHROPIC), "x")
            local ok, err = pcall(weft.model(name).complete, weft.model(name), { prompt = "x", timeout = 5 })
            assert.is_false(ok)
            assert.are.equal("circuit_open", err.kind)
            assert.are.equal(2, mock:stats().requests)
        end)
    end)

    describe("router", function()
        local function routed(rules, extra)
            local name = "router_" .. n + 1
            local cfg = { policy = "router", targets = { OPENAI, ANTHROPIC, GEMINI }, default = OPENAI, rules = rules }
            for k, v in pairs(extra or {}) do cfg[k] = v end
            setup { [name] = cfg }
            return name, weft.model(name)
        end

        it("routes by estimated tokens", function()
            local name, m = routed { { target = GEMINI, when = { tokens_over = 50 } } }
            assert.are.equal("openai", m:complete("short").provider)
            assert.are.equal("gemini", m:complete(string.rep("long text ", 40)).provider)
            assert.are.equal(1, decisions(name, GEMINI, "rule1"))
            assert.are.equal(1, decisions(name, OPENAI, "default"))
        end)

        it("routes by tools present", function()
            local name, m = routed { { target = ANTHROPIC, when = { tools = true }, name = "tools" } }
            local tools = { { name = "get_weather", description = "w", parameters = { type = "object", properties = {} } } }
            assert.are.equal("anthropic", m:complete({ prompt = "x", tools = tools }).provider)
            assert.are.equal("openai", m:complete("x").provider)
            assert.are.equal(1, decisions(name, ANTHROPIC, "tools"))
        end)

        it("routes by tag", function()
            local name, m = routed { { target = ANTHROPIC, when = { tag = "vip" }, name = "vip" } }
            assert.are.equal("anthropic", m:complete({ prompt = "x", tags = { "a", "vip" } }).provider)
            assert.are.equal("openai", m:complete({ prompt = "x", tags = { "a" } }).provider)
            assert.are.equal(1, decisions(name, ANTHROPIC, "vip"))
            assert.are.equal(1, decisions(name, OPENAI, "default"))
        end)

        it("routes by metadata", function()
            local name, m = routed { { target = GEMINI, when = { metadata = { team = "search" } }, name = "team" } }
            assert.are.equal("gemini", m:complete({ prompt = "x", metadata = { team = "search" } }).provider)
            assert.are.equal("openai", m:complete({ prompt = "x", metadata = { team = "ads" } }).provider)
            assert.are.equal("openai", m:complete("x").provider)
            assert.are.equal(1, decisions(name, GEMINI, "team"))
            assert.are.equal(2, decisions(name, OPENAI, "default"))
        end)

        it("routes by priority", function()
            local name, m = routed { { target = ANTHROPIC, when = { priority = { "high", "critical" } }, name = "prio" } }
            assert.are.equal("anthropic", m:complete({ prompt = "x", priority = "high" }).provider)
            assert.are.equal("openai", m:complete({ prompt = "x", priority = "low" }).provider)
            assert.are.equal("openai", m:complete("x").provider)
            assert.are.equal(1, decisions(name, ANTHROPIC, "prio"))
            assert.are.equal(2, decisions(name, OPENAI, "default"))
        end)

        it("routes by a Lua predicate run in the host", function()
            local calls = 0
            local name, m = routed { { target = GEMINI, name = "pred", when = { predicate = function(req)
                calls = calls + 1
                return #req.messages > 1
            end } } }
            assert.are.equal("openai", m:complete("x").provider)
            assert.are.equal("gemini", m:complete({ messages = { { role = "user", content = "a" },
                { role = "assistant", content = "b" }, { role = "user", content = "c" } } }).provider)
            assert.are.equal(2, calls)
            assert.are.equal(1, decisions(name, GEMINI, "pred"))
        end)

        it("routes on a target's breaker: healthy", function()
            local name = "router_br_" .. n + 1
            setup({ [name] = { policy = "router", targets = { OPENAI, GEMINI }, default = GEMINI,
                               rules = { { target = OPENAI, when = { healthy = true }, name = "healthy" } } } },
                { openai = { retry = { max_attempts = 1, budget = false }, breaker = { min_calls = 1, threshold = 0.5, cooldown = 30 } } })
            local m = weft.model(name)
            assert.are.equal("openai", m:complete("x").provider)
            mock:set_faults { { dialect = "openai", sequence = { 503 } } }
            pcall(weft.model(OPENAI).complete, weft.model(OPENAI), "x")
            assert.are.equal("gemini", m:complete("x").provider) -- openai's breaker is open
            assert.are.equal(1, decisions(name, OPENAI, "healthy"))
            assert.are.equal(1, decisions(name, GEMINI, "default"))
        end)

        it("routes on a target's limiter: its expected wait within the deadline", function()
            local name = "router_wait_" .. n + 1
            setup({ [name] = { policy = "router", targets = { ANTHROPIC, GEMINI }, default = GEMINI,
                               rules = { { target = ANTHROPIC, when = { within_deadline = true }, name = "in_time" } } } },
                { anthropic = { limits = { rpm = 1 } } })
            local m = weft.model(name)
            assert.are.equal("anthropic", m:complete({ prompt = "x", timeout = 5 }).provider)
            -- its one request a minute is used: the wait (about 60 s) is past a 5 s deadline
            assert.are.equal("gemini", m:complete({ prompt = "x", timeout = 5 }).provider)
            assert.are.equal(1, decisions(name, ANTHROPIC, "in_time"))
            assert.are.equal(1, decisions(name, GEMINI, "default"))
        end)

        it("routes on a target's price", function()
            local name = "router_price_" .. n + 1
            local p = weft.calls.price("gemini", "gemini-2.0-flash")
            setup { [name] = { policy = "router", targets = { OPENAI, GEMINI }, default = OPENAI, rules = {
                        { target = GEMINI, when = { max_price = p.input / 2 }, name = "too_cheap" },
                        { target = GEMINI, when = { max_price = p.input }, name = "cheap" } } } }
            local m = weft.model(name)
            assert.are.equal("gemini", m:complete("x").provider)
            assert.are.equal(0, decisions(name, GEMINI, "too_cheap"))
            assert.are.equal(1, decisions(name, GEMINI, "cheap"))
        end)

        it("refuses rules that name no target or an unknown condition", function()
            local ok, err = pcall(setup, { r = { policy = "router", targets = { OPENAI }, rules = { { target = "x/y", when = {} } } } })
            assert.is_false(ok)
            assert.matches("rules%[1%]%.target is not one of the targets", tostring(err))
            ok, err = pcall(setup, { r = { policy = "router", targets = { OPENAI }, rules = { { target = 1, when = { color = "red" } } } } })
            assert.is_false(ok)
            assert.matches("when%.color is not a condition", tostring(err))
        end)
    end)

    describe("priority", function()
        it("sends high priority to the reserved target, the rest to the cheapest", function()
            local name = "prio_" .. n + 1
            setup { [name] = { policy = "priority", high = { ANTHROPIC }, targets = { ANTHROPIC, OPENAI, GEMINI } } }
            local m = weft.model(name)
            assert.are.equal("anthropic", m:complete({ prompt = "x", priority = "high" }).provider)
            -- gemini-2.0-flash is cheaper than gpt-4o-mini in the shipped price tables
            local cheap = m:complete({ prompt = "x", priority = "low" }).provider
            local p1, p2 = weft.calls.price("openai", "gpt-4o-mini"), weft.calls.price("gemini", "gemini-2.0-flash")
            assert.are.equal((p2.input + p2.output) < (p1.input + p1.output) and "gemini" or "openai", cheap)
            assert.are.equal(1, decisions(name, ANTHROPIC, "high_priority"))
            assert.are.equal(1, decisions(name, cheap == "gemini" and GEMINI or OPENAI, "cheapest"))
        end)

        it("orders the cheap target's queue by priority: normal before low", function()
            local name = "prioq_" .. n + 1
            setup({ [name] = { policy = "priority", high = { ANTHROPIC }, targets = { ANTHROPIC, GEMINI } } },
                { gemini = { limits = { rps = 5, burst = 1 } } })
            local m = weft.model(name)
            m:complete({ prompt = "warm", priority = "low" }) -- takes the one token
            local order = {}
            local tasks = {}
            for i = 1, 3 do
                tasks[#tasks + 1] = weft.spawn(function()
                    m:complete({ prompt = "low" .. i, priority = "low" })
                    order[#order + 1] = "low"
                end)
            end
            weft.sleep(0)
            tasks[#tasks + 1] = weft.spawn(function()
                m:complete({ prompt = "normal", priority = "normal" })
                order[#order + 1] = "normal"
            end)
            for _, t in ipairs(tasks) do t:wait() end
            assert.are.equal("normal", order[1])
            assert.are.equal(5, decisions(name, GEMINI, "cheapest"))
        end)
    end)

    describe("accounting: a policy's usage is what its targets used", function()
        local function usage_of(names)
            local u = { input_tokens = 0, output_tokens = 0, cost = 0 }
            for _, nm in ipairs(names) do
                local x = weft.model(nm):usage()
                u.input_tokens, u.output_tokens = u.input_tokens + x.input_tokens, u.output_tokens + x.output_tokens
                u.cost = u.cost + x.cost
            end
            return u
        end
        local function same(a, b)
            assert.are.equal(a.input_tokens, b.input_tokens)
            assert.are.equal(a.output_tokens, b.output_tokens)
            assert.is_true(math.abs(a.cost - b.cost) < 1e-12, a.cost .. " vs " .. b.cost)
        end

        it("a hedge: the winner's and the loser's, tokens and cost", function()
            local name = "acct_hedge_" .. n + 1
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.05, budget = 1 } }
            mock:set_faults { { dialect = "openai", latency = 2000 } }
            weft.model(name):complete("Hello there, a longer prompt for tokens")
            local pu = weft.model(name):usage()
            same(pu, usage_of { OPENAI, ANTHROPIC })
            assert.is_true(pu.cost > 0)
        end)

        it("a call cancelled by its caller is recorded (outcome and usage)", function()
            local name = "acct_cancel_" .. n + 1
            setup { [name] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.05, budget = 1 } }
            mock:set_faults { { dialect = "openai", latency = 2000 }, { dialect = "anthropic", latency = 2000 } }
            local m = weft.model(name)
            local task = weft.spawn(function() return m:complete("Hello there, a longer prompt for tokens") end)
            eventually(function() return mock:stats().in_flight == 2 end, "both hedged requests at the server")
            task:cancel()
            assert.is_false((pcall(task.wait, task)))
            eventually(function() return usage_of({ OPENAI, ANTHROPIC }).input_tokens > 0 end, "providers recorded")
            assert.are.equal(1, value("weft_policy_calls_total", { policy = name, outcome = "cancelled" }))
            same(m:usage(), usage_of { OPENAI, ANTHROPIC })
        end)

        it("a nested policy's usage counts for the policy over it", function()
            local inner, outer = "acct_inner_" .. n + 1, "acct_outer_" .. n + 1
            setup { [inner] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } },
                    [outer] = { policy = "fallback", targets = { inner, GEMINI } } }
            mock:set_faults { { dialect = "openai", probability = { [503] = 1 } } }
            weft.model(outer):complete("Hello there")
            same(weft.model(outer):usage(), weft.model(inner):usage())
            assert.is_true(weft.model(outer):usage().input_tokens > 0)
        end)

        it("three levels: a policy with one target that is a policy passes its usage on whole", function()
            local inner, mid, outer = "acct3_inner_" .. n + 1, "acct3_mid_" .. n + 1, "acct3_outer_" .. n + 1
            setup { [inner] = { policy = "fallback", targets = { OPENAI, ANTHROPIC } },
                    [mid] = { policy = "fallback", targets = { inner } },
                    [outer] = { policy = "fallback", targets = { mid, GEMINI } } }
            mock:set_faults { { dialect = "openai", probability = { [503] = 1 } } }
            local r = weft.model(outer):complete("Hello there")
            assert.are.equal("anthropic", r.provider)
            same(weft.model(mid):usage(), weft.model(inner):usage())
            same(weft.model(outer):usage(), weft.model(inner):usage())
            same(weft.model(inner):usage(), usage_of { OPENAI, ANTHROPIC })
        end)

        it("a stream broken after it delivered: its usage is the provider's and the policy's", function()
            local name = "acct_stream_" .. n + 1
            setup { [name] = { policy = "fallback", targets = { ANTHROPIC, OPENAI }, stream_failure = "restart" } }
            mock:set_faults { { dialect = "anthropic", sequence = { "truncate" } } }
            weft.model(name):stream("Hello there friend", function() end)
            local pu = weft.model(name):usage()
            same(pu, usage_of { ANTHROPIC, OPENAI })
            assert.is_true(weft.model(ANTHROPIC):usage().input_tokens > 0)
        end)

        it("a caller cancelled mid-call stops the chain: the next target gets nothing, is charged nothing", function()
            local name = "acct_early_" .. n + 1
            setup { [name] = { policy = "fallback", targets = { OPENAI, ANTHROPIC },
                               on = { "transient", "cancelled" } } }
            mock:set_faults { { dialect = "openai", latency = 1000 } }
            local m = weft.model(name)
            local task = weft.spawn(function() return m:complete("Hello there") end)
            eventually(function() return mock:stats().in_flight == 1 end, "the first target's request at the server")
            task:cancel()
            -- the call has ended when wait returns: a next target would have been called by then
            assert.is_false((pcall(task.wait, task)))
            assert.are.equal(0, by_dialect("anthropic")) -- not moved on: the caller is gone
            assert.are.equal(0, weft.model(ANTHROPIC):usage().input_tokens)
        end)
    end)

    describe("streams through nested policies", function()
        it("a nested policy's restart drops that text from the result too", function()
            local inner, outer = "st_inner_" .. n + 1, "st_outer_" .. n + 1
            setup { [inner] = { policy = "fallback", targets = { ANTHROPIC, OPENAI }, stream_failure = "restart" },
                    [outer] = { policy = "fallback", targets = { inner, OPENAI }, stream_failure = "continue" } }
            mock:set_faults { { dialect = "anthropic", sequence = { "truncate" } },
                              { dialect = "openai", sequence = { "truncate", "ok" } } }
            local seen = ""
            local r = weft.model(outer):stream("Hello there friend", function(ev)
                if ev.type == "restart" then seen = "" else seen = seen .. (ev.text or "") end
            end)
            assert.are.equal(seen, r.text)
        end)
    end)

    describe("composition and configuration", function()
        it("fallback over hedge over two providers", function()
            local h, f = "inner_" .. n + 1, "outer_" .. n + 1
            setup { [h] = { policy = "hedge", targets = { OPENAI, ANTHROPIC }, delay = 0.05, budget = 1 },
                    [f] = { policy = "fallback", targets = { h, GEMINI } } }
            mock:set_faults { { dialect = "openai", latency = 1000 } }
            local r = weft.model(f):complete("Hi")
            assert.are.equal("anthropic", r.provider)
            assert.are.equal(h, r.route[1].target)
            assert.are.equal("success", r.route[1].outcome)
            assert.are.equal(2, #r.route[1].route)
            assert.are.equal(ANTHROPIC, r.route[1].route[2].target)
            -- both fail: the outer moves on to gemini
            mock:set_faults { { dialect = "openai", probability = { [503] = 1 } }, { dialect = "anthropic", probability = { [503] = 1 } } }
            r = weft.model(f):complete("Hi")
            assert.are.equal("gemini", r.provider)
            assert.are.equal("transient", r.route[2].reason)
        end)

        it("refuses a cycle with its path, and unknown targets, options and policies", function()
            local ok, err = pcall(weft.configure, { models = {
                a = { policy = "fallback", targets = { "b", OPENAI } },
                b = { policy = "hedge", targets = { "c", OPENAI } },
                c = { policy = "fallback", targets = { "a" } } } })
            assert.is_false(ok)
            assert.matches("cycle: a %-> b %-> c %-> a", tostring(err))
            ok, err = pcall(weft.configure, { models = { a = { policy = "fallback", targets = { "nope" } } } })
            assert.is_false(ok)
            assert.matches("models%.a%.targets%.1: unknown model 'nope'", tostring(err))
            ok, err = pcall(weft.configure, { models = { a = { policy = "fallback", targets = { OPENAI }, color = 1 } } })
            assert.is_false(ok)
            assert.matches("models%.a%.color: unknown key 'color'", tostring(err))
            ok, err = pcall(weft.configure, { models = { a = { policy = "fallback", targets = { OPENAI }, on_auth = "yes" } } })
            assert.is_false(ok)
            assert.matches("models%.a%.on_auth: on_auth must be a boolean", tostring(err))
            ok, err = pcall(weft.configure, { models = { a = { policy = "nosuch", targets = { OPENAI } } } })
            assert.is_false(ok)
            assert.matches("no policy plugin 'nosuch'", tostring(err))
            ok, err = pcall(weft.configure, { models = { a = { policy = "hedge", targets = { OPENAI } } } })
            assert.is_false(ok)
            assert.matches("hedge needs at least two targets", tostring(err))
        end)

        it("names the line of a bad key in a configuration file", function()
            local path = os.tmpname()
            local f = io.open(path, "w")
            f:write("return {\n  models = {\n    smart = { policy = \"fallback\",\n      targets = { \"openai/gpt-4o-mini\" },\n      stream_failure = \"sometimes\" },\n  },\n}\n")
            f:close()
            local ok, err = pcall(model.load_config, path)
            os.remove(path)
            assert.is_false(ok)
            assert.matches(":3: config: models%.smart: stream_failure must be error, restart or continue", tostring(err))
        end)
    end)
end)
