-- router.lua: route each request by rules on the request (tools, size,
-- tags, metadata, priority, a Lua predicate) and on the target's state
-- (breaker, limiter wait, price); the first rule that matches decides.
--
--   weft run examples/policies/router.lua
--
-- The mock: OpenAI answers once, then fails with 503, which opens its
-- circuit breaker (1 failure in 2 calls); from then on the `healthy` rule
-- no longer matches and the default (Gemini) answers. A router does not
-- fail over itself: put it under a fallback for that.
local OPENAI, ANTHROPIC, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"

local mock = weft.mock.start { faults = { { dialect = "openai", sequence = { "ok", 503 } } } }
local providers = {}
for _, p in ipairs { "openai", "anthropic", "gemini" } do
    providers[p] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. p, weft.mock.DEFAULT_KEYS[p]),
                     retry = { max_attempts = 1 }, breaker = { min_calls = 2, threshold = 0.5, cooldown = 30 } }
end
weft.configure { providers = providers, models = {
    routed = { policy = "router", targets = { OPENAI, ANTHROPIC, GEMINI }, default = GEMINI, rules = {
        { name = "tools", target = ANTHROPIC, when = { tools = true } },
        { name = "long", target = GEMINI, when = { tokens_over = 200 } },
        { name = "vip", target = ANTHROPIC, when = { tag = "vip" } },
        { name = "healthy", target = OPENAI, when = { healthy = true } },
    } },
} }

local weather = { { name = "weather", description = "the weather in a city", parameters = { type = "object" } } }
local requests = {
    { "tools", { prompt = "Weather in Paris?", tools = weather } },
    { "long", { prompt = string.rep("a long document ", 100) } },
    { "vip", { prompt = "Hi", tags = { "vip" } } },
    { "plain", "Hi" }, { "plain", "Hi" }, { "plain", "Hi" }, { "plain", "Hi" },
}
for i, q in ipairs(requests) do
    local ok, r = pcall(weft.model("routed").complete, weft.model("routed"), q[2])
    local e = r.route[1] -- an error carries the route too
    print(("%d. %-5s -> rule %-7s -> %s"):format(i, q[1], e.reason, ok and ("answered by " .. r.provider)
        or ("failed: " .. r.kind .. ", HTTP " .. tostring(r.status))))
end

print("decisions (weft_policy_decisions_total{policy=\"routed\"}):")
for _, d in ipairs { { ANTHROPIC, "tools" }, { GEMINI, "long" }, { ANTHROPIC, "vip" }, { OPENAI, "healthy" }, { GEMINI, "default" } } do
    local n = weft.metrics.value("weft_policy_decisions_total", { policy = "routed", target = d[1], reason = d[2] })
    print(("  %-34s %-8s %d"):format(d[1], d[2], n or 0))
end
mock:close()
