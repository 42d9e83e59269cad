-- shared_breaker_spec.lua: a provider's breaker shared through Redis
-- (weft.shared_breaker, breaker.shared) against a real redis-server
-- started here. Two providers with the same shared key stand for two
-- processes: when one sees the outage and its breaker opens, the other
-- sends nothing to the provider until the cool-down; then exactly one
-- probe goes out for the fleet, and its success closes the breaker for all.
local model = require "weft.model"
local mockmod = weft.mock

local rs = require "redis_server" ()

describe("shared breaker", function()
    local mock
    setup(function() rs.start() end)
    teardown(function()
        rs.stop()
        rs.remove()
    end)
    before_each(function()
        mock = mockmod.start { port = 0 }
        model.reset()
    end)
    after_each(function() mock:close() end)

    -- with_limits: the limits shared too, on the same Redis: the breaker's
    -- check rides in the admission script
    local function configure(n, cooldown, with_limits)
        local shared = { url = rs.url, password = weft.secrets.value("sb-redis", rs.password), key = "fleet" .. n }
        local providers = {}
        for _, p in ipairs { "a", "b" } do
            providers[p .. n] = { plugin = "openai", base_url = mock.url,
                                  secret = weft.secrets.value("sb-key", mockmod.DEFAULT_KEYS.openai),
                                  retry = { max_attempts = 1 },
                                  limits = with_limits and { rps = 1000, shared = shared } or nil,
                                  breaker = { min_calls = 3, threshold = 0.5, cooldown = cooldown,
                                              shared = with_limits and true or shared } }
        end
        weft.configure { providers = providers }
        return weft.model("a" .. n .. "/gpt-4o-mini"), weft.model("b" .. n .. "/gpt-4o-mini")
    end

    -- the Redis scripts run since `CONFIG RESETSTAT`
    local function scripts_run()
        local r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sb-redis", rs.password) }
        local info = r:call("INFO", "commandstats")
        r:close()
        local c = 0
        for name, calls in info:gmatch("cmdstat_(%w+):calls=(%d+)") do
            if name == "eval" or name == "evalsha" then c = c + tonumber(calls) end
        end
        return c
    end

    local scenario

    it("one process sees the outage: the others send nothing until the cool-down's single probe", function()
        scenario(configure(1, 0.5))
    end)

    it("the same with the limits shared on that Redis: one script call per call for both", function()
        local a, b = configure(2, 0.5, true)
        local inst = require("weft._config").instances["a2"]
        assert.are.equal(inst.shared_breaker, inst.shared.breaker)
        scenario(a, b)
        -- closed again: each call is one script call, the limits' and the breaker's check in one
        local r = weft.redis.connect { url = rs.url, password = weft.secrets.value("sb-redis", rs.password) }
        r:call("CONFIG", "RESETSTAT")
        r:close()
        for i = 1, 5 do a:complete("c" .. i) end
        assert.are.equal(5, scripts_run())
    end)

    scenario = function(a, b)
        mock:set_faults { { sequence = { 503, 503, 503 } } }
        for _ = 1, 3 do
            local ok, err = pcall(a.complete, a, "x")
            assert.is_false(ok)
            assert.are.equal("transient", err.kind)
        end
        local seen = mock:stats().requests
        -- b has seen nothing fail, but the fleet's breaker is open
        local ok, err = pcall(b.complete, b, "x")
        assert.is_false(ok)
        assert.are.equal("circuit_open", err.kind)
        assert.are.equal("shared_breaker", err.reason)
        assert.is_true(err.retry_after > 0 and err.retry_after <= 0.5)
        assert.are.equal(seen, mock:stats().requests) -- nothing sent
        -- after the cool-down: many callers of b at once, one probe reaches the provider
        weft.sleep(err.retry_after + 0.05)
        mock:set_faults { { sequence = { "ok" }, latency = 200 } } -- the probe takes a while: the others ask meanwhile
        local results = {}
        local tasks = {}
        for i = 1, 10 do
            tasks[i] = weft.spawn(function()
                local good, e = pcall(b.complete, b, "probe " .. i)
                results[i] = good and "ok" or e.kind
            end)
        end
        for _, t in ipairs(tasks) do t:wait() end
        local oks, open = 0, 0
        for _, r in ipairs(results) do
            if r == "ok" then oks = oks + 1 elseif r == "circuit_open" then open = open + 1 end
        end
        assert.are.equal(1, oks)
        assert.are.equal(9, open)
        assert.are.equal(seen + 1, mock:stats().requests)
        -- the probe succeeded: closed for every process, a included
        mock:set_faults {}
        assert.are.equal("echo: y", b:complete("y").text)
        assert.are.equal("echo: z", a:complete("z").text)
    end

    it("refuses breaker.shared = true without limits.shared", function()
        local ok, err = pcall(weft.configure, { providers = { x = { plugin = "openai", breaker = { shared = true } } } })
        assert.is_false(ok)
        assert.matches("providers.x.breaker.shared", tostring(err), 1, true)
    end)
end)
