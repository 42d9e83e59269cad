-- resilience_test.lua: limiter, retry and breaker against weft mock faults.
local t = require "support"
local http, json = weft.http, weft.json
local check, raised = t.check, t.raised

local BODY = json.encode { model = "gpt-4o-mini", messages = { { role = "user", content = "ping" } } }

-- One OpenAI chat call; non-2xx answers become error values.
local function call(mock, key)
    local res = http.request { method = "POST", url = mock.url .. "/v1/chat/completions", body = BODY,
        headers = { authorization = "Bearer " .. (key or "sk-weft-mock"), ["content-type"] = "application/json" } }
    local err = weft.retry.http_error(res, "openai")
    if err then error(err, 0) end
    return res
end

-- 1. 300 calls at 3x the mock's request limit: the limiter holds them to
-- the limit, so no 429 reaches the script and the mock never refuses one.
do
    local mock = weft.mock.start { limits = { rps = 100, rpm = 1e6 } }
    local lim = weft.limiter.new { rps = 90, burst = 10 }
    local policy = weft.retry.policy { base = 0.05, seed = 3 }
    local ok, seen429 = 0, 0
    local fns = {}
    local t0 = weft.now()
    for i = 1, 300 do
        fns[i] = function()
            -- 300 callers at once is 3x the limit (and more than the burst)
            local r = weft.retry.run(policy, function()
                lim:acquire()
                local good, res = pcall(call, mock)
                if not good then
                    if res.status == 429 then seen429 = seen429 + 1 end
                    error(res, 0)
                end
                lim:observe(res.headers, res.status)
                return res
            end)
            if r.status == 200 then ok = ok + 1 end
        end
    end
    weft.all(fns)
    local dt = weft.now() - t0
    local s = mock:stats()
    check(ok == 300, "300 calls at 3x the mock's limit all succeed", ok)
    check(seen429 == 0, "no 429 reaches the script (none happened at all)", seen429)
    check(s.by_status["429"] == nil, "the mock never saw more than its limit", s.by_status["429"])
    check(dt >= (300 - 10) / 90 * 0.99, ("the limiter spread them over at least %.1f s"):format((300 - 10) / 90), dt)
    mock:close()
end

