-- fallback_and_race.lua: orchestration by configuration. Three providers,
-- three policy models over them, and a script that only says which model
-- it wants:
--
--   1. smart (fallback): OpenAI, then Anthropic, then Gemini; each step
--      taken for a reason the result's `route` records;
--   2. fast (hedge): Anthropic, and Gemini too when Anthropic has not
--      answered in 100 ms; the first answer wins, the other is cancelled;
--   3. resilient (fallback over hedge): the hedge first, OpenAI when the
--      hedge as a whole fails.
--
--   weft run --summary examples/fallback_and_race.lua ["your question"]
--
-- Providers without their API key in the environment are served by weft's
-- built-in mock (examples/_setup.lua), told to fail the way real providers
-- do: OpenAI answers 429 then 503, Anthropic is slow (400 ms). With keys
-- set, the real services answer and the routes are whatever happened.
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")
local MODELS = setup.MODELS
local OPENAI, ANTHROPIC, GEMINI = "openai/" .. MODELS.openai, "anthropic/" .. MODELS.anthropic,
    "gemini/" .. MODELS.gemini

local question = arg[1] or "What is the capital of France?"

-- Two attempts per provider (a failure is retried once, then the policy
-- takes over), so the story fits in a second.
local retry = { max_attempts = 2, base = 0.05, cap = 0.2 }
weft.configure {
    providers = { openai = { retry = retry }, anthropic = { retry = retry }, gemini = { retry = retry } },
    models = {
        smart = { policy = "fallback", targets = { OPENAI, ANTHROPIC, GEMINI } },
        fast = { policy = "hedge", targets = { ANTHROPIC, GEMINI }, delay = 0.1, budget = 1 },
        resilient = { policy = "fallback", targets = { "fast", OPENAI } },
    },
}
local mock = setup.providers { "openai", "anthropic", "gemini" }
if mock then
    mock:set_faults {
        { dialect = "openai", sequence = { 429, 503 }, retry_after = 0.2 }, -- Retry-After 0.2 s; then fine
        { dialect = "anthropic", latency = 400 },
    }
end

-- One line per target tried: target, why it was called, what came of it;
-- a target that is itself a policy shows its own route below it.
local function show_route(route, indent)
    for _, e in ipairs(route) do
        local how = e.route and "" or e.outcome == "cancelled" and " (lost the race)"
            or (" %d attempt(s), %.0f ms"):format(e.attempts or 0, (e.latency or 0) * 1000)
        print(("%-38s %-11s -> %-9s%s"):format(indent .. e.target, e.reason, e.outcome, how))
        if e.route then show_route(e.route, indent .. "  ") end
    end
end

local function ask(name)
    local t0 = weft.now()
    local ok, r = pcall(weft.model(name).complete, weft.model(name), question)
    if not ok then
        print(("%s: failed after %.0f ms: %s"):format(name, (weft.now() - t0) * 1000, tostring(r)))
        if type(r) == "table" and r.route then show_route(r.route, "  ") end
        return
    end
    print(("%s: %s answered in %.0f ms: %s"):format(name, r.provider, (weft.now() - t0) * 1000, r.text))
    show_route(r.route, "  ")
end

-- what the mock was told, when it serves the providers
local function story(title, faults) print(title .. (mock and (" (" .. faults .. ")") or "") .. ":") end

story("1. fallback", "OpenAI rate-limited, then down")
ask("smart")

story("\n2. hedge", "Anthropic slow")
ask("fast")

if mock then
    -- Anthropic overloaded, Gemini down: the hedge fails as a whole
    mock:set_faults {
        { dialect = "anthropic", probability = { [529] = 1 } },
        { dialect = "gemini", probability = { [503] = 1 } },
    }
end
story("\n3. fallback over hedge", "Anthropic overloaded, Gemini down")
ask("resilient")

-- The ledger: every decision and every call through a policy model, from
-- the metrics registry (also at /metrics with `weft run --metrics`).
local snap = weft.metrics.snapshot()
local function series(metric, fmt, keys)
    local rows = {}
    for _, s in ipairs(snap[metric] and snap[metric].series or {}) do
        local v = {}
        for i, k in ipairs(keys) do v[i] = s.labels[k] end
        v[#v + 1] = s.value
        rows[#rows + 1] = fmt:format(unpack(v))
    end
    table.sort(rows)
    return rows
end
print("\ndecisions (weft_policy_decisions_total{policy, target, reason}):")
print(table.concat(series("weft_policy_decisions_total", "  %-9s %-34s %-11s %d", { "policy", "target", "reason" }), "\n"))
print("calls (weft_policy_calls_total{policy, outcome}): "
    .. table.concat(series("weft_policy_calls_total", "%s %s %d", { "policy", "outcome" }), ", "))
if mock then
    local s = mock:stats()
    print(("mock saw %d requests: %s"):format(s.requests, weft.json.encode(s.by_status, { sort_keys = true })))
end
setup.done()
