-- shared_cache_spec.lua: the cache policy's answers kept in Redis
-- (`shared`, lua/weft/shared_cache.lua) against a real redis-server
-- started here and weft mock. Two cache models with the same `key` stand
-- for two processes: separate stores and single flights in this process,
-- one set of keys in Redis.
local model = require "weft.model"
local policy = require "weft.policy"
local json = require "weft.json"
local mockmod = weft.mock
local value = weft.metrics.value

local rs = require "redis_server" ()

describe("shared cache", function()
    local mock, n, r = nil, 0, nil
    setup(function()
        rs.start()
        r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sc-redis", rs.password) }
    end)
    teardown(function()
        r:close()
        rs.stop()
        rs.remove()
    end)
    before_each(function()
        mock = mockmod.start { port = 0, limits = { rpm = 1e9, tpm = 1e12 } }
        model.reset()
        policy.reset()
        n = n + 1
    end)
    after_each(function() mock:close() end)

    local function provider()
        return { openai = { base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
                            secret = weft.secrets.value("sc-key", mockmod.DEFAULT_KEYS.openai) } }
    end

    -- Models "a<n>" and "b<n>": two processes' view of one cache model.
    local function configure(opts)
        opts = opts or {}
        local models = {}
        for _, p in ipairs { "a", "b" } do
            local shared = opts.shared or { url = rs.url, password = weft.secrets.value("sc-redis", rs.password),
                                            timeout = opts.timeout, key = "fleet" .. n }
            models[p .. n] = { policy = "cache", targets = { "openai/gpt-4o-mini" }, ttl = opts.ttl or 60,
                               shared = shared, max_entry_bytes = opts.max_entry_bytes }
        end
        weft.configure { redis = opts.redis, providers = provider(), models = models }
        return weft.model("a" .. n), weft.model("b" .. n)
    end

    local function keys() return r:call("KEYS", "{weft:cache:fleet" .. n .. "}:*") end

    it("one process's answer is another's: one provider request for two calls", function()
        local a, b = configure()
        local first = a:complete("What are your opening hours?")
        assert.is_nil(first.cached)
        local second = b:complete("What are your opening hours?")
        assert.is_true(second.cached)
        assert.are.equal(first.text, second.text)
        assert.are.equal("cache_hit", second.route[1].reason)
        assert.are.equal(1, mock:stats().requests)
        assert.are.equal(1, value("weft_cache_requests_total", { cache = "b" .. n, result = "hit" }))
        assert.are.equal(1, value("weft_cache_requests_total", { cache = "a" .. n, result = "miss" }))
        -- in Redis: one entry, a digest for a name, with its time to live
        local ks = keys()
        assert.are.equal(1, #ks)
        local prefix = "{weft:cache:fleet" .. n .. "}:v1:"
        assert.are.equal(prefix, ks[1]:sub(1, #prefix))
        assert.matches("^%x+$", ks[1]:sub(#prefix + 1))
        assert.are.equal(#prefix + 64, #ks[1])
        local pttl = r:call("PTTL", ks[1])
        assert.is_true(pttl > 0 and pttl <= 60000)
        -- and no lock left behind
        assert.are.equal(0, r:call("EXISTS", ks[1] .. ":lock"))
    end)

    it("shared = true is the configuration's redis; the keys are the model's name", function()
        local redis = { url = rs.url, password = weft.secrets.value("sc-redis", rs.password) }
        local m = { policy = "cache", targets = { "openai/gpt-4o-mini" }, shared = true }
        weft.configure { redis = redis, providers = provider(), models = { ["g" .. n] = m } }
        weft.model("g" .. n):complete("global")
        -- configured again (another process): a new store, the same answers
        weft.configure { redis = redis, providers = provider(), models = { ["g" .. n] = m } }
        assert.is_true(weft.model("g" .. n):complete("global").cached)
        assert.are.equal(1, mock:stats().requests)
        assert.are.equal(1, #r:call("KEYS", "{weft:cache:g" .. n .. "}:*"))
    end)

    it("keeps a result through JSON: null, empty arrays and objects, numbers", function()
        local store = require("weft.shared_cache").new("rt" .. n,
            { client = require("weft._config").redis_client({ url = rs.url,
                password = weft.secrets.value("sc-redis", rs.password) }), ttl = 60 })
        local entry = {
            result = { text = "", finish_reason = "stop", usage = { input = 0, output = 12 }, cost = 1e-7,
                       tool_calls = json.array(), extra = json.object(), none = json.null,
                       numbers = { 0.1, -2.5, 2 ^ 53 - 1, 1e300, 123456789.123456789, 0 },
                       nested = { { a = json.null, b = { json.null, 1 } } } },
            events = { { type = "text", text = "a\0b\"\n" }, { type = "text", text = "ü" } },
        }
        assert.is_true(store:put("k", entry))
        local back = store:get("k")
        assert.are.equal(json.encode(entry, { sort_keys = true }), json.encode(back, { sort_keys = true }))
        assert.are.equal(json.null, back.result.none)
        assert.are.equal(2 ^ 53 - 1, back.result.numbers[3])
        assert.are.equal(123456789.123456789, back.result.numbers[5])
        assert.are.equal("[]", json.encode(back.result.tool_calls))
        assert.are.equal("{}", json.encode(back.result.extra))
        assert.is_nil(store:get("another"))
        store:delete("k")
        assert.is_nil(store:get("k"))
    end)

    it("forgets an answer after its time to live", function()
        local a, b = configure { ttl = 0.2 }
        a:complete("t")
        local k = keys()[1]
        assert.is_string(k)
        -- wait for Redis to let the entry go (by condition, not by the clock)
        for _ = 1, 500 do
            if r:call("EXISTS", k) == 0 then break end
            weft.sleep(0.02)
        end
        assert.are.equal(0, r:call("EXISTS", k))
        assert.is_nil(b:complete("t").cached)
        assert.are.equal(2, mock:stats().requests)
    end)

    it("does not store an answer larger than max_entry_bytes", function()
        local a, b = configure { max_entry_bytes = 64 }
        local before = value("weft_cache_not_stored_total", { cache = "a" .. n, reason = "too_big" }) or 0
        a:complete("a question whose answer, echoed, is longer than sixty-four bytes of JSON")
        assert.are.equal(0, #keys())
        assert.is_nil(b:complete("a question whose answer, echoed, is longer than sixty-four bytes of JSON").cached)
        assert.are.equal(2, mock:stats().requests)
        assert.are.equal(before + 1, value("weft_cache_not_stored_total", { cache = "a" .. n, reason = "too_big" }))
        -- and no lock left behind
        assert.are.same({}, r:call("KEYS", "*fleet" .. n .. "*lock"))
    end)

    it("replays a stream's events from the shared store", function()
        local a, b = configure()
        local first, second = {}, {}
        a:stream("one two three four", function(ev) first[#first + 1] = ev.type .. ":" .. tostring(ev.text) end)
        local res = b:stream("one two three four", function(ev) second[#second + 1] = ev.type .. ":" .. tostring(ev.text) end)
        assert.is_true(#first > 2)
        assert.are.same(first, second)
        assert.is_true(res.cached)
        assert.are.equal("echo: one two three four", res.text)
        assert.are.equal(1, mock:stats().requests)
    end)

    it("two processes asking at once: one provider request (single flight across processes)", function()
        local a, b = configure()
        -- the provider is slow: the second process finds the first's lock and waits for its answer
        mock:set_faults { { dialect = "openai", latency = 300 } }
        local res = {}
        local ta = weft.spawn(function() res.a = a:complete("same") end)
        local tb = weft.spawn(function() res.b = b:complete("same") end)
        ta:wait()
        tb:wait()
        assert.are.equal(1, mock:stats().requests)
        assert.are.equal("echo: same", res.a.text)
        assert.are.equal("echo: same", res.b.text)
        -- one asked the provider, the other got its answer through Redis
        local asked, waited = res.a, res.b
        if res.a.cached then asked, waited = res.b, res.a end
        assert.is_nil(asked.cached)
        assert.is_true(waited.cached)
        assert.are.equal("cache_shared", waited.route[1].reason)
    end)

    it("a failed call lets the waiting process ask the provider itself", function()
        local a, b = configure()
        mock:set_faults { { dialect = "openai", sequence = { 503 }, latency = 200 } }
        local res, t0 = {}, weft.now()
        local ta = weft.spawn(function() res.a = { pcall(a.complete, a, "fails once") } res.a.t = weft.now() end)
        local tb = weft.spawn(function() res.b = { pcall(b.complete, b, "fails once") } res.b.t = weft.now() end)
        ta:wait()
        tb:wait()
        -- one got the error; the other saw the lock go without an answer
        -- (errors are not stored) and asked itself
        local failed, asked = res.a, res.b
        if res.a[1] then failed, asked = res.b, res.a end
        assert.is_false(failed[1])
        assert.are.equal("transient", failed[2].kind)
        assert.is_true(asked[1])
        assert.are.equal("echo: fails once", asked[2].text)
        assert.are.equal(2, mock:stats().requests)
        -- one after the other: the second request went out once the first had failed
        assert.is_true(asked.t - t0 >= 0.4)
    end)

    it("a caller cancelled while it asks the provider lets go of the lock", function()
        local a, b = configure()
        mock:set_faults { { dialect = "openai", latency = 300 } }
        local task = weft.spawn(function() return a:complete("cancelled") end)
        for _ = 1, 200 do
            if mock:stats().in_flight == 1 then break end
            weft.sleep(0.005)
        end
        local lock = r:call("KEYS", "{weft:cache:fleet" .. n .. "}:*:lock")[1]
        assert.is_string(lock)
        task:cancel()
        assert.are.equal("cancelled", select(2, pcall(task.wait, task)).kind)
        for _ = 1, 500 do
            if r:call("EXISTS", lock) == 0 then break end
            weft.sleep(0.01)
        end
        assert.are.equal(0, r:call("EXISTS", lock))
        -- the other process does not wait for an answer that will not come
        mock:set_faults {}
        assert.are.equal("echo: cancelled", b:complete("cancelled").text)
    end)

    it("refuses a bad shared setting with a configuration error", function()
        local function refused(m, pattern)
            local ok, err = pcall(weft.configure, { providers = provider(), models = { ["bad" .. n] = m } })
            assert.is_false(ok)
            assert.matches("config: models.bad" .. n, tostring(err), 1, true)
            assert.matches(pattern, tostring(err))
        end
        local base = { policy = "cache", targets = { "openai/gpt-4o-mini" } }
        local function with(k, v)
            local m = {}
            for x, y in pairs(base) do m[x] = y end
            m[k] = v
            return m
        end
        refused(with("shared", true), "shared: true needs the configuration's redis setting")
        refused(with("shared", "http://127.0.0.1:6379"), "shared: cannot read url")
        refused(with("shared", "rediss://127.0.0.1:6379"), "shared: TLS")
        refused(with("shared", { url = rs.url, on_failure = "local" }), "shared: unknown key 'on_failure'")
        refused(with("shared", { password = "env:X" }), "shared: url is required")
        refused(with("shared", { url = rs.url, password = 12 }), "shared: password must be a secret handle")
        refused(with("shared", 5), "shared must be a boolean or string or table, got number")
        refused(with("max_entry_bytes", 0), "max_entry_bytes must be >= 1")
        local sem = with("shared", rs.url)
        sem.semantic = "openai/mock-words-embedding"
        refused(sem, "semantic: not with shared")
        -- false is the in-process store
        weft.configure { providers = provider(), models = { ["ok" .. n] = with("shared", false) } }
        weft.model("ok" .. n):complete("q")
        assert.is_true(weft.model("ok" .. n):complete("q").cached)
    end)

    it("the plugin sees whether the cache is shared, not where", function()
        configure()
        local spec = model.policy_spec("a" .. n)
        local cfg = policy.options(spec, spec.entry.plugin).cfg
        assert.are.equal(true, cfg.shared)
        assert.are.equal("table", type(spec.opts.shared))
    end)

    -- last: a stopped Redis leaves the client's connection with late replies
    it("Redis not answering: the call goes to the provider, the error is counted", function()
        local a = configure { timeout = 0.1 }
        a:complete("warm") -- connected
        local before = value("weft_redis_errors_total", { redis = rs.url }) or 0
        assert(os.execute("kill -STOP " .. rs.pid()) == 0)
        local ok, res = pcall(a.complete, a, "while Redis sleeps")
        assert(os.execute("kill -CONT " .. rs.pid()) == 0)
        assert.is_true(ok, tostring(res))
        assert.are.equal("echo: while Redis sleeps", res.text)
        assert.is_nil(res.cached)
        assert.is_true(value("weft_redis_errors_total", { redis = rs.url }) > before)
        assert.is_true(value("weft_redis_errors_total", { redis = rs.url, kind = "timeout" }) > 0)
    end)
end)
