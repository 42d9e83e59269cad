-- map_spec.lua: weft.map and weft.settle (lua/weft/map.lua) against weft
-- mock: bounded concurrency seen from the server, results in input order,
-- failures collected with their items, fail_fast, min_success,
-- cancellation, bounded memory over a million items.
local model = require "weft.model"
local mockmod = weft.mock

describe("weft.map", function()
    local mock
    before_each(function()
        mock = mockmod.start { port = 0, seed = 42, limits = { rpm = 1e9, tpm = 1e12 } }
        model.reset()
        weft.configure { providers = { openai = {
            base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
            secret = weft.secrets.value("map-key", mockmod.DEFAULT_KEYS.openai) } } }
    end)
    after_each(function() mock:close() end)

    it("1,000 items at concurrency 50 with 10% failures: order, every failure with its item, exact counts", function()
        mock:set_faults { { dialect = "openai", probability = { [503] = 0.1 }, latency = { min = 1, max = 5 } } }
        local items = {}
        for i = 1, 1000 do items[i] = "item " .. i end
        local m = weft.model("openai/gpt-4o-mini")
        local out = weft.map(items, function(item) return m:complete(item).text end, { concurrency = 50, progress = false })
        local st = mock:stats()
        local failed = st.by_status["503"] or 0
        assert.is_true(failed > 50 and failed < 150, "503s " .. failed)
        assert.are.equal(failed, out.failed)
        assert.are.equal(1000 - failed, out.ok)
        assert.are.equal(failed, #out.errors)
        for _, e in ipairs(out.errors) do
            assert.are.equal("item " .. e.index, e.item)
            assert.are.equal("transient", e.error.kind)
            assert.is_nil(out.results[e.index])
        end
        local n = 0
        for i = 1, 1000 do
            if out.results[i] then
                n = n + 1
                assert.are.equal("echo: item " .. i, out.results[i])
            end
        end
        assert.are.equal(1000 - failed, n)
        for k = 2, #out.errors do assert.is_true(out.errors[k].index > out.errors[k - 1].index) end
        assert.are.equal(1000, st.requests)
        assert.is_true(st.max_in_flight <= 50, "in flight " .. st.max_in_flight)
        assert.is_true(st.max_in_flight >= 25, "in flight " .. st.max_in_flight) -- it did run them at once
    end)

    it("pulls items from an iterator only when a task is free: a million items in bounded memory", function()
        local n = 0
        local function items()
            n = n + 1
            if n <= 1000000 then return n end
        end
        collectgarbage()
        local before = collectgarbage("count")
        local peak = before
        local out = weft.map(items, function(x)
            if x % 100000 == 0 then
                local now = collectgarbage("count")
                if now > peak then peak = now end
            end
            return x
        end, { concurrency = 100, collect = false, progress = false })
        assert.are.equal(1000000, out.ok)
        assert.are.equal(0, out.failed)
        print(("\n# weft.map: 1,000,000 items, Lua heap at most %.1f MB above the start"):format((peak - before) / 1024))
        assert.is_true(peak - before < 64 * 1024, "heap grew by " .. (peak - before) .. " KB")
    end)

    it("fail_fast raises the first failure and cancels the items running", function()
        mock:set_faults { { dialect = "openai", latency = 2000 } }
        local m = weft.model("openai/gpt-4o-mini")
        local ok, err = pcall(weft.map, { 1, 2, 3, 4 }, function(x)
            if x == 4 then
                -- fail once the three others are at the server
                while mock:stats().in_flight < 3 do weft.sleep(0.005) end
                error(weft.error.new("invalid_request", "bad item 4"))
            end
            return m:complete("slow " .. x).text
        end, { fail_fast = true, concurrency = 4, progress = false })
        assert.is_false(ok)
        assert.are.equal("bad item 4", err.message)
        -- the three slow calls were stopped: their connections closed early
        for _ = 1, 400 do
            if (mock:stats().closed_early or 0) >= 3 then break end
            weft.sleep(0.01)
        end
        assert.are.equal(3, mock:stats().closed_early)
    end)

    it("min_success stops once it can no longer be reached", function()
        local ran = 0
        local ok, err = pcall(weft.map, { 1, 2, 3, 4, 5, 6 }, function(x)
            ran = ran + 1
            if x <= 3 then error(weft.error.new("transient", "down")) end
            return x
        end, { min_success = 4, concurrency = 1, progress = false })
        assert.is_false(ok)
        assert.are.equal("cancelled", err.kind)
        assert.matches("4 successes can no longer be reached", err.message)
        assert.are.equal(3, ran)
    end)

    it("is cancelled with its caller: the running items stop", function()
        mock:set_faults { { dialect = "openai", latency = 2000 } }
        local m = weft.model("openai/gpt-4o-mini")
        local t = weft.spawn(function()
            return weft.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function(x) return m:complete("x" .. x).text end,
                { concurrency = 3, progress = false })
        end)
        while mock:stats().in_flight < 3 do weft.sleep(0.005) end -- three items at the server
        t:cancel()
        local ok, err = pcall(t.wait, t)
        assert.is_false(ok)
        assert.are.equal("cancelled", err.kind)
        for _ = 1, 400 do
            if (mock:stats().closed_early or 0) >= 3 then break end
            weft.sleep(0.01)
        end
        assert.are.equal(3, mock:stats().requests) -- no item after the three running
        assert.are.equal(3, mock:stats().closed_early)
    end)

    it("an iterator that raises stops the map with its error", function()
        local k = 0
        local ok, err = pcall(weft.map, function()
            k = k + 1
            if k == 5 then error("the source broke") end
            if k < 10 then return k end
        end, function(x) return x end, { concurrency = 2, progress = false })
        assert.is_false(ok)
        assert.matches("the source broke", tostring(err))
    end)

    it("refuses bad arguments", function()
        assert.has_error(function() weft.map({}, "x") end)
        assert.has_error(function() weft.map({}, function() end, { concurrency = 0 }) end)
        assert.has_error(function() weft.map(42, function() end) end)
    end)
end)

describe("weft.settle", function()
    it("runs every function to its end and reports each", function()
        local order = {}
        local r = weft.settle {
            function() weft.sleep(0.03) order[#order + 1] = 1 return "a" end,
            function() error(weft.error.new("transient", "no")) end,
            function() order[#order + 1] = 3 return "c" end,
        }
        assert.are.same({ ok = true, value = "a" }, r[1])
        assert.is_false(r[2].ok)
        assert.are.equal("transient", r[2].error.kind)
        assert.are.same({ ok = true, value = "c" }, r[3])
        assert.are.same({ 3, 1 }, order) -- concurrently, and the failure stopped nothing
    end)
end)
