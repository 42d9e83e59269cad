-- shared_retry_spec.lua: a provider's retry budget shared through Redis
-- (weft.shared_retry, retry.shared) against a real redis-server started
-- here. Two budgets (or two providers) with the same key stand for two
-- processes: the retries of the fleet's last window stay within 20% of the
-- fleet's calls (at least 3), whichever process asks; call counts reach
-- Redis without a caller waiting; a failing Redis leaves the decision to
-- the process's own budget.
local model = require "weft.model"
local shared_retry = require "weft.shared_retry"
local mockmod = weft.mock

local rs = require "redis_server" ()
local n = 0

describe("shared retry budget", function()
    local r
    setup(function()
        rs.start()
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sr-redis", rs.password) }
    end)
    teardown(function()
        rs.stop()
        rs.remove()
    end)
    before_each(function() n = n + 1 end)

    local function client()
        return weft.redis.connect { url = rs.url, password = weft.secrets.value("sr-redis", rs.password), timeout = 0.2 }
    end
    local function sum(key)
        local t, s = r:call("HGETALL", key), 0
        for i = 2, #t, 2 do s = s + tonumber(t[i]) end
        return s
    end

    it("counts retries over the fleet: 20% of the fleet's calls, whichever process asks", function()
        local key = "fleet" .. n
        local a = shared_retry.new("a", weft.retry.budget(), { client = client(), key = key })
        local b = shared_retry.new("b", weft.retry.budget(), { client = client(), key = key })
        a.next_flush, b.next_flush = math.huge, math.huge -- counts go with the retries only, here
        for _ = 1, 20 do a:begin() end
        -- 20 calls: 4 retries in the window, for the fleet
        local got = 0
        for _ = 1, 4 do
            if a:take({}) then got = got + 1 end
        end
        assert.are.equal(4, got)
        assert.is_false(a:take({}))
        -- b has no call of its own in flight: its local budget would allow 3; the fleet's is spent
        assert.is_false(b:take({}))
        assert.are.equal(20, sum("{weft:" .. key .. "}:retry:calls"))
        assert.are.equal(4, sum("{weft:" .. key .. "}:retry:retries"))
        assert.is_true(r:call("PTTL", "{weft:" .. key .. "}:retry:calls") > 0)
        -- b's calls raise the fleet's budget for both
        for _ = 1, 10 do b:begin() end
        assert.is_true(b:take({}))
        assert.is_true(a:take({}))
        for _ = 1, 20 do a:finish() end
        for _ = 1, 10 do b:finish() end
    end)

    it("at least `min` retries a window, with few calls", function()
        local key = "min" .. n
        local a = shared_retry.new("a", weft.retry.budget(), { client = client(), key = key })
        a:begin()
        local got = 0
        for _ = 1, 5 do
            if a:take({}) then got = got + 1 end
        end
        assert.are.equal(3, got)
        a:finish()
    end)

    it("sends a process's call count within a second, no caller waiting on it", function()
        local key = "flush" .. n
        local a = shared_retry.new("a", weft.retry.budget(), { client = client(), key = key })
        for _ = 1, 7 do a:begin() end
        -- the first begin started a task sending the count; it runs after the caller moves on
        local counted
        for _ = 1, 300 do
            weft.sleep(0.01)
            counted = sum("{weft:" .. key .. "}:retry:calls")
            if counted >= 7 then break end
        end
        assert.are.equal(7, counted)
        -- within the second: counted in the process, no task started to send it
        a:begin()
        assert.is_false(a.flushing)
        assert.are.equal(1, a.pending)
        assert.are.equal(7, sum("{weft:" .. key .. "}:retry:calls"))
        a.next_flush = 0 -- the second has passed
        a:begin()
        for _ = 1, 300 do
            weft.sleep(0.01)
            counted = sum("{weft:" .. key .. "}:retry:calls")
            if counted == 9 then break end
        end
        assert.are.equal(9, counted)
        for _ = 1, 9 do a:finish() end
    end)

    it("when Redis fails, the process's own budget decides, said once; then the fleet's again", function()
        local key = "down" .. n
        local a = shared_retry.new("down" .. n, weft.retry.budget(), { client = client(), key = key })
        a.next_flush = math.huge
        a:begin()
        local before = weft.metrics.value("weft_redis_errors_total", { redis = rs.url }) or 0
        rs.stop()
        -- the local budget: 1 call in flight, at least 3 retries in flight
        local s1, s2, s3, s4 = {}, {}, {}, {}
        assert.is_true(a:take(s1))
        assert.is_true(a:take(s2))
        assert.is_true(a:take(s3))
        assert.is_false(a:take(s4))
        assert.is_true(a.degraded)
        assert.is_true((weft.metrics.value("weft_redis_errors_total", { redis = rs.url }) or 0) >= before + 4)
        a:release(s1) a:release(s2) a:release(s3) a:release(s4)
        assert.are.equal(0, a:stats().retries)
        rs.start()
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sr-redis", rs.password) }
        local back
        for _ = 1, 300 do
            a:take({})
            if not a.degraded then back = true break end
            weft.sleep(0.02)
        end
        assert.is_true(back)
        a:finish()
    end)

    it("a provider with retry.shared: the fleet's retries stay within its budget", function()
        local mock = mockmod.start { port = 0 }
        model.reset()
        -- two providers with one shared key: two processes
        local shared = { url = rs.url, password = weft.secrets.value("sr-redis", rs.password), key = "prov" .. n }
        local providers = {}
        for _, p in ipairs { "a", "b" } do
            providers[p .. n] = { plugin = "openai", base_url = mock.url,
                                  secret = weft.secrets.value("sr-key", mockmod.DEFAULT_KEYS.openai),
                                  retry = { max_attempts = 4, base = 0.01, cap = 0.02, shared = shared },
                                  breaker = false }
        end
        weft.configure { providers = providers }
        mock:set_faults { { probability = { [500] = 1 } } }
        local tasks = {}
        for i = 1, 40 do
            local m = weft.model((i % 2 == 0 and "a" or "b") .. n .. "/gpt-4o-mini")
            tasks[i] = weft.spawn(function() return pcall(m.complete, m, "hi") end)
        end
        local stopped = 0
        for _, t in ipairs(tasks) do
            local ok, err = t:wait()
            assert.is_false(ok)
            if err.retry_stopped == "retry_budget" then stopped = stopped + 1 end
        end
        -- 40 calls: at most 8 retries in the window over both; 160 requests without a budget
        local requests = mock:stats().requests
        assert.is_true(requests >= 41 and requests <= 48, tostring(requests))
        assert.is_true(stopped >= 32, tostring(stopped))
        assert.is_true(sum("{weft:prov" .. n .. "}:retry:retries") <= 8)
        mock:close()
        model.reset()
    end)

    it("retry.shared = true without a Redis is a configuration error", function()
        model.reset()
        local ok, err = pcall(weft.configure, { providers = { x = { plugin = "openai", retry = { shared = true } } } })
        assert.is_false(ok)
        assert.matches("providers.x.retry.shared: true needs", tostring(err), 1, true)
    end)
end)
