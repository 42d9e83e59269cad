-- model_spec.lua: weft.model / weft.configure, the call pipeline and the
-- provider plugins, against weft mock in its three dialects (and
-- openai_compatible): exact texts and usage, streams, embeddings, every
-- error kind, attempts under faults, rate-limit headers adapting the
-- limiter, token reconciliation, metrics, mid-stream failures, config
-- errors naming key and line, hot reload.
local model = require "weft.model"
local plugins = require "weft.plugins"
local mockmod = weft.mock
local value = weft.metrics.value
local json = weft.json

local keys = mockmod.DEFAULT_KEYS
local count = mockmod.count_tokens

local MODELS = {
    openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash",
    compat = "llama-3-8b",
}
local DIALECT = { openai = "openai", anthropic = "anthropic", gemini = "gemini", compat = "openai" }
local NAMES = { "openai", "anthropic", "gemini", "compat" }

local mock
local n = 0

-- Configure the four providers against `mock`, with fast retries.
local function setup(extra)
    model.reset()
    n = n + 1
    local providers = {}
    for _, name in ipairs(NAMES) do
        local d = DIALECT[name]
        providers[name] = {
            plugin = name == "compat" and "openai_compatible" or nil,
            base_url = mock.url,
            secret = weft.secrets.value("spec-" .. name .. n, keys[d]),
            retry = { base = 0.001, cap = 0.005, seed = 7 },
            breaker = false,
        }
        for k, v in pairs(extra and extra[name] or {}) do providers[name][k] = v end
    end
    weft.configure { providers = providers }
end

local function m(name) return weft.model(name .. "/" .. MODELS[name]) end

-- input tokens the mock counts for one user message: OpenAI 3 per message
-- and 3 to prime the reply, Anthropic 3 per message, Gemini the text only
local OVERHEAD = { openai = 6, compat = 6, anthropic = 3, gemini = 0 }
local function input_of(text, name) return count(text) + OVERHEAD[name or "anthropic"] end

