-- client.lua: the weft side of bench/redis. Three providers against the
-- same mock with limits that do not bind (rps 1e6): `local` keeps them in
-- the process, `shared` in Redis, `fleet` shares its limits, breaker and
-- retry budget (the breaker checked in the admission script, the retry
-- budget's call counts sent once a second). For each, N calls by C tasks: client CPU per
-- call (os.clock, full GCs around) and the median and p99 call latency (the
-- difference between the two is what admission through Redis adds: the
-- round trip, and the queue of the process's callers in front of it), REPS
-- interleaved repetitions, medians; then Redis's own count of EVALSHA and
-- EVAL calls per shared call.
--   weft run bench/redis/client.lua N C REPS MOCK_URL   (env REDIS_SOCK, REDIS_PW)
local N, C, REPS, URL = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), arg[4]
assert(N and C and REPS and URL, "usage: weft run client.lua N C REPS MOCK_URL")
local redis_url = "unix://" .. assert(os.getenv("REDIS_SOCK"))
local pw = weft.secrets.value("bench-redis", assert(os.getenv("REDIS_PW")))
local key = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai)
weft.configure { providers = {
    ["local"] = { plugin = "openai", base_url = URL, secret = key, limits = { rps = 1e6, tpm = 1e12 } },
    shared = { plugin = "openai", base_url = URL, secret = key,
               limits = { rps = 1e6, tpm = 1e12, shared = { url = redis_url, password = pw } } },
    fleet = { plugin = "openai", base_url = URL, secret = key,
              limits = { rps = 1e6, tpm = 1e12, shared = { url = redis_url, password = pw } },
              breaker = { shared = true }, retry = { shared = true } },
} }
local VARIANTS = { "local", "shared", "fleet" }
local req = { messages = { { role = "user", content = "Say hello" } }, max_tokens = 8 }
local function run(name, n)
    local m = weft.model(name .. "/gpt-4o-mini")
    local left = n
    local waits = {}
    local tasks = {}
    for i = 1, C do
        tasks[i] = weft.spawn(function()
            while left > 0 do
                left = left - 1
                local r = m:complete(req)
                waits[#waits + 1] = r.latency
                assert(r.text == "echo: Say hello")
            end
        end)
    end
    for _, t in ipairs(tasks) do t:wait() end
    return waits
end
local function median(t) table.sort(t) return t[math.floor((#t + 1) / 2)] end
local function p99(t) table.sort(t) return t[math.max(1, math.floor(#t * 0.99))] end
for _, v in ipairs(VARIANTS) do run(v, 500) end -- warm-up
local r = weft.redis.connect { url = redis_url, password = pw }
local function evals()
    local info = r:call("INFO", "commandstats")
    local n = 0
    for cmd, calls in info:gmatch("cmdstat_(%w+):calls=(%d+)") do
        if cmd == "evalsha" or cmd == "eval" then n = n + tonumber(calls) end
    end
    return n
end
local cpu, lat, lat99, trips = {}, {}, {}, {}
for _, v in ipairs(VARIANTS) do cpu[v], lat[v], lat99[v], trips[v] = {}, {}, {}, 0 end
for rep = 1, REPS do
    local order = { VARIANTS[1 + (rep - 1) % 3], VARIANTS[1 + rep % 3], VARIANTS[1 + (rep + 1) % 3] }
    for _, v in ipairs(order) do
        collectgarbage()
        local e0 = evals()
        local c0 = os.clock()
        local w = run(v, N)
        collectgarbage()
        local us = (os.clock() - c0) * 1e6 / N
        trips[v] = trips[v] + evals() - e0
        cpu[v][#cpu[v] + 1] = us
        lat[v][#lat[v] + 1] = median(w) * 1e3
        lat99[v][#lat99[v] + 1] = p99(w) * 1e3
        print(("%d  %-7s %8.2f us CPU/call   call latency median %.3f ms, p99 %.3f ms"):format(rep, v, us,
            lat[v][#lat[v]], lat99[v][#lat99[v]]))
    end
end
local cl, cs, cf = median(cpu["local"]), median(cpu.shared), median(cpu.fleet)
print(("summary (N=%d, C=%d, %d reps, medians): CPU per call local %.2f us, shared %.2f us (+%.2f us, ratio %.2f), "
    .. "fleet %.2f us (+%.2f us, ratio %.2f); call latency median local %.3f ms, shared %.3f ms, fleet %.3f ms; "
    .. "p99 local %.3f ms, shared %.3f ms, fleet %.3f ms"):format(N, C, REPS, cl, cs, cs - cl, cs / cl, cf, cf - cl,
    cf / cl, median(lat["local"]), median(lat.shared), median(lat.fleet), median(lat99["local"]),
    median(lat99.shared), median(lat99.fleet)))
print(("round trips to Redis per call: shared limits %.3f, limits + breaker + retry budget %.3f (target <= 1; "
    .. "the retry budget's call counts go once a second)"):format(trips.shared / (N * REPS), trips.fleet / (N * REPS)))
r:close()
