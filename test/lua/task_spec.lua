-- task_spec.lua: the scheduler through the public API (lua/weft/init.lua).
-- Specs run inside a weft task, so they wait for real.
local errors = weft.error

local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

local function busy(seconds)
    local t0 = os.clock()
    while os.clock() - t0 < seconds do end
end

describe("weft.spawn / task:wait", function()
    it("returns every result, trailing nils included", function()
        local t = weft.spawn(function(a, b) return a, nil, b, nil end, 1, 2)
        local r = { n = select("#", t:wait()), t:wait() }
        assert.are.equal(4, r.n)
        assert.are.same({ 1, nil, 2, nil }, { r[1], r[2], r[3], r[4] })
    end)

    it("does not run the task until the caller waits", function()
        local ran = false
        local t = weft.spawn(function() ran = true end)
        assert.is_false(ran)
        t:wait()
        assert.is_true(ran)
    end)

    it("re-raises the task's error value with its kind", function()
        local t = weft.spawn(function() errors.raise("quota_exhausted", "no credit") end)
        local err = raised(t.wait, t)
        assert.is_true(errors.is(err))
        assert.are.equal("quota_exhausted", err.kind)
        assert.are.equal("no credit", err.message)
        assert.is_string(err.traceback)
    end)

    it("re-raises plain string errors", function()
        local t = weft.spawn(function() error("plain", 0) end)
        assert.are.equal("plain", raised(t.wait, t))
    end)

    it("rejects what is not a function", function()
        assert.matches("expected a function", raised(weft.spawn, nil))
        assert.matches("expected a function", raised(weft.spawn, "f"))
    end)

    it("cannot wait for itself", function()
        local err = raised(function() weft.current():wait() end)
        assert.matches("itself", err)
    end)

    it("wait with a timeout raises kind timeout and leaves the task running", function()
        local t = weft.spawn(function() weft.sleep(0.2); return "late" end)
        local err = raised(t.wait, t, 0.02)
        assert.are.equal("timeout", err.kind)
        assert.are.equal("late", t:wait())
    end)
end)

describe("cancellation", function()
    it("a sleeping task sees kind cancelled; wait raises it", function()
        local seen
        local t = weft.spawn(function()
            local ok, err = pcall(weft.sleep, 10)
            seen = err
            error(err, 0)
        end)
        weft.sleep(0.01)
        assert.is_true(t:cancel())
        local err = raised(t.wait, t)
        assert.are.equal("cancelled", err.kind)
        assert.are.equal("cancelled", seen.kind)
        assert.are.equal("cancelled", t:status())
    end)

    it("cancelling a finished task returns false", function()
        local t = weft.spawn(function() return 1 end)
        t:wait()
        assert.is_false(t:cancel())
        assert.are.equal("done", t:status())
    end)

    it("a task cancelled before it starts never runs", function()
        local ran = false
        local t = weft.spawn(function() ran = true end)
        t:cancel()
        raised(t.wait, t)
        assert.is_false(ran)
    end)
end)

describe("weft.sleep / weft.now", function()
    it("waits at least the given time, even after the task kept the CPU", function()
        busy(0.03) -- the loop's cached time is now stale
        local t0 = weft.now()
        weft.sleep(0.05)
        assert.is_true(weft.now() - t0 >= 0.05)
    end)

    it("wakes sleepers in order of their deadlines", function()
        local order = {}
        local ts = {}
        for _, d in ipairs { 0.03, 0.01, 0.02 } do
            ts[#ts + 1] = weft.spawn(function() weft.sleep(d); order[#order + 1] = d end)
        end
        for _, t in ipairs(ts) do t:wait() end
        assert.are.same({ 0.01, 0.02, 0.03 }, order)
    end)

    it("is monotonic", function()
        local a = weft.now()
        weft.sleep(0)
        assert.is_true(weft.now() >= a)
    end)

    it("rejects bad durations", function()
        assert.matches("seconds", raised(weft.sleep, -1))
        assert.matches("seconds", raised(weft.sleep, "1"))
        assert.matches("seconds", raised(weft.sleep, 0 / 0))
        assert.matches("seconds", raised(weft.sleep, math.huge))
    end)
end)

describe("weft.all", function()
    it("returns first results in order", function()
        local r = weft.all {
            function() weft.sleep(0.02); return "a" end,
            function() return "b" end,
            function() weft.sleep(0.01); return "c" end,
        }
        assert.are.same({ "a", "b", "c" }, r)
    end)

    it("fails fast on the first error and cancels the others", function()
        local other
        local t0 = weft.now()
        local err = raised(weft.all, {
            function() weft.sleep(0.01); errors.raise("transient", "boom") end,
            function()
                local ok, e = pcall(weft.sleep, 5)
                other = e
            end,
        })
        assert.are.equal("transient", err.kind)
        weft.sleep(0.01)
        assert.are.equal("cancelled", other and other.kind)
    end)

    it("of nothing is an empty list", function()
        assert.are.same({}, weft.all {})
    end)

    it("rejects non-functions", function()
        assert.matches("element 2", raised(weft.all, { function() end, 42 }))
    end)
end)

describe("weft.any", function()
    it("returns the first success and its index, cancelling the rest", function()
        local slow_cancelled = false
        local v, i = weft.any {
            function()
                local ok, e = pcall(weft.sleep, 5)
                slow_cancelled = not ok and e.kind == "cancelled"
            end,
            function() weft.sleep(0.01); return "fast" end,
        }
        assert.are.equal("fast", v)
        assert.are.equal(2, i)
        weft.sleep(0.01)
        assert.is_true(slow_cancelled)
    end)

    it("skips failures while one can still succeed", function()
        local v = weft.any {
            function() errors.raise("transient", "x") end,
            function() weft.sleep(0.01); return "ok" end,
        }
        assert.are.equal("ok", v)
    end)

    it("raises the last error when all fail", function()
        local err = raised(weft.any, {
            function() errors.raise("transient", "first") end,
            function() weft.sleep(0.01); errors.raise("timeout", "last") end,
        })
        assert.are.equal("timeout", err.kind)
    end)
end)

describe("weft.timeout", function()
    it("returns the function's results in time", function()
        local a, b = weft.timeout(1, function(x) weft.sleep(0.01); return x, "y" end, "x")
        assert.are.equal("x", a)
        assert.are.equal("y", b)
    end)

    it("raises kind timeout after at least the given time and cancels the work", function()
        local inner
        local t0 = weft.now()
        local err = raised(weft.timeout, 0.05, function()
            local ok, e = pcall(weft.sleep, 5)
            inner = e
        end)
        assert.are.equal("timeout", err.kind)
        assert.is_true(weft.now() - t0 >= 0.05)
        weft.sleep(0.01)
        assert.are.equal("cancelled", inner and inner.kind)
    end)

    it("passes the function's error through", function()
        local err = raised(weft.timeout, 1, function() errors.raise("auth", "bad key") end)
        assert.are.equal("auth", err.kind)
    end)
end)

describe("weft.stats", function()
    it("counts live tasks", function()
        local before = weft.stats().tasks
        local t = weft.spawn(function() weft.sleep(0.05) end)
        weft.sleep(0.01)
        assert.are.equal(before + 1, weft.stats().tasks)
        t:wait()
        assert.are.equal(before, weft.stats().tasks)
    end)
end)
