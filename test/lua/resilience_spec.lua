-- resilience_spec.lua: the Lua API of weft.limiter, weft.retry, weft.breaker.
local E = weft.error

local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

describe("weft.limiter", function()
    it("rejects bad configurations", function()
        assert.matches("unknown option", raised(weft.limiter.new, { rpn = 5 }))
        assert.matches("positive", raised(weft.limiter.new, { rpm = -1 }))
        assert.matches("no limit", raised(weft.limiter.new, {}))
        assert.matches("per must be", raised(weft.limiter.new, { limits = { { limit = 5, per = "fortnight" } } }))
    end)

    it("serves waiters by priority, FIFO within a level", function()
        local lim = weft.limiter.new { rps = 50, burst = 1 }
        lim:acquire()
        local order = {}
        local ts = {}
        for _, p in ipairs { "low", "normal", "high", "low", "high" } do
            ts[#ts + 1] = weft.spawn(function()
                lim:acquire(1, { priority = p })
                order[#order + 1] = p
            end)
        end
        for _, t in ipairs(ts) do t:wait() end
        assert.are.same({ "high", "high", "normal", "low", "low" }, order)
    end)

    it("refuses at once a deadline it cannot meet, with the expected wait", function()
        local lim = weft.limiter.new { rpm = 60, burst = 1 }
        lim:acquire()
        local err = raised(lim.acquire, lim, 1, { timeout = 0.1 })
        assert.are.equal("rate_limited", err.kind)
        assert.is_true(err.retry_after > 0.9)
        assert.are.equal("number", type(err.waited)) -- the seconds it waited before the refusal
        assert.is_true(err.waited >= 0)
        assert.are.equal(1, lim:state().refused)
    end)

    it("refuses a queued caller whose deadline passes, saying how long it waited", function()
        local lim = weft.limiter.new { rps = 20, burst = 1 }
        lim:acquire()
        -- a low-priority caller could go at the next slot (50 ms, within its
        -- 80 ms); a high one queued after it takes that slot: the low one's
        -- deadline passes in the queue
        local low = weft.spawn(function()
            local ok, err = pcall(lim.acquire, lim, 1, { timeout = 0.08, priority = "low" })
            return ok, err
        end)
        local high = weft.spawn(function() return lim:acquire(1, { priority = "high" }) end)
        local ok, err = low:wait()
        assert.is_false(ok)
        assert.are.equal("rate_limited", err.kind)
        assert.matches("deadline passed while queued", err.message)
        assert.is_true(err.waited >= 0.07, tostring(err.waited))
        assert.is_true(high:wait() >= 0.04)
    end)

    it("says how long a queued caller waited when its task is cancelled", function()
        local lim = weft.limiter.new { rps = 1, burst = 1 }
        lim:acquire()
        local queued = weft.spawn(function() return lim:acquire() end) -- next slot in ~1 s
        weft.sleep(0.05)
        queued:cancel()
        local ok, err = pcall(queued.wait, queued)
        assert.is_false(ok)
        assert.are.equal("cancelled", err.kind)
        assert.is_true(err.waited >= 0.04, tostring(err.waited))
        -- the slot it gave up goes to the next caller, not later
        assert.are.equal(0, lim:state().queued)
    end)

    it("token_burst sizes the shortest token limit's bucket (a minute's tokens do not go at once)", function()
        local lim = weft.limiter.new { rpm = 1000, tpm = 600000, token_burst = 200 }
        assert.are.equal(200, lim:state().limits.tpm.burst)
        -- without it the bucket is the whole limit
        assert.are.equal(600000, weft.limiter.new({ rpm = 1000, tpm = 600000 }):state().limits.tpm.burst)
        assert.matches("token_burst", raised(weft.limiter.new, { tpm = 1000, token_burst = 0 }))
        -- 200 tokens at once, then 10 a millisecond: 400 more wait about 40 ms
        lim:acquire { tokens = 200 }
        local waited = lim:acquire { tokens = 200 } + lim:acquire { tokens = 200 }
        assert.is_true(waited >= 0.035, tostring(waited))
    end)

    it("counts tokens and reconciles them", function()
        local lim = weft.limiter.new { rpm = 1000, tpm = 1000 }
        lim:acquire { tokens = 800 }
        lim:reconcile(800, 300)
        local lvl = lim:state().limits.tpm.level
        assert.is_true(lvl >= 700 and lvl < 701)
    end)

    it("takes back the cost of an admitted call that did not go out", function()
        local lim = weft.limiter.new { rpm = 1, tpd = 1000 }
        lim:acquire { tokens = 400 }
        local t = weft.spawn(function() return lim:acquire { tokens = 400 } end)
        weft.sleep(0) -- let it start: it queues, the next request is a minute away
        assert.are.equal(1, lim:state().queued)
        lim:refund { tokens = 400 } -- the first call never went out
        local waited = t:wait() -- its request went to the waiter at once
        assert.are.equal("number", type(waited)) -- acquire returns the seconds it waited
        assert.is_true(waited >= 0)
        local st = lim:state()
        assert.are.equal(1, st.refunded)
        assert.are.equal(2, st.admitted)
        assert.is_true(st.limits.tpd.level >= 600 and st.limits.tpd.level < 601)
        assert.matches("cost must be", raised(lim.refund, lim, "one"))
        assert.matches("cost must be", raised(lim.refund, lim, -1))
    end)

    it("tightens to provider headers and to a 429's Retry-After", function()
        local lim = weft.limiter.new { rpm = 100, tpm = 100000 }
        lim:observe({ ["x-ratelimit-remaining-requests"] = "7", ["x-ratelimit-reset-requests"] = "6m0s",
                      ["x-ratelimit-remaining-tokens"] = "500", ["x-ratelimit-reset-tokens"] = "1s" })
        local s = lim:state()
        assert.is_true(s.limits.rpm.level < 7.1)
        assert.is_true(s.limits.tpm.level < 501)
        local w = lim:observe({ ["retry-after"] = "2" }, 429)
        assert.are.equal(2, w)
        assert.is_true(lim:state().limits.rpm.blocked_for > 1.9)
        local err = raised(lim.acquire, lim, 1, { timeout = 1 })
        assert.are.equal("rate_limited", err.kind)
    end)
end)

describe("weft.retry", function()
    local function failing(kind, n, fields)
        local calls = 0
        return function()
            calls = calls + 1
            if calls <= n then error(E.new(kind, "attempt " .. calls, fields), 0) end
            return "ok after " .. calls
        end, function() return calls end
    end

    it("retries retryable kinds and returns the result", function()
        local fn, calls = failing("transient", 2)
        assert.are.equal("ok after 3", weft.retry.run(weft.retry.policy { base = 0.001 }, fn))
        assert.are.equal(3, calls())
    end)

    it("gives up after max_attempts with the last error and its attempts", function()
        local fn, calls = failing("timeout", 10)
        local err = raised(weft.retry.run, weft.retry.policy { base = 0.001, max_attempts = 3 }, fn)
        assert.are.equal("timeout", err.kind)
        assert.are.equal(3, err.attempts)
        assert.are.equal(3, calls())
    end)

    it("never retries permanent kinds", function()
        for _, k in ipairs { "auth", "invalid_request", "integration", "quota_exhausted" } do
            local fn, calls = failing(k, 1)
            raised(weft.retry.run, weft.retry.policy { base = 0.001 }, fn)
            assert.are.equal(1, calls())
        end
    end)

    it("lets x-should-retry override the kind rule", function()
        local fn, calls = failing("invalid_request", 1, { should_retry = true })
        weft.retry.run(weft.retry.policy { base = 0.001 }, fn)
        assert.are.equal(2, calls())
        local fn2, calls2 = failing("transient", 1, { should_retry = false })
        raised(weft.retry.run, weft.retry.policy { base = 0.001 }, fn2)
        assert.are.equal(1, calls2())
    end)

    it("never sleeps past the deadline: fails with the last error", function()
        local fn, calls = failing("transient", 5)
        local p = weft.retry.policy { base = 3, jitter = "none" }
        local err = raised(weft.retry.run, p, fn, { timeout = 2 })
        assert.are.equal("transient", err.kind)
        assert.are.equal(1, calls())
    end)

    it("honours a hint longer than the schedule (a lower bound)", function()
        local fn = failing("rate_limited", 1, { retry_after = 0.2 })
        local t0 = weft.now()
        weft.retry.run(weft.retry.policy { base = 0.001 }, fn)
        assert.is_true(weft.now() - t0 >= 0.2)
    end)

    it("fails at once with rate_limited when the hint exceeds hint_cap", function()
        local fn, calls = failing("rate_limited", 1, { retry_after = 3600 })
        local err = raised(weft.retry.run, weft.retry.policy { base = 0.001 }, fn)
        assert.are.equal("rate_limited", err.kind)
        assert.are.equal(3600, err.retry_after)
        assert.are.equal(1, calls())
    end)

    it("says why a retryable failure stopped before max_attempts, in the error", function()
        -- the deadline
        local err = raised(weft.retry.run, weft.retry.policy { base = 3, jitter = "none" }, failing("transient", 5),
            { timeout = 2 })
        assert.are.equal("deadline", err.retry_stopped)
        assert.matches("not retried: the next attempt %(in 3 s%) would come after the deadline", err.message)
        -- a hint beyond the cap
        err = raised(weft.retry.run, weft.retry.policy { base = 0.001 }, (failing("rate_limited", 1, { retry_after = 3600 })))
        assert.are.equal("hint_cap", err.retry_stopped)
        -- a hint within the cap that max_elapsed cannot wait for
        err = raised(weft.retry.run, weft.retry.policy { base = 0.001, hint_cap = 10, max_elapsed = 0.3 },
            (failing("rate_limited", 1, { retry_after = 0.5 })))
        assert.are.equal("max_elapsed", err.retry_stopped)
        assert.matches("beyond the policy's max_elapsed", err.message)
        -- the server said no
        err = raised(weft.retry.run, weft.retry.policy { base = 0.001 }, (failing("transient", 1, { should_retry = false })))
        assert.are.equal("server_said_no", err.retry_stopped)
        -- the retry budget: none left for this call
        local budget = weft.retry.budget(0.0001, 1)
        -- a call whose retry waits out its backoff holds the budget's one retry
        local holder = weft.spawn(function()
            weft.retry.run(weft.retry.policy { base = 60, jitter = "none", budget = budget }, (failing("transient", 1)))
        end)
        for _ = 1, 1000 do if budget:stats().retries > 0 then break end weft.sleep(0.002) end
        assert.are.equal(1, budget:stats().retries)
        local p = weft.retry.policy { base = 0.001, budget = budget }
        err = raised(weft.retry.run, p, (failing("transient", 5)), { provider = "p", model = "m" })
        holder:cancel()
        pcall(holder.wait, holder)
        assert.are.equal("retry_budget", err.retry_stopped)
        assert.matches("retry budget is spent", err.message)
        -- all attempts used: nothing to say
        err = raised(weft.retry.run, weft.retry.policy { base = 0.001, max_attempts = 2 }, (failing("transient", 5)))
        assert.is_nil(err.retry_stopped)
    end)

    it("passes the time left to each attempt", function()
        local left
        weft.retry.run(weft.retry.policy {}, function(_, remaining) left = remaining return 1 end, { timeout = 5 })
        assert.is_true(left > 4 and left <= 5)
    end)

    it("does not retry programming errors", function()
        local n = 0
        raised(weft.retry.run, weft.retry.policy { base = 0.001 }, function() n = n + 1; error("bug") end)
        assert.are.equal(1, n)
    end)

    it("classifies HTTP responses", function()
        local function k(status, body, headers)
            local e = weft.retry.http_error { status = status, headers = headers or {}, body = body or "" }
            return e and e.kind
        end
        assert.is_nil(k(200))
        assert.are.equal("rate_limited", k(429))
        assert.are.equal("quota_exhausted", k(429, '{"error":{"code":"insufficient_quota"}}'))
        assert.are.equal("quota_exhausted", k(429, '{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}'))
        assert.are.equal("quota_exhausted", k(400, "Your credit balance is too low to access the Anthropic API"))
        assert.are.equal("transient", k(503))
        assert.are.equal("transient", k(529))
        assert.are.equal("auth", k(401))
        assert.are.equal("invalid_request", k(404))
        local e = weft.retry.http_error { status = 429, headers = { ["retry-after-ms"] = "1500" }, body = "" }
        assert.are.equal(1.5, e.retry_after)
        local g = weft.retry.http_error { status = 429, headers = {},
            body = '{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"27s"}]}}' }
        assert.are.equal(27, g.retry_after)
        local s = weft.retry.http_error { status = 400, headers = { ["x-should-retry"] = "true" }, body = "" }
        assert.is_true(s.should_retry)
    end)

    it("rejects bad policies", function()
        assert.matches("jitter", raised(weft.retry.policy, { jitter = "wild" }))
        assert.matches("max_attempts", raised(weft.retry.policy, { max_attempts = 0 }))
    end)
end)

describe("weft.breaker", function()
    local function failing(kind)
        return function() error(E.new(kind, kind), 0) end
    end
    local NEUTRAL = { "rate_limited", "quota_exhausted", "invalid_request", "auth", "cancelled", "integration",
                      "circuit_open", "budget_exceeded" }

    it("opens on transient failures and timeouts, not on request errors", function()
        local br = weft.breaker.new { min_calls = 3, threshold = 0.5, cooldown = 60 }
        for _ = 1, 5 do pcall(br.call, br, failing("invalid_request")) end
        assert.are.equal("closed", br:state().state)
        assert.are.equal(0, br:state().calls) -- no verdict: not in the window
        for _ = 1, 3 do br:call(function() return 1 end) end
        for _ = 1, 2 do pcall(br.call, br, failing("transient")) end
        -- 2 of 5 failed: below 50%
        assert.are.equal("closed", br:state().state)
        pcall(br.call, br, failing("timeout"))
        assert.are.equal("open", br:state().state)
        local err = raised(br.call, br, function() return 1 end)
        assert.are.equal("circuit_open", err.kind)
        assert.is_true(err.retry_after > 59)
    end)

    it("counts no neutral kind, however many: it stays closed and they do not dilute failures", function()
        for _, kind in ipairs(NEUTRAL) do
            local br = weft.breaker.new { min_calls = 3, threshold = 0.5, cooldown = 60 }
            for _ = 1, 20 do
                local err = raised(br.call, br, failing(kind))
                assert.are.equal(kind, err.kind) -- passed on unchanged
            end
            local st = br:state()
            assert.are.equal("closed", st.state, kind)
            assert.are.same({ 0, 0 }, { st.calls, st.failures }, kind)
            -- 3 timeouts among 20 neutral outcomes are 3 failures of 3
            for _ = 1, 3 do pcall(br.call, br, failing("timeout")) end
            assert.are.equal("open", br:state().state, kind)
        end
        -- a Lua error that is not an error value (a bug) says nothing either
        local br = weft.breaker.new { min_calls = 1, threshold = 0.5, cooldown = 60 }
        assert.matches("bug", raised(br.call, br, function() error("bug") end))
        assert.are.equal(0, br:state().calls)
    end)

    it("gives a half-open probe back when it ends neutral: never stuck half-open", function()
        for _, kind in ipairs(NEUTRAL) do
            local br = weft.breaker.new { min_calls = 1, threshold = 0.5, cooldown = 0.01, probes = 1 }
            pcall(br.call, br, failing("transient"))
            assert.are.equal("open", br:state().state, kind)
            weft.sleep(0.02)
            -- the probe is out while it runs: another call is refused
            local inner
            raised(br.call, br, function()
                inner = raised(br.call, br, function() return 1 end)
                error(E.new(kind, "neutral probe"), 0)
            end)
            assert.are.equal("circuit_open", inner.kind, kind)
            -- ended neutral: still half-open, and the slot is free again
            assert.are.equal("half_open", br:state().state, kind)
            for _ = 1, 3 do raised(br.call, br, failing(kind)) end
            assert.are.equal("half_open", br:state().state, kind)
            assert.are.equal(7, br:call(function() return 7 end), kind)
            assert.are.equal("closed", br:state().state, kind)
        end
    end)

    it("splits call into admit and run, for callers that undo something on a refusal", function()
        local br = weft.breaker.new { min_calls = 1, threshold = 0.5, cooldown = 60 }
        assert.is_true(br:admit())
        assert.are.equal(3, br:run(function(a, b) return a + b end, 1, 2))
        assert.is_true(br:admit())
        raised(br.run, br, failing("timeout"))
        local ok, err = br:admit()
        assert.is_nil(ok)
        assert.are.equal("circuit_open", err.kind)
        assert.is_true(err.retry_after > 59)
        assert.are.equal(1, br:state().rejected)
    end)

    it("passes results through, trailing nils included", function()
        local br = weft.breaker.new {}
        local a, b, c = br:call(function() return 1, nil, 3 end)
        assert.are.same({ 1, nil, 3 }, { a, b, c })
    end)
end)
