-- client.lua: the weft side of bench/cache. In one process, CPU per call of
--   provider  weft.model("openai/gpt-4o-mini"): the whole pipeline to the mock
--   hit       the same completion through a `cache` policy model, answered
--             from the cache (one miss before the timing)
-- N calls per measurement by one task, REPS interleaved repetitions, process
-- CPU (os.clock) from a full GC before to a full GC after; medians printed
-- with the ratio provider/hit.
--   weft run bench/cache/client.lua N REPS MOCK_URL
local N, REPS, URL = tonumber(arg[1]), tonumber(arg[2]), arg[3]
assert(N and REPS and URL, "usage: weft run client.lua N REPS MOCK_URL")
local PROMPT = "Bring me the travel checklist for a flight to Canada."
weft.configure {
    providers = { openai = { base_url = URL, secret = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai),
                             limits = { rpm = 1e8, tpm = 1e10 } } },
    models = { faq = { policy = "cache", targets = { "openai/gpt-4o-mini" }, ttl = 3600 } },
}
local models = { provider = weft.model("openai/gpt-4o-mini"), hit = weft.model("faq") }
local req = { messages = { { role = "user", content = PROMPT } }, max_tokens = 64 }
local function run(m, n)
    for _ = 1, n do
        local r = m:complete(req)
        assert(r.text == "echo: " .. PROMPT)
    end
end
-- warm-up (and the one miss)
run(models.provider, 200)
run(models.hit, 200)
local times = { provider = {}, hit = {} }
for rep = 1, REPS do
    for _, v in ipairs(rep % 2 == 1 and { "provider", "hit" } or { "hit", "provider" }) do
        collectgarbage()
        local c0 = os.clock()
        run(models[v], N)
        collectgarbage()
        local us = (os.clock() - c0) * 1e6 / N
        times[v][#times[v] + 1] = us
        print(("%d  %-8s %8.2f us/call"):format(rep, v, us))
    end
end
local function median(t)
    table.sort(t)
    return t[math.floor((#t + 1) / 2)]
end
local p, h = median(times.provider), median(times.hit)
print(("summary (N=%d, %d reps, medians): provider call %.2f us, cache hit %.2f us (CPU), %.1fx cheaper"):format(
    N, REPS, p, h, p / h))
local hits = weft.metrics.value("weft_cache_requests_total", { cache = "faq", result = "hit" })
print(("checks: cache hits %d, misses %d"):format(hits or 0,
    weft.metrics.value("weft_cache_requests_total", { cache = "faq", result = "miss" }) or 0))
