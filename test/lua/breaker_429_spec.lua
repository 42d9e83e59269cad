-- breaker_429_spec.lua: a rate limit is not an outage (issue 14). A server
-- limit of 60 requests a minute in fixed windows, a matching client limit,
-- 200 calls at once: the 429s feed the limiter (Retry-After blocks it)
-- and never open the circuit breaker; every call succeeds, in about the
-- time the server's limit allows.
--
-- The scenario is compressed 60 times in time so that it runs in seconds:
-- the server's window is 1 s (60 requests), the client's limit rps = 60,
-- and the breaker's window and cool-down are its defaults (10 s, 30 s)
-- divided by 60 too. Only lower bounds on time are asserted (machines are
-- shared and noisy); the measured and ideal totals are printed.
--
-- Also: a call the limiter admitted and the breaker then refused (it opened
-- while the call waited in the queue) gives its admission back.
local model = require "weft.model"
local mockmod = weft.mock

local N, LIMIT, PERIOD = 200, 60, 1
local SCALE = 60 -- seconds of the real scenario per second here

local mock -- the running mock, closed after each test

-- One request as another client of the same key would send it.
local function other_client(m)
    return weft.http.request {
        method = "POST", url = m.url .. "/v1/chat/completions",
        headers = { authorization = "Bearer " .. mockmod.DEFAULT_KEYS.openai, ["content-type"] = "application/json" },
        body = weft.json.encode { model = "gpt-4o-mini", messages = { { role = "user", content = "other" } } },
    }
end

-- Run N calls at once against a fixed-window mock whose current window
-- already holds `used` requests of another client; returns what was seen.
local function scenario(used)
    mock = mockmod.start { port = 0, limits = { rps = LIMIT, window = "fixed" } }
    -- Requests the mock admitted, by the start of the fixed window that
    -- counted them (its own bookkeeping, exact at window boundaries).
    local per_window = {}
    local admit = mock._admit
    mock._admit = function(self, dialect, key, tokens, st)
        local refused = admit(self, dialect, key, tokens, st)
        if not refused then
            local w = st.buckets.second.start
            per_window[w] = (per_window[w] or 0) + 1
        end
        return refused
    end
    model.reset()
    weft.configure { providers = { openai = {
        base_url = mock.url,
        secret = weft.secrets.value("breaker-429-" .. used, mockmod.DEFAULT_KEYS.openai),
        limits = { rps = LIMIT },
        breaker = { window = 10 / SCALE, cooldown = 30 / SCALE },
    } } }
    local m = weft.model("openai/gpt-4o-mini")
    local others = {}
    for i = 1, used do others[i] = weft.spawn(other_client, mock) end
    for _, t in ipairs(others) do assert.are.equal(200, t:wait().status) end

    local t0 = weft.now()
    local tasks = {}
    for i = 1, N do tasks[i] = weft.spawn(function() return m:complete("call " .. i) end) end
    local out = { ok = 0, kinds = {}, used = used }
    for _, t in ipairs(tasks) do
        local ok, r = pcall(t.wait, t)
        if ok then
            out.ok = out.ok + 1
        else
            local k = type(r) == "table" and r.kind or tostring(r)
            out.kinds[k] = (out.kinds[k] or 0) + 1
        end
    end
    out.total = weft.now() - t0

    local first, windows = math.huge, 0
    out.busiest = 0
    for w, n in pairs(per_window) do
        windows = windows + 1
        if w < first then first = w end
        if n > out.busiest then out.busiest = n end
    end
    -- The last of the windows needed cannot begin before that many periods
    -- minus one after the first window began.
    out.ideal = first + (math.ceil((N + used) / LIMIT) - 1) * PERIOD - t0
    local st = mock:stats()
    out.n429 = st.by_status["429"] or 0
    out.breaker = model.provider("openai").breaker:state()
    out.limiter = model.provider("openai").limiter:state()
    local failed = {}
    for k, n in pairs(out.kinds) do failed[#failed + 1] = k .. "=" .. n end
    print(("\n# breaker_429 (window already holding %d): %d/%d calls succeeded (failed: %s); circuit_open %d; "
        .. "429s %d; server requests %d in %d windows, busiest %d (limit %d); breaker %s, %d transitions, "
        .. "%d rejected; limiter refunds %d; total %.3f s, ideal %.3f s (in the real scenario %.1f min vs %.1f min)")
        :format(used, out.ok, N, #failed > 0 and table.concat(failed, ", ") or "none", out.kinds.circuit_open or 0,
            out.n429, st.requests, windows, out.busiest, LIMIT, out.breaker.state, out.breaker.transitions,
            out.breaker.rejected, out.limiter.refunded or 0, out.total, out.ideal,
            out.total * SCALE / 60, out.ideal * SCALE / 60))
    return out
end

local function check(out)
    assert.are.equal(0, out.kinds.circuit_open or 0)
    assert.are.equal(N, out.ok)
    assert.are.equal(0, out.breaker.transitions)
    assert.is_true(out.busiest <= LIMIT, "a window admitted more than the limit")
    assert.is_true(out.total >= out.ideal, "faster than the server's limit allows")
end

local function stop()
    if mock then mock:close() end
    mock = nil
    model.reset()
end

describe("429s from a fixed-window limit", function()
    after_each(stop)

    it("never open the breaker when the client starts with the server's window", function()
        check(scenario(0))
    end)

    -- The issue's shape: the client's first burst meets a window another
    -- client (or a restarted process) has partly used, so a dozen of its
    -- calls come back 429 at once. Before the fix they opened the breaker
    -- and about 60 of the 200 calls failed with circuit_open.
    it("never open the breaker when the server's window is partly used already", function()
        check(scenario(11))
    end)
end)

describe("a call the breaker refuses after the limiter admitted it", function()
    after_each(stop)

    it("gives its request back to the limiter, for the next waiter", function()
        mock = mockmod.start { port = 0 }
        model.reset()
        weft.configure { providers = { openai = {
            base_url = mock.url,
            secret = weft.secrets.value("breaker-refund", mockmod.DEFAULT_KEYS.openai),
            limits = { rps = 2, burst = 1 },
            breaker = { min_calls = 1, threshold = 0.5, cooldown = 60 },
            retry = { max_attempts = 1 },
        } } }
        local m = weft.model("openai/gpt-4o-mini")
        m:complete("first") -- takes the burst: the next request is 0.5 s away
        local inst = model.provider("openai")
        local b = weft.spawn(function() return m:complete("b") end)
        local c = weft.spawn(function() return m:complete("c") end)
        weft.sleep(0) -- let them start: both pass the closed breaker and queue
        assert.are.equal(2, inst.limiter:state().queued)
        -- the provider fails meanwhile: the breaker opens
        pcall(inst.breaker.call, inst.breaker, function() error(weft.error.new("transient", "down"), 0) end)
        assert.are.equal("open", inst.breaker:state().state)
        for _, t in ipairs { b, c } do
            local ok, err = pcall(t.wait, t)
            assert.is_false(ok)
            assert.are.equal("circuit_open", err.kind)
        end
        local st = inst.limiter:state()
        -- b was admitted and refused, and gave its request back: c took it at
        -- once (not 0.5 s later) and gave it back too; it is still there
        assert.are.equal(3, st.admitted)
        assert.are.equal(2, st.refunded)
        assert.is_true(st.limits.rps.level > 0.99)
        assert.are.equal(2, inst.breaker:state().rejected)
        assert.are.equal(1, mock:stats().requests)
    end)
end)
