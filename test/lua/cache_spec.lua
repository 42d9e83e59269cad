-- cache_spec.lua: the cache policy (plugins/policies/cache.lua, api.cached
-- in lua/weft/policy.lua, the store in lua/weft/cache.lua) against weft
-- mock, with exact counts: hits, single flight, errors never cached,
-- streams replayed, bypass and refresh, the key, TTL and LRU bounds.
local model = require "weft.model"
local policy = require "weft.policy"
local mockmod = weft.mock
local value = weft.metrics.value

describe("cache policy", function()
    local mock, n = nil, 0
    local name
    before_each(function()
        mock = mockmod.start { port = 0, limits = { rpm = 1e9, tpm = 1e12 } }
        model.reset()
        policy.reset()
        n = n + 1
        name = "cached" .. n
        weft.configure {
            providers = { openai = { base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
                                     secret = weft.secrets.value("cache-" .. n, mockmod.DEFAULT_KEYS.openai) } },
            models = { [name] = { policy = "cache", targets = { "openai/gpt-4o-mini" }, ttl = 60, max_entries = 3 } },
        }
    end)
    after_each(function() mock:close() end)

    local function count(result) return value("weft_cache_requests_total", { cache = name, result = result }) or 0 end

    it("100 identical calls: one provider request, hit rate 0.99", function()
        local m = weft.model(name)
        for i = 1, 100 do
            local r = m:complete("What are your opening hours?")
            assert.are.equal("echo: What are your opening hours?", r.text)
            assert.are.equal(i > 1 or nil, r.cached)
        end
        assert.are.equal(1, mock:stats().requests)
        assert.are.equal(99, count("hit"))
        assert.are.equal(1, count("miss"))
        assert.are.equal(0.99, count("hit") / (count("hit") + count("miss")))
        assert.matches(name .. "%s+cache%s+100.*0%.99", weft.calls.summary())
    end)

    it("10 identical calls at once: one provider request", function()
        mock:set_faults { { dialect = "openai", latency = 100 } }
        local m = weft.model(name)
        local tasks, texts = {}, {}
        for i = 1, 10 do tasks[i] = weft.spawn(function() texts[i] = m:complete("same").text end) end
        for _, t in ipairs(tasks) do t:wait() end
        assert.are.equal(1, mock:stats().requests)
        for i = 1, 10 do assert.are.equal("echo: same", texts[i]) end
        assert.are.equal(9, count("hit"))
    end)

    it("never caches an error", function()
        mock:set_faults { { dialect = "openai", sequence = { 503 } } }
        local m = weft.model(name)
        assert.is_false((pcall(m.complete, m, "x")))
        assert.are.equal("echo: x", m:complete("x").text)
        assert.are.equal(2, mock:stats().requests)
        assert.is_true(m:complete("x").cached)
        assert.are.equal(2, mock:stats().requests)
    end)

    it("replays a stream's events from the cache", function()
        local m = weft.model(name)
        local first, second = {}, {}
        m:stream("one two three four", function(ev) first[#first + 1] = ev.type .. ":" .. tostring(ev.text) end)
        local r = m:stream("one two three four", function(ev) second[#second + 1] = ev.type .. ":" .. tostring(ev.text) end)
        assert.are.same(first, second)
        assert.is_true(#first > 2)
        assert.is_true(r.cached)
        assert.are.equal("echo: one two three four", r.text)
        assert.are.equal(1, mock:stats().requests)
    end)

    it("cache = false bypasses it; cache = \"refresh\" asks again and keeps the new answer", function()
        local m = weft.model(name)
        m:complete("q")
        m:complete { prompt = "q", cache = false }
        assert.are.equal(2, mock:stats().requests)
        assert.are.equal(1, count("bypass"))
        m:complete { prompt = "q", cache = "refresh" }
        assert.are.equal(3, mock:stats().requests)
        assert.is_true(m:complete("q").cached)
        assert.are.equal(3, mock:stats().requests)
        assert.has_error(function() m:complete { prompt = "q", cache = "sometimes" } end)
    end)

    it("keys on what decides the answer, not on the id, priority or tags", function()
        local m = weft.model(name)
        m:complete { prompt = "k", id = "a", priority = "high", tags = { "x" } }
        assert.is_true(m:complete({ prompt = "k", id = "b", priority = "low" }).cached)
        assert.is_nil(m:complete({ prompt = "k", temperature = 0.5 }).cached)
        assert.are.equal(2, mock:stats().requests)
    end)

    it("keeps at most max_entries answers, the least recently used going first", function()
        local m = weft.model(name)
        for _, q in ipairs { "a", "b", "c", "d" } do m:complete(q) end -- "a" is evicted
        assert.are.equal(4, mock:stats().requests)
        assert.is_true(m:complete("d").cached)
        assert.is_nil(m:complete("a").cached)
        assert.are.equal(5, mock:stats().requests)
    end)

    it("forgets an answer after its time to live (an injected clock)", function()
        local t = 1000
        local cache = require "weft.cache"
        local real = cache.now
        cache.now = function() return t end -- the store is made on the first call
        weft.configure { models = { [name] = { policy = "cache", targets = { "openai/gpt-4o-mini" }, ttl = 60 } } }
        local m = weft.model(name)
        local ok, err = pcall(function()
            m:complete("t")
            t = t + 59.9
            assert.is_true(m:complete("t").cached)
            t = t + 0.2
            assert.is_nil(m:complete("t").cached)
            assert.are.equal(2, mock:stats().requests)
        end)
        cache.now = real
        assert(ok, err)
    end)

    it("a shared call that fails fails every caller waiting on it, and nothing is cached", function()
        mock:set_faults { { dialect = "openai", sequence = { 400 }, latency = 100 } }
        local m = weft.model(name)
        local res, tasks = {}, {}
        for i = 1, 4 do tasks[i] = weft.spawn(function() res[i] = { pcall(m.complete, m, "same") } end) end
        for _, tk in ipairs(tasks) do tk:wait() end
        for i = 1, 4 do
            assert.is_false(res[i][1])
            assert.are.equal("invalid_request", res[i][2].kind)
        end
        assert.are.equal(1, mock:stats().requests)
        assert.is_nil(m:complete("same").cached)
        assert.are.equal(2, mock:stats().requests)
    end)

    it("a caller cancelled while it waits on a shared call leaves the others their answer", function()
        mock:set_faults { { dialect = "openai", latency = 200 } }
        local m = weft.model(name)
        local leader = weft.spawn(function() return m:complete("wait").text end)
        local follower = weft.spawn(function() return m:complete("wait").text end)
        for _ = 1, 200 do
            if mock:stats().in_flight == 1 then break end
            weft.sleep(0.005)
        end
        follower:cancel()
        assert.are.equal("cancelled", select(2, pcall(follower.wait, follower)).kind)
        assert.are.equal("echo: wait", leader:wait())
        assert.are.equal(1, mock:stats().requests)
    end)
end)

describe("cache policy, semantic mode", function()
    local mock
    before_each(function()
        mock = mockmod.start { port = 0, limits = { rpm = 1e9, tpm = 1e12 } }
        model.reset()
        policy.reset()
    end)
    after_each(function() mock:close() end)

    it("answers a close question from the cache, a different one from the provider", function()
        local name = "semantic" .. os.time() .. math.random(1e6)
        weft.configure {
            providers = { openai = { base_url = mock.url, breaker = false,
                                     secret = weft.secrets.value("sem-" .. name, mockmod.DEFAULT_KEYS.openai) } },
            -- mock-words-embedding: texts sharing words are close
            models = { [name] = { policy = "cache", targets = { "openai/gpt-4o-mini" },
                                  semantic = "openai/mock-words-embedding", threshold = 0.9 } },
        }
        local m = weft.model(name)
        local a = m:complete("What are the opening hours of the Paris store on Sunday")
        assert.is_nil(a.cached)
        -- the same words, another order and case: the same question
        local b = m:complete("what are the opening hours of the paris store on sunday?")
        assert.is_true(b.cached)
        assert.are.equal(a.text, b.text)
        assert.are.equal("cache_semantic", b.route[1].reason)
        assert.is_true(b.route[1].similarity >= 0.9)
        -- another question entirely
        local c = m:complete("Translate good morning into German")
        assert.is_nil(c.cached)
        assert.are.equal(2, mock:stats().by_endpoint["openai chat"])
        assert.are.equal(3, mock:stats().by_model["mock-words-embedding"])
        assert.are.equal(1, value("weft_cache_requests_total", { cache = name, result = "hit" }))
        -- the embedding calls are the model's usage too
        assert.is_true(m:usage().input_tokens > a.usage.input + c.usage.input)
    end)
end)
