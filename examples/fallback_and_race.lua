-- fallback_and_race.lua: two everyday orchestration patterns against the
-- built-in mock provider (started here, so no API key is needed):
--
--   1. fallback: ask OpenAI; on a rate limit or an outage move on to
--      Anthropic, then Gemini, saying why each step was taken;
--   2. race: ask all three at once, keep the first answer, cancel the rest,
--      and never wait more than 2 s.
--
--   weft run --summary examples/fallback_and_race.lua ["your question"]
--
-- The mock is told to fail the way real providers do: OpenAI answers 429
-- (with Retry-After) then 503, Anthropic is slow (400 ms).
local http, json = weft.http, weft.json

local question = arg[1] or "What is the capital of France?"

local mock = weft.mock.start {
    faults = {
        { dialect = "openai", sequence = { 429, 503 } },
        { dialect = "anthropic", latency = 400 },
    },
}
local keys = weft.mock.DEFAULT_KEYS

-- One call per dialect, returning {text=, input=, output=}. Any non-200 is
-- raised as an error value saying what the provider answered.
local function post(url, headers, body)
    headers["content-type"] = "application/json"
    local res = http.request { method = "POST", url = url, headers = headers,
                               body = json.encode(body), timeout = 10 }
    if res.status ~= 200 then
        local kind = (res.status == 429 or res.status >= 500) and "transient" or "invalid_request"
        error(weft.error.new(kind, ("HTTP %d%s"):format(res.status,
            res.headers["retry-after"] and (", retry after " .. res.headers["retry-after"] .. " s") or ""),
            { status = res.status }), 0)
    end
    return json.decode(res.body)
end

local providers = {
    { name = "openai", model = "gpt-4o-mini", ask = function(q)
        local v = post(mock.url .. "/v1/chat/completions", { authorization = "Bearer " .. keys.openai },
            { model = "gpt-4o-mini", messages = { { role = "user", content = q } } })
        return { text = v.choices[1].message.content, input = v.usage.prompt_tokens, output = v.usage.completion_tokens }
    end },
    { name = "anthropic", model = "claude-3-5-haiku-latest", ask = function(q)
        local v = post(mock.url .. "/v1/messages", { ["x-api-key"] = keys.anthropic, ["anthropic-version"] = "2023-06-01" },
            { model = "claude-3-5-haiku-latest", max_tokens = 256, messages = { { role = "user", content = q } } })
        return { text = v.content[1].text, input = v.usage.input_tokens, output = v.usage.output_tokens }
    end },
    { name = "gemini", model = "gemini-2.0-flash", ask = function(q)
        local v = post(mock.url .. "/v1beta/models/gemini-2.0-flash:generateContent", { ["x-goog-api-key"] = keys.gemini },
            { contents = { { role = "user", parts = { { text = q } } } } })
        return { text = v.candidates[1].content.parts[1].text, input = v.usageMetadata.promptTokenCount,
                 output = v.usageMetadata.candidatesTokenCount }
    end },
}

-- Every ask is recorded as a call (metrics, logs with a call id, and the
-- table `weft run --summary` prints at exit), priced in USD per 1M tokens.
weft.calls.set_prices("openai", { ["gpt-4o-mini"] = { input = 0.15, output = 0.60 } })
weft.calls.set_prices("anthropic", { ["claude-3-5-haiku-latest"] = { input = 0.80, output = 4.00 } })
weft.calls.set_prices("gemini", { ["gemini-2.0-flash"] = { input = 0.10, output = 0.40 } })
local function ask(p, q)
    local call = weft.calls.begin { provider = p.name, model = p.model, operation = "chat" }
    call:attempt()
    local ok, r = pcall(p.ask, q)
    if ok then call:usage(r.input, r.output) end
    call:finish(not ok and r or nil)
    if not ok then error(r, 0) end
    return r
end

-- 1. Fallback chain
print("fallback:")
for _, p in ipairs(providers) do
    local t0 = weft.now()
    local ok, r = pcall(ask, p, question)
    local ms = (weft.now() - t0) * 1000
    if ok then
        print(("  %-9s answered in %4.0f ms (%d tokens in, %d out): %s"):format(p.name, ms, r.input, r.output, r.text))
        break
    end
    print(("  %-9s failed in %4.0f ms: %s -> next"):format(p.name, ms, tostring(r)))
end

-- 2. Race: first good answer wins, the others are cancelled
local attempts = {}
for i, p in ipairs(providers) do attempts[i] = function() return ask(p, question), p.name end end
local t0 = weft.now()
local r, i = weft.timeout(2, function() return weft.any(attempts) end)
print(("race:\n  %-9s won in %4.0f ms: %s"):format(providers[i].name, (weft.now() - t0) * 1000, r.text))

local s = mock:stats()
print(("mock saw %d requests: %s"):format(s.requests, json.encode(s.by_status, { sort_keys = true })))
mock:close()