-- 2. A 30% rate of 503s: every call succeeds within the retry budget
-- (three callers: never more than the budget's floor of 3 retries at once).
do
    local mock = weft.mock.start { seed = 11, faults = { { probability = { [503] = 0.3 } } } }
    local budget = weft.retry.budget(0.2, 3)
    local policy = weft.retry.policy { base = 0.01, cap = 0.2, max_attempts = 8, seed = 5, budget = budget }
    local ok, failed = 0, 0
    local workers = {}
    for w = 1, 3 do
        workers[w] = function()
            for _ = 1, 34 do
                local good = pcall(weft.retry.run, policy, function() return call(mock) end)
                if good then ok = ok + 1 else failed = failed + 1 end
            end
        end
    end
    weft.all(workers)
    local s = mock:stats()
    check(ok == 102, "every call succeeds despite 30% of 503s", ok .. " ok, " .. failed .. " failed")
    check((s.by_status["503"] or 0) > 15, "503s really happened", s.by_status["503"])
    check(policy.stats.retries == (s.by_status["503"] or 0), "exactly one retry per 503", policy.stats.retries)
    mock:close()
end

-- 2b. An outage cannot multiply traffic: 40 calls fail at once, the budget
-- lets at most max(3, 20% of 40) retries run; the rest fail without one.
do
    local seq = {}
    for i = 1, 40 do seq[i] = 503 end
    local mock = weft.mock.start { faults = { { sequence = seq } } }
    local budget = weft.retry.budget(0.2, 3)
    local policy = weft.retry.policy { base = 0.05, max_attempts = 4, seed = 9, budget = budget }
    local fns = {}
    for i = 1, 40 do fns[i] = function() pcall(weft.retry.run, policy, function() return call(mock) end) end end
    weft.all(fns)
    local retries = mock:stats().requests - 40
    check(budget:stats().denied >= 30, "the budget denied most retries during the outage", budget:stats().denied)
    check(retries <= 8, "retries stayed within 20% of the calls in flight", retries)
    mock:close()
end

-- 3. A 401 is sent exactly once.
do
    local mock = weft.mock.start {}
    local policy = weft.retry.policy { base = 0.01 }
    local err = raised(weft.retry.run, policy, function() return call(mock, "sk-wrong-key-000000") end)
    check(err and err.kind == "auth" and err.attempts == 1, "a 401 fails with kind auth after one attempt", err)
    check(mock:stats().requests == 1, "the mock received the 401 request exactly once", mock:stats().requests)
    mock:close()
end

-- 4. A run of 500s opens the breaker; the mock receives nothing while open.
do
    local mock = weft.mock.start { faults = { { sequence = { 500, 500, 500, 500, 500, 500, 500, 500 } } } }
    local br = weft.breaker.new { name = "mock", min_calls = 5, threshold = 0.5, window = 10, cooldown = 0.3 }
    local kinds = {}
    for i = 1, 8 do
        local e = raised(br.call, br, call, mock)
        kinds[#kinds + 1] = e and e.kind
    end
    check(br:state().state == "open", "five 500s open the breaker", br:state().state)
    check(mock:stats().requests == 5, "the mock received nothing while the breaker was open", mock:stats().requests)
    check(kinds[6] == "circuit_open" and kinds[8] == "circuit_open", "calls fail fast with circuit_open", table.concat(kinds, ","))
    weft.sleep(0.3)
    mock:set_faults {}
    local r = br:call(call, mock)
    check(r.status == 200 and br:state().state == "closed", "after the cool-down a probe closes it", br:state().state)
    mock:close()
end

-- 5. Retry-After 2 s is waited (not less) before the next attempt.
do
    local mock = weft.mock.start { faults = { { sequence = { 429 }, retry_after = 2 } } }
    local policy = weft.retry.policy { base = 0.01 }
    local r = weft.retry.run(policy, function() return call(mock) end)
    local log = mock:requests()
    local gap = log[2].time - log[1].time
    check(r.status == 200 and #log == 2, "the call succeeds on the second attempt", #log)
    check(gap >= 2.0, "the second attempt came at least Retry-After 2 s later", gap)
    -- a hint beyond the deadline fails at once with rate_limited and the wait
    mock:set_faults { { sequence = { 429 }, retry_after = 5 } }
    local before = mock:stats().requests
    local err = raised(weft.retry.run, policy, function() return call(mock) end, { timeout = 2 })
    check(err and err.kind == "rate_limited" and err.retry_after >= 5, "a wait beyond the deadline fails as rate_limited", err)
    check(mock:stats().requests - before == 1, "...at once: no second attempt was made", mock:stats().requests - before)
    mock:close()
end

-- 6. A limiter with 10,000 queued tasks waits on a timer: no CPU spent.
do
    local lim = weft.limiter.new { rpd = 1 } -- one call, then nothing for a day
    lim:acquire()
    local tasks = {}
    for i = 1, 10000 do tasks[i] = weft.spawn(function() lim:acquire(1, { priority = "low" }) end) end
    weft.sleep(0.05) -- all queued
    check(lim:state().queued == 10000, "10,000 tasks wait in the limiter", lim:state().queued)
    local c0 = os.clock()
    weft.sleep(0.5)
    local cpu = os.clock() - c0
    print(("# CPU while 10,000 tasks waited 0.5 s: %.4f s"):format(cpu))
    check(cpu < 0.1, "waiting uses no CPU (timer-driven, no polling)", cpu)
    for i = 1, #tasks do tasks[i]:cancel() end
    weft.sleep(0)
    check(lim:state().queued == 0, "cancelled waiters leave the queue", lim:state().queued)
end

t.done()