describe("weft.model against weft mock", function()
    before_each(function()
        mock = mockmod.start { port = 0 }
        setup()
    end)
    after_each(function() mock:close() end)

    it("completes in every dialect with the exact text and usage", function()
        local q = "What is the capital of France?"
        local want, out_tokens = mockmod.answer(q)
        for _, name in ipairs(NAMES) do
            local r = m(name):complete(q)
            assert.are.equal(want, r.text, name)
            assert.are.equal("stop", r.finish_reason, name)
            assert.are.equal(input_of(q, name), r.usage.input, name)
            assert.are.equal(out_tokens, r.usage.output, name)
            assert.are.equal(1, r.attempts, name)
            assert.are.equal(name, r.provider)
            assert.are.equal(MODELS[name], r.model)
            assert.are.equal("1.0.0", r.plugin_version)
            assert.is_true(r.latency > 0)
            assert.is_string(r.call_id)
        end
        assert.are.equal(4, mock:stats().requests)
    end)

    it("takes system prompts, messages, max_tokens and stop to the wire", function()
        for _, name in ipairs(NAMES) do
            local r = m(name):complete { system = "Be brief.", max_tokens = 3, temperature = 0, stop = { "zz" },
                                         messages = { { role = "user", content = "one two three four five" } } }
            assert.are.equal("length", r.finish_reason, name)
            assert.are.equal(3, r.usage.output, name)
            assert.are.equal(mockmod.answer("one two three four five", 3), r.text, name)
        end
        local log = mock:requests()
        local oa = json.decode(log[1].body)
        assert.are.same({ role = "system", content = "Be brief." }, oa.messages[1])
        assert.are.equal(3, oa.max_tokens)
        local an = json.decode(log[2].body)
        assert.are.equal("Be brief.", an.system)
        assert.are.same({ "zz" }, an.stop_sequences)
        local ge = json.decode(log[3].body)
        assert.are.equal("Be brief.", ge.systemInstruction.parts[1].text)
        assert.are.equal(3, ge.generationConfig.maxOutputTokens)
    end)

    it("refuses a bad request before sending anything", function()
        for _, req in ipairs { 42, {}, { messages = { { role = "robot", content = "x" } } }, { prompt = "x", max_tokns = 3 },
                               { prompt = "x", priority = "urgent" }, { prompt = "x", timeout = "5" },
                               { prompt = "x", deadline = "soon" } } do
            local ok, err = pcall(m("openai").complete, m("openai"), req)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
        end
        assert.matches("unknown request field 'max_tokns'", select(2, pcall(m("openai").complete, m("openai"), { prompt = "x", max_tokns = 3 })).message)
        assert.are.equal(0, mock:stats().requests)
    end)

    it("refuses a request that is not plain data, wherever it hides it, before sending anything", function()
        -- (the plugin gets its own copy: nothing of the caller's, no function)
        local fn = function() end
        for i, req in ipairs {
            { messages = { { role = "user", content = "x", hook = fn } } },
            { messages = { { role = "user", content = "x", [fn] = "v" } } },
            { messages = { { role = "user", content = "x", tool_calls = { { f = fn } } } } },
            { prompt = "x", metadata = { f = fn } },
            { prompt = "x", extra = { n = io.stdout } },
        } do
            local ok, err = pcall(m("openai").complete, m("openai"), req)
            assert.is_false(ok, i)
            assert.are.equal("invalid_request", err.kind, i)
            assert.matches("not plain data", err.message, 1, true)
        end
        assert.are.equal(0, mock:stats().requests)
    end)

    it("streams in every dialect: the pieces make the text, usage and the end mark arrive", function()
        local q = "Tell me about the weather in Paris today"
        local want, out_tokens = mockmod.answer(q)
        for _, name in ipairs(NAMES) do
            local pieces = {}
            local r = m(name):stream(q, function(ev)
                assert.are.equal("text", ev.type)
                pieces[#pieces + 1] = ev.text
            end)
            assert.is_true(#pieces > 1, name)
            assert.are.equal(want, table.concat(pieces), name)
            assert.are.equal(want, r.text, name)
            assert.are.equal("stop", r.finish_reason, name)
            assert.are.equal(input_of(q, name), r.usage.input, name)
            assert.are.equal(out_tokens, r.usage.output, name)
        end
        assert.are.equal(4, value("weft_calls_total", { provider = "gemini", operation = "stream", outcome = "success" })
            + value("weft_calls_total", { provider = "openai", operation = "stream", outcome = "success" })
            + value("weft_calls_total", { provider = "anthropic", operation = "stream", outcome = "success" })
            + value("weft_calls_total", { provider = "compat", operation = "stream", outcome = "success" }))
    end)

    it("stops a stream when on_event returns false", function()
        local got = 0
        local r = m("openai"):stream("one two three four five six", function() got = got + 1 return false end)
        assert.are.equal(1, got)
        assert.is_true(r.aborted)
    end)

    it("embeds with OpenAI, Gemini and openai_compatible; Anthropic has no embeddings", function()
        local texts = { "alpha beta", "gamma" }
        for _, name in ipairs { "openai", "gemini", "compat" } do
            local r = m(name):embed(texts)
            assert.are.equal(2, #r.vectors, name)
            for i, t in ipairs(texts) do
                local want = mockmod.embedding(t, #r.vectors[i])
                for j = 1, #want do assert.is_true(math.abs(want[j] - r.vectors[i][j]) < 1e-6, name) end
            end
        end
        local r = m("openai"):embed("alpha beta")
        assert.are.equal(count("alpha beta"), r.usage.input)
        local before = mock:stats().requests
        local ok, err = pcall(m("anthropic").embed, m("anthropic"), texts)
        assert.is_false(ok)
        assert.are.equal("invalid_request", err.kind)
        assert.matches("cannot embed", err.message)
        assert.are.equal(before, mock:stats().requests)
    end)

    it("maps every error status to its kind in every dialect", function()
        setup { openai = { retry = { max_attempts = 1 } }, anthropic = { retry = { max_attempts = 1 } },
                gemini = { retry = { max_attempts = 1 } }, compat = { retry = { max_attempts = 1 } } }
        local cases = { [400] = "invalid_request", [401] = "auth", [403] = "auth", [404] = "invalid_request",
                        [422] = "invalid_request", [429] = "rate_limited", [500] = "transient", [503] = "transient",
                        [529] = "transient" }
        for _, name in ipairs(NAMES) do
            for status, kind in pairs(cases) do
                mock:set_faults { { dialect = DIALECT[name], sequence = { status } } }
                local ok, err = pcall(m(name).complete, m(name), "hi")
                assert.is_false(ok)
                assert.are.equal(kind, err.kind, name .. " " .. status)
                assert.are.equal(status, err.status)
                assert.are.equal(name, err.provider)
                assert.are.equal(1, err.attempts)
            end
        end
    end)

    it("maps malformed bodies, truncation, hangs and quotas", function()
        setup { openai = { retry = { max_attempts = 1 }, timeout = 0.3 }, anthropic = { retry = { max_attempts = 1 } },
                gemini = { retry = { max_attempts = 1 } } }
        for _, name in ipairs { "openai", "anthropic", "gemini" } do
            mock:set_faults { { dialect = name, sequence = { "malformed" } } }
            local ok, err = pcall(m(name).complete, m(name), "hi")
            assert.is_false(ok)
            assert.are.equal("integration", err.kind, name)
            mock:set_faults { { dialect = name, sequence = { "truncate" } } }
            ok, err = pcall(m(name).complete, m(name), "hi")
            assert.are.equal("transient", err.kind, name)
        end
        mock:set_faults { { dialect = "openai", sequence = { "hang" } } }
        local t0 = weft.now()
        local ok, err = pcall(m("openai").complete, m("openai"), "hi")
        assert.is_false(ok)
        assert.are.equal("timeout", err.kind)
        assert.is_true(weft.now() - t0 >= 0.3)
        mock:close()
        mock = mockmod.start { port = 0, limits = { quota = 1 } }
        setup()
        for _, name in ipairs { "openai", "anthropic", "gemini" } do
            m(name):complete("hi")
            local ok2, err2 = pcall(m(name).complete, m(name), "hi")
            assert.is_false(ok2)
            assert.are.equal("quota_exhausted", err2.kind, name)
            assert.are.equal(1, err2.attempts, name) -- never retried
        end
    end)

    it("makes exactly the attempts the faults call for", function()
        local function retries()
            local total = 0
            for _, name in ipairs(NAMES) do
                for _, kind in ipairs { "rate_limited", "transient", "auth" } do
                    total = total + (value("weft_retries_total", { provider = name, reason = kind }) or 0)
                end
            end
            return total
        end
        local before = retries()
        for _, name in ipairs(NAMES) do
            mock:reset()
            mock:set_faults { { dialect = DIALECT[name], sequence = { 429, 503, "ok" }, retry_after = 0.01 } }
            local r = m(name):complete("hi")
            assert.are.equal(3, r.attempts, name)
            assert.are.equal(3, mock:stats().requests, name)
            mock:reset()
            mock:set_faults { { dialect = DIALECT[name], sequence = { 500, 500, 500, 500, 500 } } }
            local ok, err = pcall(m(name).complete, m(name), "hi")
            assert.is_false(ok)
            assert.are.equal(4, err.attempts, name)
            assert.are.equal(4, mock:stats().requests, name)
            mock:reset()
            mock:set_faults { { dialect = DIALECT[name], sequence = { 401 } } }
            ok, err = pcall(m(name).complete, m(name), "hi")
            assert.are.equal("auth", err.kind)
            assert.are.equal(1, err.attempts, name) -- never retried by the policy
            assert.are.equal(1, mock:stats().requests, name)
        end
        -- 2 retries (429, 503) + 3 (500 x 4 attempts) per provider
        assert.are.equal(before + 4 * 5, retries())
    end)

    it("waits at least the Retry-After of a 429", function()
        mock:set_faults { { dialect = "openai", sequence = { 429, "ok" }, retry_after = 1 } }
        local t0 = weft.now()
        local r = m("openai"):complete("hi")
        assert.are.equal(2, r.attempts)
        assert.is_true(weft.now() - t0 >= 1.0)
    end)

    it("adapts the limiter to the provider's rate-limit headers", function()
        mock:close()
        mock = mockmod.start { port = 0, limits = { rpm = 50, tpm = 100000 } }
        setup { openai = { limits = { rpm = 1000 } }, anthropic = { limits = { rpm = 1000 } } }
        for _, name in ipairs { "openai", "anthropic" } do
            m(name):complete("hi")
            local level = model.provider(name).limiter:state().limits.rpm.level
            -- the mock allowed 50 a minute and reports 49 left: the local
            -- bucket (1000) drops to that, plus what refilled since
            assert.is_true(level >= 49 and level < 60, name .. " level " .. level)
        end
        assert.are.equal(49, value("weft_quota_remaining", { provider = "openai", unit = "requests" }))
    end)

    it("reconciles the token estimate with the usage reported", function()
        setup { openai = { limits = { tpd = 1000000 } }, gemini = { limits = { tpd = 1000000 } } }
        for _, name in ipairs { "openai", "gemini" } do
            local lim = model.provider(name).limiter
            local before = lim:state().limits.tpd.level
            local r = m(name):complete("How many tokens does this use?")
            local used = before - lim:state().limits.tpd.level
            -- the estimate held 256 output tokens; only what was used stays taken
            assert.is_true(math.abs(used - (r.usage.input + r.usage.output)) < 1, name .. " used " .. used)
        end
    end)

    it("counts a request libcurl sent again by itself on a fresh connection as an attempt", function()
        setup { openai = { retry = { max_attempts = 1 } } }
        local mm = m("openai")
        mm:complete("warm up a kept-alive connection")
        local labels = { provider = "openai", model = MODELS.openai, operation = "complete" }
        local before = value("weft_http_resends_total", labels) or 0
        -- the reused connection is reset before any answer: libcurl sends
        -- the request again on a new one, and the server sees both
        mock:set_faults { { dialect = "openai", sequence = { "reset", "ok" } } }
        local n0 = mock:stats().requests
        local r = mm:complete("again")
        assert.are.equal(2, mock:stats().requests - n0)
        assert.are.equal(2, r.attempts)
        assert.are.equal(before + 1, value("weft_http_resends_total", labels))
    end)

    it("gives back the estimate of every failed attempt, so retries do not hold tokens", function()
        setup { openai = { limits = { tpd = 1000000 } } }
        local lim = model.provider("openai").limiter
        local before = lim:state().limits.tpd.level
        mock:set_faults { { dialect = "openai", sequence = { 503, 429, "ok" } } }
        local r = m("openai"):complete("How many tokens does this use?")
        assert.are.equal(3, r.attempts)
        local used = before - lim:state().limits.tpd.level
        assert.is_true(math.abs(used - (r.usage.input + r.usage.output)) < 1, "used " .. used)
        -- a call that fails on every attempt keeps nothing
        before = lim:state().limits.tpd.level
        mock:set_faults { { dialect = "openai", sequence = { 503, 503, 503, 503, 503, 503 } } }
        assert.is_false((pcall(m("openai").complete, m("openai"), "x")))
        assert.is_true(math.abs(before - lim:state().limits.tpd.level) < 1)
    end)

    it("records calls, tokens and cost in the metrics and in model:usage()", function()
        local mm = m("openai")
        local before = value("weft_calls_total", { provider = "openai", model = MODELS.openai, operation = "complete",
                                                   outcome = "success" }) or 0
        local bad_before = value("weft_calls_total", { provider = "openai", model = MODELS.openai, operation = "complete",
                                                       outcome = "invalid_request" }) or 0
        local tin = value("weft_tokens_total", { provider = "openai", model = MODELS.openai, direction = "input" }) or 0
        local r1 = mm:complete("one")
        local r2 = mm:complete("one two")
        mock:set_faults { { dialect = "openai", sequence = { 400 } } }
        pcall(mm.complete, mm, "x")
        assert.are.equal(before + 2, value("weft_calls_total", { provider = "openai", model = MODELS.openai,
                                                                operation = "complete", outcome = "success" }))
        assert.are.equal(bad_before + 1, value("weft_calls_total", { provider = "openai", model = MODELS.openai,
                                                                    operation = "complete", outcome = "invalid_request" }))
        assert.are.equal(tin + r1.usage.input + r2.usage.input,
            value("weft_tokens_total", { provider = "openai", model = MODELS.openai, direction = "input" }))
        local u = mm:usage()
        assert.are.equal(3, u.calls)
        assert.are.equal(1, u.errors)
        assert.are.equal(r1.usage.input + r2.usage.input, u.input_tokens)
        assert.are.equal(r1.usage.output + r2.usage.output, u.output_tokens)
        local want = ((r1.usage.input + r2.usage.input) * 0.15 + (r1.usage.output + r2.usage.output) * 0.60) / 1e6
        assert.is_true(math.abs(u.cost - want) < 1e-12)
        assert.is_true(math.abs(r1.cost - (r1.usage.input * 0.15 + r1.usage.output * 0.60) / 1e6) < 1e-12)
    end)

    it("records on the call what the lower layers measured: queueing, time on the wire, first token", function()
        setup { openai = { limits = { rps = 5, burst = 1 } } }
        local L = { provider = "openai", model = MODELS.openai, operation = "complete" }
        local function sum(name)
            for _, s in ipairs(weft.metrics.snapshot()[name].series) do
                local l = s.labels
                if l.provider == L.provider and l.model == L.model and l.operation == L.operation then return s.sum end
            end
            return 0
        end
        local mm = m("openai")
        mm:complete("warm") -- takes the burst: the next call queues about 0.2 s
        local lat, over = sum("weft_call_duration_seconds"), sum("weft_overhead_seconds")
        mock:set_faults { { dialect = "openai", latency = 200 } } -- and spends 0.2 s on the wire
        mm:complete("queued, then slow")
        -- overhead is the duration less the limiter's wait and weft.http's wire time
        local waited_and_wire = (sum("weft_call_duration_seconds") - lat) - (sum("weft_overhead_seconds") - over)
        assert.is_true(waited_and_wire >= 0.35, waited_and_wire)
        -- a stream's first data is its time to first token
        local before = value("weft_time_to_first_token_seconds", { provider = "openai", operation = "stream" }) or 0
        mock:set_faults {}
        local r = mm:stream("hello there", function() end)
        assert.is_true(r.ttft >= 0 and r.ttft <= r.latency, r.ttft)
        assert.are.equal(before + 1, value("weft_time_to_first_token_seconds", { provider = "openai", operation = "stream" }))
    end)

    it("retries a stream that fails before its first event", function()
        for _, name in ipairs(NAMES) do
            mock:set_faults { { dialect = DIALECT[name], sequence = { 503, "ok" } } }
            local got = {}
            local r = m(name):stream("hello there", function(ev) got[#got + 1] = ev.text end)
            assert.are.equal(2, r.attempts, name)
            assert.are.equal(mockmod.answer("hello there"), table.concat(got), name)
        end
    end)

    it("fails a stream broken after delivery with kind transient and the partial text, never retried", function()
        local q = "one two three four five six seven eight nine ten"
        for _, name in ipairs(NAMES) do
            for _, fault in ipairs { "mid_stream_error", "truncate", "reset_mid_body" } do
                mock:reset()
                mock:set_faults { { dialect = DIALECT[name], sequence = { fault } } }
                local got = {}
                local ok, err = pcall(m(name).stream, m(name), q, function(ev) got[#got + 1] = ev.text end)
                assert.is_false(ok, name .. " " .. fault)
                assert.are.equal("transient", err.kind, name .. " " .. fault)
                assert.is_true(#got > 0)
                assert.are.equal(table.concat(got), err.partial.text, name .. " " .. fault)
                assert.is_true(#err.partial.text < #mockmod.answer(q))
                assert.are.equal(1, err.attempts)
                assert.are.equal(1, mock:stats().requests, name .. " " .. fault)
                assert.is_false(err.should_retry)
            end
        end
    end)

    it("keeps the partial usage of a broken stream", function()
        mock:set_faults { { dialect = "anthropic", sequence = { "mid_stream_error" } } }
        local ok, err = pcall(m("anthropic").stream, m("anthropic"), "one two three four five six", function() end)
        assert.is_false(ok)
        assert.are.equal(input_of("one two three four five six"), err.partial.usage.input)
        assert.are.equal("transient", err.cause_kind)
    end)

    it("holds a request's timeout across attempts", function()
        mock:set_faults { { dialect = "openai", latency = 800 } }
        local t0 = weft.now()
        local ok, err = pcall(m("openai").complete, m("openai"), { prompt = "hi", timeout = 0.5 })
        assert.is_false(ok)
        assert.are.equal("timeout", err.kind)
        assert.is_true(weft.now() - t0 >= 0.5)
        -- the attempt got the whole 0.5 s; no time was left for another
        assert.are.equal(1, err.attempts)
        local sent = mock:stats().requests
        ok, err = pcall(m("openai").complete, m("openai"), { prompt = "hi", deadline = weft.now() - 1 })
        assert.is_false(ok)
        assert.are.equal(sent, mock:stats().requests) -- nothing is sent past the deadline
        assert.are.equal("timeout", err.kind)
    end)

    it("serves higher priority first when the limiter queues", function()
        setup { openai = { limits = { rps = 2, burst = 1 } } }
        local order = {}
        local mm = m("openai")
        mm:complete("warm") -- takes the burst
        local tasks = {}
        for i, p in ipairs { "low", "low", "high", "normal" } do
            tasks[i] = weft.spawn(function()
                mm:complete { prompt = "p" .. i, priority = p }
                order[#order + 1] = p
            end)
        end
        for _, t in ipairs(tasks) do t:wait() end
        assert.are.same({ "high", "normal", "low", "low" }, order)
    end)

    it("refuses at once while the breaker is open, without waiting in the limiter", function()
        setup { openai = { breaker = { min_calls = 2, threshold = 0.5, cooldown = 60 }, retry = { max_attempts = 1 },
                           limits = { rpm = 1000 } } }
        mock:set_faults { { dialect = "openai", sequence = { 503, 503 } } }
        for _ = 1, 2 do pcall(m("openai").complete, m("openai"), "hi") end
        local inst = model.provider("openai")
        assert.are.equal("open", inst.breaker:state().state)
        local admitted = inst.limiter:state().admitted
        local sent = mock:stats().requests
        local ok, err = pcall(m("openai").complete, m("openai"), "hi")
        assert.is_false(ok)
        assert.are.equal("circuit_open", err.kind)
        assert.is_true(err.retry_after > 59)
        assert.are.equal(admitted, inst.limiter:state().admitted) -- never queued or admitted
        assert.are.equal(sent, mock:stats().requests)
    end)

    it("reports a stream cancelled midway as cancelled, not as a broken stream", function()
        mock:set_faults { { dialect = "anthropic", stream_delay_ms = 30 } }
        local got = 0
        local t = weft.spawn(function()
            return m("anthropic"):stream("one two three four five six seven eight", function() got = got + 1 end)
        end)
        while got == 0 do weft.sleep(0.01) end
        t:cancel()
        local ok, err = pcall(t.wait, t)
        assert.is_false(ok)
        assert.are.equal("cancelled", err.kind)
        assert.are.equal(1, mock:stats().requests) -- and not retried
        assert.are.equal(1, value("weft_calls_total", { provider = "anthropic", operation = "stream", outcome = "cancelled" }))
    end)

    it("passes an error raised by on_event to the caller as is, without retrying", function()
        local ok, err = pcall(m("openai").stream, m("openai"), "one two three", function() error("consumer broke") end)
        assert.is_false(ok)
        assert.matches("consumer broke", tostring(err))
        assert.is_false(weft.error.is(err))
        assert.are.equal(1, mock:stats().requests)
    end)

    it("refuses bad embedding input before sending", function()
        for _, bad in ipairs { {}, 42, { "a", 7 } } do
            local ok, err = pcall(m("openai").embed, m("openai"), bad)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
        end
        assert.are.equal(0, mock:stats().requests)
    end)

    it("follows the server's x-should-retry both ways", function()
        local seen = 0
        local answers = {
            { status = 503, hdr = "false" }, -- retryable kind, server says no
            { status = 400, hdr = "true" },  -- final kind, server says yes
            { status = 200 },
        }
        local srv = weft.http.serve { handler = function()
            seen = seen + 1
            local a = answers[seen] or answers[3]
            if a.status == 200 then
                return { status = 200, headers = { ["content-type"] = "application/json" }, body =
                    [[{"choices":[{"message":{"content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}]] }
            end
            return { status = a.status, headers = { ["x-should-retry"] = a.hdr }, body = [[{"error":{"message":"no"}}]] }
        end }
        setup { openai = { base_url = "http://127.0.0.1:" .. srv.port } }
        local ok, err = pcall(m("openai").complete, m("openai"), "hi")
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        assert.is_false(err.should_retry)
        assert.are.equal(1, err.attempts)
        local r = m("openai"):complete("hi") -- the 400 says retry: the next attempt succeeds
        assert.are.equal("fine", r.text)
        assert.are.equal(2, r.attempts)
        assert.are.equal(3, seen)
        srv:close()
    end)

    it("uses the request id as the call id", function()
        local r = m("gemini"):complete { prompt = "hi", id = "req-spec-1" }
        assert.are.equal("req-spec-1", r.call_id)
    end)

    it("takes a base_url ending in /v1 (as OpenAI's SDKs write it) without repeating it", function()
        for _, base in ipairs { mock.url .. "/v1", mock.url .. "/v1/" } do
            setup { openai = { base_url = base }, compat = { base_url = base } }
            assert.are.equal("echo: hi", m("openai"):complete("hi").text)
            assert.are.equal("echo: hi", m("compat"):complete("hi").text)
        end
        local paths = {}
        for _, r in ipairs(mock:requests()) do paths[r.path] = true end
        assert.are.same({ ["/v1/chat/completions"] = true }, paths)
        -- only a version segment: a gateway mounted at .../api keeps it
        setup { compat = { base_url = mock.url .. "/api", chat_path = "/api/chat" } }
        local ok, err = pcall(m("compat").complete, m("compat"), "hi")
        assert.is_false(ok)
        assert.are.equal("POST " .. mock.url .. "/api/api/chat", err.url)
    end)

    it("says which request an HTTP error answered (method and URL, never the key)", function()
        setup { gemini = { base_url = mock.url .. "/elsewhere" } }
        local ok, err = pcall(m("gemini").complete, m("gemini"), "hi")
        assert.is_false(ok)
        assert.are.equal(404, err.status)
        local want = "POST " .. mock.url .. "/elsewhere/v1beta/models/" .. MODELS.gemini .. ":generateContent"
        assert.are.equal(want, err.url)
        assert.is_truthy(err.message:find("(" .. want .. ")", 1, true))
        assert.is_nil(err.message:find(keys.gemini, 1, true)) -- Gemini's key goes in the query: not shown
    end)

    it("never puts the key in an error, a result or the log", function()
        mock:set_faults { { dialect = "openai", sequence = { 401 } } }
        local ok, err = pcall(m("openai").complete, m("openai"), "hi")
        assert.is_false(ok)
        assert.is_nil(tostring(err):find(keys.openai, 1, true))
        assert.is_nil(json.encode(m("gemini"):complete("hi")):find(keys.gemini, 1, true))
    end)
end)

describe("weft.configure", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    teardown(function() os.execute("rm -rf " .. dir) end)

    local function config_file(text)
        local p = dir .. "/cfg" .. math.random(1e9) .. ".lua"
        local f = assert(io.open(p, "w"))
        f:write(text)
        f:close()
        return p
    end

    local function load_error(text)
        model.reset()
        local p = config_file(text)
        local ok, err = pcall(model.load_config, p)
        assert.is_false(ok)
        return err, p
    end

    it("names the key and the line of a bad setting", function()
        local err, p = load_error([[
return {
    providers = {
        openai = {
            secret = "env:OPENAI_API_KEY",
            limits = {
                rpm = 500,
                tpmm = 1000,
            },
        },
    },
}
]])
        assert.are.equal(p .. ":7: config: providers.openai.limits.tpmm: unknown limit", err)
        err, p = load_error([[
return {
    providers = {
        anthropic = {
            timeout = 30,
            verison = "2023-06-01",
        },
    },
}
]])
        assert.matches(p .. ":5: config: providers.anthropic.verison: unknown key 'verison'", err, 1, true)
        err, p = load_error([[
return {
    providers = {
        mine = { plugin = "openai_compatible" },
    },
}
]])
        assert.matches(p .. ":3: config: providers.mine.base_url: required", err, 1, true)
        err, p = load_error([[
return {
    providers = { openai = { retry = { max_attempts = 0 } } },
}
]])
        assert.matches(p .. ":2: config: providers.openai.retry.max_attempts: must be between 1 and 1000, got 0", err, 1, true)
        err, p = load_error("return { providers = {}, models = { fast = 'nobody/x' } }")
        assert.matches("models.fast: unknown provider 'nobody'", err, 1, true)
        err, p = load_error("return { provider = {} }")
        assert.matches(p .. ":1: config: provider: unknown key", err, 1, true)
        err = load_error("return { providers = { openai = { limits = { rpm = -1 } } } }")
        assert.matches("providers.openai.limits.rpm: must be a rate between one a day", err, 1, true)
        err = load_error("return { providers = { x = { plugin = 'nothere' } } }")
        assert.matches("providers.x.plugin: no provider plugin 'nothere'", err, 1, true)
    end)

    it("refuses NaN, infinite, zero and absurd values naming the key and the line", function()
        local cases = {
            { "timeout = 0/0", "providers.openai.timeout: must be a number, got NaN" },
            { "connect_timeout = 1/0", "providers.openai.connect_timeout: must be finite" },
            { "idle_timeout = 0", "providers.openai.idle_timeout: must be between 0.001 and 86400, got 0" },
            { "timeout = 1e12", "providers.openai.timeout: must be between 0.001 and 86400" },
            { "limits = { rpm = 1e-300 }", "providers.openai.limits.rpm: must be a rate between one a day" },
            { "limits = { rpd = 0.5 }", "providers.openai.limits.rpd: must be a rate between one a day" },
            { "limits = { tpm = 0/0 }", "providers.openai.limits.tpm: must be a number, got NaN" },
            { "limits = { rps = 1/0 }", "providers.openai.limits.rps: must be finite" },
            { "limits = { rpm = 60, priorities = 2.5 }", "providers.openai.limits.priorities: must be a whole number, got 2.5" },
            { "retry = { max_attempts = 1.5 }", "providers.openai.retry.max_attempts: must be a whole number, got 1.5" },
            { "retry = { base = 0/0 }", "providers.openai.retry.base: must be a number, got NaN" },
            { "retry = { cap = -1 }", "providers.openai.retry.cap: must be between 0 and 86400, got -1" },
            { "breaker = { min_calls = 2.5 }", "providers.openai.breaker.min_calls: must be a whole number" },
            { "breaker = { threshold = 0/0 }", "providers.openai.breaker.threshold: must be a number, got NaN" },
            { "prices = { m = { input = 0/0, output = 1 } }", "providers.openai.prices.m: must be {input = USD per 1M tokens" },
            { "prices = { m = { input = 1, output = 1/0 } }", "providers.openai.prices.m: must be {input" },
            { "prices = { m = { input = 1 } }", "providers.openai.prices.m: must be {input" },
            { "auth = { header = 5 }", "providers.openai.auth.header: must be a header name, got number" },
            { "auth = { header = 'bad header' }", "providers.openai.auth.header: must be a header name" },
            { "auth = { header = 'x-k', format = 'no hole' }", "providers.openai.auth.format: must contain {} exactly once" },
            { "auth = { header = 'x-k', format = '{} {}' }", "providers.openai.auth.format: must contain {} exactly once" },
            { "auth = { query = 'k', header = 'x' }", "providers.openai.auth: header and query: give one of them" },
            { "auth = { heder = 'x' }", "providers.openai.auth.heder: unknown key" },
        }
        for _, c in ipairs(cases) do
            local err, p = load_error(("return {\n    providers = {\n        openai = { %s },\n    },\n}\n"):format(c[1]))
            assert.matches(p .. ":3: config: " .. c[2], err, 1, true)
        end
    end)

    it("reports the line of a weft.configure call in a script", function()
        model.reset()
        local ok, err = pcall(function()
            weft.configure {
                providers = { openai = { timeout = "soon" } },
            }
        end)
        assert.is_false(ok)
        assert.matches("model_spec.lua:%d+: config: providers.openai.timeout: must be a number", err)
    end)

    it("resolves aliases with request defaults and switches providers by config only", function()
        local mock = mockmod.start { port = 0 }
        local function use(provider, id)
            model.reset()
            weft.configure {
                providers = {
                    openai = { base_url = mock.url, secret = weft.secrets.value("a1", keys.openai) },
                    gemini = { base_url = mock.url, secret = weft.secrets.value("a2", keys.gemini) },
                },
                models = { main = { provider = provider, model = id, max_tokens = 2 } },
            }
            return weft.model("main"):complete("one two three four")
        end
        local a, b = use("openai", "gpt-4o-mini"), use("gemini", "gemini-2.0-flash")
        assert.are.equal("openai", a.provider)
        assert.are.equal("gemini", b.provider)
        assert.are.equal(2, a.usage.output)
        assert.are.equal(a.text, b.text)
        mock:close()
        assert.matches("unknown model 'nope'", select(2, pcall(weft.model, "nope")))
        assert.matches("unknown provider 'zz'", select(2, pcall(weft.model, "zz/m")))
    end)

    it("fails a call with kind auth when the key is not set, naming the variable only", function()
        model.reset()
        weft.configure { providers = { openai = { base_url = "http://127.0.0.1:9", secret = "env:WEFT_SPEC_UNSET_KEY" } } }
        local ok, err = pcall(weft.model("openai/gpt-4o-mini").complete, weft.model("openai/gpt-4o-mini"), "hi")
        assert.is_false(ok)
        assert.are.equal("auth", err.kind)
        assert.matches("WEFT_SPEC_UNSET_KEY", tostring(err))
    end)
end)

describe("provider plugins: versions and hot reload", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/providers") == 0)
    plugins.add_dir(dir)
    teardown(function()
        plugins.reset()
        os.execute("rm -rf " .. dir)
    end)

    -- a provider that speaks OpenAI's dialect, tagged with a version
    local function plugin_text(version, broken)
        return ([[
return {
    api = 1, name = "%s", kind = "provider", version = %q, extends = "openai",
    base_url = false, secret = false,
    %s
}
]]):format("hot", version, broken or "")
    end

    -- write through a temporary file and rename, as editors and deploys do
    local function install(name, text)
        local tmp = dir .. "/providers/." .. name .. ".tmp"
        local f = assert(io.open(tmp, "w"))
        f:write(text)
        f:close()
        assert(os.rename(tmp, dir .. "/providers/" .. name .. ".lua"))
    end

    local mock
    before_each(function()
        mock = mockmod.start { port = 0 }
        plugins.reset()
        model.reset()
    end)
    after_each(function() mock:close() end)

    local function configure()
        weft.configure { providers = { hot = { base_url = mock.url, secret = weft.secrets.value("hot", keys.openai),
                                               retry = { base = 0.001 } } } }
    end

    it("makes a plugin file dropped in a plugin directory usable without a restart", function()
        local ok = pcall(weft.model, "hot/x")
        assert.is_false(ok)
        install("hot", plugin_text("v1"))
        configure()
        assert.are.equal("v1", weft.model("hot/x"):complete("hi").plugin_version)
    end)

    it("finishes calls in flight on their version; new calls get the new one", function()
        install("hot", plugin_text("v1"))
        configure()
        mock:set_faults { { dialect = "openai", stream_delay_ms = 20 } }
        local mm = weft.model("hot/x")
        local t = weft.spawn(function()
            return mm:stream("one two three four five six seven eight", function() end)
        end)
        weft.sleep(0.03)
        install("hot", plugin_text("v2"))
        assert.are.same({ ["provider/hot"] = true }, weft.reload("hot"))
        mock:set_faults {}
        assert.are.equal("v2", mm:complete("hi").plugin_version)
        local r = t:wait()
        assert.are.equal("v1", r.plugin_version)
        assert.are.equal(mockmod.answer("one two three four five six seven eight"), r.text)
    end)

    it("never serves a broken version: syntax, load error, failed validation, bad config", function()
        install("hot", plugin_text("v1"))
        configure()
        local mm = weft.model("hot/x")
        assert.are.equal("v1", mm:complete("hi").plugin_version)
        local broken = {
            plugin_text("v2", "this is not lua"),
            plugin_text("v3", "x = nil .. 1,"),
            plugin_text("v4", "api = 9,"),
            plugin_text("v5", "schema = { needed = { type = 'string', required = true } },"),
            plugin_text("v6", "encode = 42,"),
        }
        for i, text in ipairs(broken) do
            local failed = value("weft_plugin_loads_total", { plugin = "provider/hot", outcome = "failed" }) or 0
            install("hot", text)
            local res = weft.reload("hot")
            assert.is_string(res["provider/hot"], "broken " .. i)
            assert.are.equal(failed + 1, value("weft_plugin_loads_total", { plugin = "provider/hot", outcome = "failed" }))
            assert.are.equal("v1", mm:complete("hi").plugin_version, "broken " .. i)
        end
        install("hot", plugin_text("v7"))
        assert.is_true(weft.reload()["provider/hot"])
        assert.are.equal("v7", mm:complete("hi").plugin_version)
        assert.is_false(weft.reload()["provider/hot"]) -- unchanged
    end)

    it("waits until a file saved in place stops changing: no half-written version, a refused one said once", function()
        install("hot", plugin_text("v1"))
        configure()
        local mm = weft.model("hot/x")
        assert.are.equal("v1", mm:complete("hi").plugin_version)
        local events = {}
        local off = weft.on("reload", function(ev) if ev.plugin == "provider/hot" then events[#events + 1] = ev.ok end end)
        local settle = plugins.settle
        plugins.settle = 1 -- (a long margin for the two writes below)
        -- `>` redirection: truncated, then written in two parts
        local path = dir .. "/providers/hot.lua"
        local text = plugin_text("v2")
        local f = assert(io.open(path, "w"))
        f:write(text:sub(1, 40))
        f:flush()
        weft.sleep(0.02)
        f:write(text:sub(41))
        f:close()
        for _ = 1, 400 do
            if #events > 0 then break end
            weft.sleep(0.02)
        end
        assert.are.same({ true }, events) -- one reload, of the whole file
        assert.are.equal("v2", mm:complete("hi").plugin_version)
        plugins.settle = 0.05
        -- a broken version: refused, said once however often it is saved
        for _ = 1, 3 do
            local g = assert(io.open(path, "w"))
            g:write(plugin_text("v3", "syntax error here"))
            g:close()
            for _ = 1, 400 do
                if #events > 1 then break end
                weft.sleep(0.02)
            end
            weft.sleep(0.2) -- (the watcher settles, sees the same text, says nothing)
        end
        install("hot", plugin_text("v4"))
        for _ = 1, 400 do
            if events[#events] == true and #events > 2 then break end
            weft.sleep(0.02)
        end
        off()
        plugins.settle = settle
        assert.are.same({ true, false, true }, events)
        assert.are.equal("v4", mm:complete("hi").plugin_version)
    end)

    it("reloads a changed file by itself (ev_stat)", function()
        install("hot", plugin_text("v1"))
        configure()
        local mm = weft.model("hot/x")
        assert.are.equal("v1", mm:complete("hi").plugin_version)
        install("hot", plugin_text("v2"))
        local seen
        for _ = 1, 200 do -- the watcher polls once a second where inotify is missing
            weft.sleep(0.05)
            seen = mm:complete("hi").plugin_version
            if seen == "v2" then break end
        end
        assert.are.equal("v2", seen)
        local failed = value("weft_plugin_loads_total", { plugin = "provider/hot", outcome = "failed" }) or 0
        install("hot", plugin_text("v3", "syntax error here"))
        for _ = 1, 200 do
            weft.sleep(0.05)
            if (value("weft_plugin_loads_total", { plugin = "provider/hot", outcome = "failed" }) or 0) > failed then break end
        end
        assert.are.equal(failed + 1, value("weft_plugin_loads_total", { plugin = "provider/hot", outcome = "failed" }))
        assert.are.equal("v2", mm:complete("hi").plugin_version)
    end)

    it("reloads a plugin when a plugin it extends changes", function()
        install("base", ([[
return { api = 1, name = "base", kind = "provider", version = "b1", extends = "openai", base_url = false, secret = false }
]]))
        install("hot", [[
return { api = 1, name = "hot", kind = "provider", extends = "base" }
]])
        configure()
        local mm = weft.model("hot/x")
        assert.are.equal("b1", mm:complete("hi").plugin_version)
        install("base", [[
return { api = 1, name = "base", kind = "provider", version = "b2", extends = "openai", base_url = false, secret = false }
]])
        local seen
        for _ = 1, 200 do
            weft.sleep(0.05)
            seen = mm:complete("hi").plugin_version
            if seen == "b2" then break end
        end
        assert.are.equal("b2", seen)
        assert.is_false(weft.reload("hot")["provider/hot"]) -- nothing changed since
    end)

    it("turns a decode that cannot read the answer into an integration error, not retried", function()
        install("hot", plugin_text("v1", "decode = function() return nil, 'no text field here' end,"))
        configure()
        local ok, err = pcall(weft.model("hot/x").complete, weft.model("hot/x"), "hi")
        assert.is_false(ok)
        assert.are.equal("integration", err.kind)
        assert.matches("no text field here", err.message)
        assert.are.equal(1, err.attempts)
        assert.are.equal(1, mock:stats().requests)
    end)

    it("keeps plugins in their sandbox", function()
        install("hot", plugin_text("v1", "encode = function() return os.execute('true') end,"))
        configure()
        local ok, err = pcall(weft.model("hot/x").complete, weft.model("hot/x"), "hi")
        assert.is_false(ok)
        assert.are.equal("integration", err.kind)
        assert.matches("encode failed", err.message)
    end)
end)
