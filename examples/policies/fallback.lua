-- fallback.lua: an ordered chain; the next target is tried when the one
-- before fails in a way another provider may not (rate limit, outage,
-- timeout, open breaker, quota). Runs against weft's mock, no key needed:
--
--   weft run examples/policies/fallback.lua
--
-- The mock: OpenAI always answers 429 (rate-limited), Anthropic's first
-- two answers are 503 (one call with its retry), Gemini is fine; at the
-- end OpenAI rejects the key (401): auth never falls back by default.
local OPENAI, ANTHROPIC, GEMINI = "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash"

local mock = weft.mock.start { faults = {
    { dialect = "openai", probability = { [429] = 1 }, retry_after = 0.05 },
    { dialect = "anthropic", sequence = { 503, 503 } },
} }
local providers = {}
for _, p in ipairs { "openai", "anthropic", "gemini" } do
    providers[p] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. p, weft.mock.DEFAULT_KEYS[p]),
                     retry = { max_attempts = 2, base = 0.01, cap = 0.05 } }
end
weft.configure { providers = providers, models = {
    smart = { policy = "fallback", targets = { OPENAI, ANTHROPIC, GEMINI } },
} }

local escalations = {} -- an auth failure raises the `escalate` event
weft.on("escalate", function(ev) escalations[#escalations + 1] = ev.target .. " " .. ev.kind end)

local count = {}
for i = 1, 4 do
    local r = weft.model("smart"):complete("Hello " .. i)
    count[r.provider] = (count[r.provider] or 0) + 1
    local steps = {}
    for _, e in ipairs(r.route) do
        steps[#steps + 1] = ("%s (%s: %s, %d attempt(s))"):format(e.target:match("^[^/]+"), e.reason, e.outcome, e.attempts or 0)
    end
    print(("call %d: %-9s <- %s"):format(i, r.provider, table.concat(steps, " -> ")))
end

mock:set_faults { { dialect = "openai", sequence = { 401 } } }
local ok, err = pcall(weft.model("smart").complete, weft.model("smart"), "Hello 5")
print(("call 5: %s, route: %d target(s), escalated: %s"):format(ok and "answered" or err.kind, ok and 0 or #err.route,
    table.concat(escalations, ", ")))

print(("answers: openai %d, anthropic %d, gemini %d"):format(count.openai or 0, count.anthropic or 0, count.gemini or 0))
print("decisions (weft_policy_decisions_total{policy=\"smart\"}):")
for _, d in ipairs { { OPENAI, "first" }, { ANTHROPIC, "rate_limited" }, { GEMINI, "transient" } } do
    local n = weft.metrics.value("weft_policy_decisions_total", { policy = "smart", target = d[1], reason = d[2] })
    print(("  %-34s %-13s %d"):format(d[1], d[2], n or 0))
end
local u = weft.model("smart"):usage()
print(("usage: %d calls, %d errors, %d tokens in"):format(u.calls, u.errors, u.input_tokens))
mock:close()
