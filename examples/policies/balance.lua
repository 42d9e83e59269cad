-- balance.lua: spread calls over equivalent targets: by weight, round
-- robin, fewest in flight, lowest latency or most quota headroom; skip a
-- target whose breaker is open, and fail over once after a failure.
--
--   weft run examples/policies/balance.lua
--
-- The mock: Anthropic's first two answers are 503 (one call with its
-- retry); OpenAI takes 20 ms, Gemini answers at once.
local OPENAI, ANTHROPIC, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"

local mock = weft.mock.start { faults = {
    { dialect = "anthropic", sequence = { 503, 503 } },
    { dialect = "openai", latency = 20 },
} }
local providers = {}
for _, p in ipairs { "openai", "anthropic", "gemini" } do
    providers[p] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. p, weft.mock.DEFAULT_KEYS[p]),
                     retry = { max_attempts = 2, base = 0.01, cap = 0.05 } }
end
weft.configure { providers = providers, models = {
    spread = { policy = "balance", strategy = "weighted",
               targets = { { model = GEMINI, weight = 3 }, { model = ANTHROPIC, weight = 1 } } },
    quick = { policy = "balance", strategy = "latency", explore = 0.05, targets = { OPENAI, GEMINI } },
} }

local function run(name, n)
    local count = {}
    for i = 1, n do
        local r = weft.model(name):complete("Hello " .. i)
        count[r.provider] = (count[r.provider] or 0) + 1
    end
    local parts = {}
    for p, c in pairs(count) do parts[#parts + 1] = ("%s %d"):format(p, c) end
    table.sort(parts)
    print(("%s: %d calls answered by %s"):format(name, n, table.concat(parts, ", ")))
end

local function decisions(policy, list)
    for _, d in ipairs(list) do
        local n = weft.metrics.value("weft_policy_decisions_total", { policy = policy, target = d[1], reason = d[2] })
        print(("  %-34s %-14s %d"):format(d[1], d[2], n or 0))
    end
end

run("spread", 400) -- weights 3:1; the call that met Anthropic's 503s failed over to Gemini
decisions("spread", { { GEMINI, "weighted" }, { ANTHROPIC, "weighted" }, { GEMINI, "failover" } })
run("quick", 100) -- each target measured once, then the faster one, 5% exploring
decisions("quick", { { OPENAI, "unmeasured" }, { GEMINI, "lowest_latency" }, { OPENAI, "explore" } })
mock:close()
