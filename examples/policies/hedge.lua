-- hedge.lua: send to the first target; when it has not answered after
-- `delay`, send to the next one too. The first answer wins, the other is
-- cancelled (its transfer stops). `budget` caps the share of calls that
-- may be hedged, so a slow primary cannot double the traffic.
--
--   weft run examples/policies/hedge.lua
--
-- The mock: OpenAI takes 300 ms to answer, Gemini answers at once.
local OPENAI, GEMINI = "openai/gpt-4o-mini", "gemini/gemini-2.0-flash"

local mock = weft.mock.start { faults = { { dialect = "openai", latency = 300 } } }
local providers = {}
for _, p in ipairs { "openai", "gemini" } do
    providers[p] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. p, weft.mock.DEFAULT_KEYS[p]) }
end
weft.configure { providers = providers, models = {
    -- hedges allowed while hedges < budget x calls + 1: here the first two
    fast = { policy = "hedge", targets = { OPENAI, GEMINI }, delay = 0.1, budget = 0.1 },
} }

local count = {}
for i = 1, 4 do
    local t0 = weft.now()
    local r = weft.model("fast"):complete("Hello " .. i)
    count[r.provider] = (count[r.provider] or 0) + 1
    local steps = {}
    for _, e in ipairs(r.route) do steps[#steps + 1] = ("%s %s: %s"):format(e.target:match("^[^/]+"), e.reason, e.outcome) end
    print(("call %d: %-6s in %3.0f ms  [%s]"):format(i, r.provider, (weft.now() - t0) * 1000, table.concat(steps, ", ")))
end

print(("answers: openai %d, gemini %d; the mock saw openai %d, gemini %d requests"):format(count.openai or 0,
    count.gemini or 0, mock:stats().by_dialect.openai or 0, mock:stats().by_dialect.gemini or 0))
print("decisions (weft_policy_decisions_total{policy=\"fast\"}):")
for _, d in ipairs { { OPENAI, "primary" }, { GEMINI, "hedge" }, { GEMINI, "hedge_budget_exhausted" } } do
    local n = weft.metrics.value("weft_policy_decisions_total", { policy = "fast", target = d[1], reason = d[2] })
    print(("  %-24s %-23s %d"):format(d[1], d[2], n or 0))
end
mock:close()
