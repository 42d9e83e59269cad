-- priority.lua: high-priority requests go to the targets kept for them,
-- the rest to the cheapest of the others (by the providers' price
-- tables), whose limiter queue serves "normal" before "low".
--
--   weft run examples/policies/priority.lua
--
-- Anthropic is the reserved target; Gemini (cheaper than OpenAI) is held
-- to 5 requests a second; the mock fails Gemini's last two answers (503),
-- and the request moves on to OpenAI.
local OPENAI, ANTHROPIC, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"

local mock = weft.mock.start { faults = { { dialect = "gemini", sequence = { "ok", "ok", "ok", "ok", "ok", 503, 503 } } } }
local providers = {}
for _, p in ipairs { "openai", "anthropic", "gemini" } do
    providers[p] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. p, weft.mock.DEFAULT_KEYS[p]),
                     retry = { max_attempts = 2, base = 0.01, cap = 0.05 } }
end
providers.gemini.limits = { rps = 5, burst = 1 }
weft.configure { providers = providers, models = {
    tiered = { policy = "priority", high = { ANTHROPIC }, targets = { ANTHROPIC, OPENAI, GEMINI } },
} }
local m = weft.model("tiered")

print("high:  " .. m:complete({ prompt = "page the on-call", priority = "high" }).provider)
m:complete({ prompt = "warm up", priority = "low" }) -- takes Gemini's one token: the next ones queue
local order, tasks = {}, {}
for _, p in ipairs { "low", "low", "low", "normal" } do
    tasks[#tasks + 1] = weft.spawn(function()
        local r = m:complete { prompt = p, priority = p }
        order[#order + 1] = p .. " (" .. r.provider .. ")"
    end)
    weft.sleep(0) -- the low ones queue first
end
for _, t in ipairs(tasks) do t:wait() end
print("queued on the cheapest, in the order served: " .. table.concat(order, ", "))
local r = m:complete { prompt = "Gemini is down now", priority = "normal" }
print(("normal: %s, after %s on %s"):format(r.provider, r.route[1].outcome, r.route[1].target))

print("decisions (weft_policy_decisions_total{policy=\"tiered\"}):")
for _, d in ipairs { { ANTHROPIC, "high_priority" }, { GEMINI, "cheapest" }, { OPENAI, "after_transient" } } do
    local n = weft.metrics.value("weft_policy_decisions_total", { policy = "tiered", target = d[1], reason = d[2] })
    print(("  %-34s %-15s %d"):format(d[1], d[2], n or 0))
end
mock:close()
