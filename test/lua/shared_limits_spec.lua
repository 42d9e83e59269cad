-- shared_limits_spec.lua: limits shared through Redis (weft.shared_limits,
-- a provider's limits.shared) against a real redis-server started here:
-- callers of several limiters (several processes) are booked on one
-- schedule, a slot after the deadline books nothing, token estimates are
-- reconciled with the next admission, a failing Redis falls back to the
-- process's share (or fails, as configured) and comes back, and a provider
-- configured with shared limits keeps its keys in Redis with a TTL.
local shared = require "weft.shared_limits"
local model = require "weft.model"
local mockmod = weft.mock

local rs = require "redis_server" ()
local n = 0

describe("shared limits", function()
    local r
    setup(function()
        rs.start()
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sl-redis", rs.password) }
    end)
    teardown(function()
        rs.stop()
        rs.remove()
    end)
    before_each(function() n = n + 1 end)

    local function opts(extra)
        local o = { url = rs.url, password = weft.secrets.value("sl-redis", rs.password) }
        for k, v in pairs(extra or {}) do o[k] = v end
        return o
    end
    local function redis_ms()
        local t = r:call("TIME")
        return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
    end

    it("books the callers of every process on one schedule: N calls move the shared time by N slots", function()
        local name = "book" .. n
        local a = shared.new(name, { rps = 50, burst = 1 }, opts())
        local b = shared.new(name, { rps = 50, burst = 1 }, opts())
        local before = redis_ms()
        local tasks = {}
        for i = 1, 40 do
            local lim = i % 2 == 0 and a or b
            tasks[i] = weft.spawn(function() return lim:admit({ requests = 1 }) end)
        end
        local waited = 0
        for _, t in ipairs(tasks) do waited = math.max(waited, (t:wait())) end
        local after = redis_ms()
        local tat = tonumber(r:call("GET", "{weft:" .. name .. "}:rps"))
        -- 40 slots of 20 ms from the first call's time, whichever limiter booked them
        assert.is_true(tat >= before + 40 * 20 - 0.01 and tat <= after + 40 * 20 + 0.01, tostring(tat - before))
        assert.is_true(waited >= 38 * 0.02 - 0.005) -- the last one waited for its slot
        assert.is_true(r:call("PTTL", "{weft:" .. name .. "}:rps") > 0)
    end)

    it("the callers of a process wait for Redis by priority, FIFO within a level, the old ones first", function()
        local name = "prio" .. n
        local a = shared.new(name, { rps = 50, burst = 1 }, opts())
        a:admit({ requests = 1 })
        local order = {}
        local tasks = {}
        for i, p in ipairs { "low", "normal", "high", "low", "high", 2 } do
            tasks[i] = weft.spawn(function()
                a:admit({ requests = 1 }, nil, p)
                order[#order + 1] = tostring(p) .. i
            end)
        end
        -- a caller that gives up while queued is passed over
        local quitter = weft.spawn(function() a:admit({ requests = 1 }, nil, "high") end)
        weft.sleep(0)
        quitter:cancel()
        for _, t in ipairs(tasks) do t:wait() end
        -- the first low one was already asking Redis when the others came
        assert.are.same({ "low1", "high3", "high5", "normal2", "26", "low4" }, order)
        -- aging: a waiter older than `aging` goes first whatever its priority
        local b = shared.new(name .. "age", { rps = 20, burst = 1, aging = 0.1 }, opts())
        b:admit({ requests = 1 })
        order = {}
        tasks = { weft.spawn(function() b:admit({ requests = 1 }, nil, "low") order[#order + 1] = "low" end) }
        weft.sleep(0.12)
        for i = 1, 3 do
            tasks[#tasks + 1] = weft.spawn(function() b:admit({ requests = 1 }, nil, "high") order[#order + 1] = "high" .. i end)
        end
        for _, t in ipairs(tasks) do t:wait() end
        assert.are.equal("low", order[1])
        local ok, err = pcall(a.admit, a, { requests = 1 }, nil, "urgent")
        assert.is_false(ok)
        assert.are.equal("invalid_request", err.kind)
    end)

    it("a slot after the deadline books nothing and fails rate_limited with the wait", function()
        local name = "late" .. n
        local a = shared.new(name, { rps = 1, burst = 1 }, opts())
        a:admit({ requests = 1 })
        local tat = r:call("GET", "{weft:" .. name .. "}:rps")
        local ok, err = pcall(a.admit, a, { requests = 1 }, weft.now() + 0.1)
        assert.is_false(ok)
        assert.are.equal("rate_limited", err.kind)
        assert.is_true(err.retry_after > 0.5 and err.retry_after <= 1)
        assert.are.equal(tonumber(tat), tonumber(r:call("GET", "{weft:" .. name .. "}:rps")))
    end)

    it("reconciles token estimates with the next admission", function()
        local name = "tok" .. n
        local a = shared.new(name, { tpm = 60000, rpm = 6000 }, opts())
        local key = "{weft:" .. name .. "}:tpm"
        a:admit({ requests = 1, tokens = 1000 })
        local t1 = tonumber(r:call("GET", key))
        a:reconcile(1000, 200) -- 800 tokens back
        a:admit({ requests = 1, tokens = 0 })
        local t2 = tonumber(r:call("GET", key))
        -- 1 ms a token: 800 given back, unless the time passed more than that
        local nowms = redis_ms()
        assert.is_true(t2 <= math.max(t1 - 800, nowms) + 1, ("%f %f"):format(t1, t2))
    end)

    it("scales its estimates by what the answers used: a steady underestimate books the real tokens", function()
        local name = "ratio" .. n
        local a = shared.new(name, { tpm = 6000000 }, opts())
        local _, booked = a:admit({ requests = 1, tokens = 100 })
        assert.are.equal(100, booked)
        for _ = 1, 30 do
            local _, b = a:admit({ requests = 1, tokens = 100 })
            a:reconcile(b, 200, 100) -- every answer used twice the estimate
        end
        _, booked = a:admit({ requests = 1, tokens = 100 })
        assert.is_true(booked >= 199 and booked <= 200, tostring(booked))
        -- calls that never went out (no usage) teach nothing
        for _ = 1, 10 do a:reconcile(booked, 0, 100) end
        local _, again = a:admit({ requests = 1, tokens = 100 })
        assert.are.equal(booked, again)
    end)

    it("token_burst: the shortest token limit's bucket, as in the local limiter", function()
        local name = "tburst" .. n
        -- 1 ms a token; a bucket of 100 tokens: a call of 100 empties it
        local a = shared.new(name, { tpm = 60000, token_burst = 100 }, opts())
        a:admit({ requests = 1, tokens = 100 })
        -- the bucket is empty: the next 100 go when it holds all 100 again
        -- (not when the previous call's slot began)
        local booked, wait = a:_try({ requests = 1, tokens = 100 }, 0)
        assert.is_false(booked)
        assert.is_true(wait >= 90, tostring(wait))
        assert.is_true(a:admit({ requests = 1, tokens = 100 }) >= 0.09)
        -- without it, the minute's 60,000 tokens may go at once
        local b = shared.new(name .. "b", { tpm = 60000 }, opts())
        for _ = 1, 5 do b:admit({ requests = 1, tokens = 1000 }) end
        local booked, wait = b:_try({ requests = 1, tokens = 1000 }, 500) -- Redis's answer: no wait
        assert.is_true(booked)
        assert.are.equal(0, wait)
    end)

    it("counts the processes alive through a heartbeat, and falls back to that share", function()
        local name = "hb" .. n
        local a = shared.new(name, { rps = 100, burst = 1 }, opts({ timeout = 0.2 }))
        local b = shared.new(name, { rps = 100, burst = 1 }, opts({ timeout = 0.2 }))
        local c = shared.new(name, { rps = 100, burst = 1 }, opts({ timeout = 0.2, processes = 2 }))
        -- three processes (ids as if they were); c's count is configured, it sends no heartbeat
        a.id, b.id, c.id = "proc-a", "proc-b", "proc-c"
        b:admit({ requests = 1 })
        c:admit({ requests = 1 })
        a:admit({ requests = 1 })
        assert.are.equal(2, a.processes)
        assert.are.equal(2, r:call("ZCARD", "{weft:" .. name .. "}:procs"))
        assert.is_nil(r:call("ZSCORE", "{weft:" .. name .. "}:procs", "proc-c"))
        assert.is_true(r:call("PTTL", "{weft:" .. name .. "}:procs") > 0)
        -- once a second at most: the next admissions send none
        r:call("DEL", "{weft:" .. name .. "}:procs")
        a:admit({ requests = 1 })
        assert.are.equal(0, r:call("EXISTS", "{weft:" .. name .. "}:procs"))
        assert.are.equal(2, a.processes)
        rs.stop()
        -- Redis gone: a keeps to half of 100/s, 10 calls 20 ms apart
        local t0 = weft.now()
        for _ = 1, 10 do a:admit({ requests = 1 }) end
        assert.is_true(weft.now() - t0 >= 9 * 0.02 - 0.005)
        rs.start()
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sl-redis", rs.password) }
        for _ = 1, 300 do
            a:admit({ requests = 1 })
            if weft.metrics.value("weft_redis_degraded", { redis = rs.url }) == 0 then break end
            weft.sleep(0.02)
        end
    end)

    it("when Redis fails: the process's share, said once, then the shared state again; or fail", function()
        local name = "down" .. n
        local loc = shared.new(name, { rps = 100, burst = 1 }, opts({ processes = 4, timeout = 0.2 }))
        local failing = shared.new(name, { rps = 100, burst = 1 }, opts({ on_failure = "fail", timeout = 0.2 }))
        loc:admit({ requests = 1 })
        rs.stop()
        -- 10 calls at a quarter of 100/s: the local share spaces them 40 ms apart
        local t0 = weft.now()
        for _ = 1, 10 do loc:admit({ requests = 1 }) end
        assert.is_true(weft.now() - t0 >= 9 * 0.04 - 0.005)
        assert.are.equal(1, weft.metrics.value("weft_redis_degraded", { redis = rs.url }))
        local ok, err = pcall(failing.admit, failing, { requests = 1 })
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        rs.start()
        local back
        for _ = 1, 300 do
            loc:admit({ requests = 1 })
            if weft.metrics.value("weft_redis_degraded", { redis = rs.url }) == 0 then back = true break end
            weft.sleep(0.02)
        end
        assert.is_true(back)
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sl-redis", rs.password) }
    end)

    it("a provider with limits.shared goes through Redis for every call", function()
        local mock = mockmod.start { port = 0 }
        model.reset()
        local pname = "sharedp" .. n
        weft.configure { providers = { [pname] = {
            plugin = "openai", base_url = mock.url, secret = weft.secrets.value("sl-key", mockmod.DEFAULT_KEYS.openai),
            limits = { rps = 100, tpm = 1000000, shared = opts() } } } }
        local m = weft.model(pname .. "/gpt-4o-mini")
        for i = 1, 5 do assert.are.equal("echo: q" .. i, m:complete("q" .. i).text) end
        assert.is_true(tonumber(r:call("GET", "{weft:" .. pname .. "}:rps")) > 0)
        assert.is_true(r:call("PTTL", "{weft:" .. pname .. "}:tpm") > 0)
        mock:close()
    end)

    it("a global redis setting shares every provider's limits, unless one says shared = false", function()
        local mock = mockmod.start { port = 0 }
        model.reset()
        local on, off = "glob" .. n, "globoff" .. n
        local key = weft.secrets.value("sl-key", mockmod.DEFAULT_KEYS.openai)
        weft.configure { redis = opts(), providers = {
            [on] = { plugin = "openai", base_url = mock.url, secret = key, limits = { rps = 100 },
                     breaker = { shared = true } },
            [off] = { plugin = "openai", base_url = mock.url, secret = key, limits = { rps = 100, shared = false } },
            nolimits = { plugin = "openai", base_url = mock.url, secret = key } } }
        weft.model(on .. "/gpt-4o-mini"):complete("a")
        weft.model(off .. "/gpt-4o-mini"):complete("b")
        weft.model("nolimits/gpt-4o-mini"):complete("c")
        assert.is_true(r:call("PTTL", "{weft:" .. on .. "}:rps") > 0)
        assert.are.equal(0, r:call("EXISTS", "{weft:" .. off .. "}:rps"))
        assert.are.same({}, r:call("KEYS", "{weft:nolimits}*"))
        assert.are.equal(rs.url, model.config().redis.url)
        -- the breaker's shared = true is the global redis: one client for both
        local inst = require("weft._config").instances[on]
        assert.are.equal(inst.shared.redis, inst.shared_breaker.redis)
        mock:close()
        model.reset()
    end)

    it("shared = true without a global redis is a configuration error; a refused one changes nothing", function()
        model.reset()
        local ok, err = pcall(weft.configure, { providers = { x = { plugin = "openai", limits = { rps = 1, shared = true } } } })
        assert.is_false(ok)
        assert.matches("providers.x.limits.shared: true needs the configuration's redis", tostring(err), 1, true)
        ok, err = pcall(weft.configure, { redis = opts(), providers = { x = { plugin = "openai", limits = { rps = -1 } } } })
        assert.is_false(ok)
        assert.is_nil(require("weft._config").redis)
        ok, err = pcall(weft.configure, { redis = "http://nope" })
        assert.is_false(ok)
        assert.matches("config: redis", tostring(err), 1, true)
        model.reset()
    end)

    it("refuses a bad shared setting, naming the key", function()
        for _, bad in ipairs { 42, { url = rs.url, on_failure = "maybe" }, { url = rs.url, processes = 0 },
                               { url = rs.url, speed = 1 }, {} } do
            local ok, err = pcall(weft.configure, { providers = { x = { plugin = "openai", limits = { rps = 1, shared = bad } } } })
            assert.is_false(ok)
            assert.matches("providers.x.limits.shared", tostring(err), 1, true)
        end
    end)
end)
