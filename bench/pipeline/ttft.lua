-- ttft.lua: what the pipeline adds to a stream's time to first token, over
-- the same streamed request through weft.http alone: N sequential streams
-- of each (alternating), the time from the call to the first text piece
-- (the pipeline's first on_event; weft.http's first body chunk holding a
-- content delta), p50 and p90 of each and of the difference of medians
-- (issue 19's target: the pipeline adds <= 30 us at p50).
--   weft run bench/pipeline/ttft.lua MOCK_URL [N]
local URL, N = arg[1], tonumber(arg[2] or 500)
assert(URL, "usage: weft run ttft.lua MOCK_URL [N]")
local PROMPT = "Bring me the travel checklist for a flight to Canada."
weft.configure { providers = { openai = {
    base_url = URL, secret = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai),
    limits = { rpm = 1e8, tpm = 1e10 }, retry = { max_attempts = 1 },
} } }
local model = weft.model("openai/gpt-4o-mini", { max_tokens = 64 })
local body = weft.json.encode { model = "gpt-4o-mini", max_tokens = 64, stream = true,
                                messages = { { role = "user", content = PROMPT } } }
local now = weft.now

local function pipeline_ttft()
    local t0, first = now(), nil
    model:stream(PROMPT, function(ev)
        if not first and ev.type == "text" then first = now() end
    end)
    return first - t0
end

local function http_ttft()
    local t0, first = now(), nil
    weft.http.request { method = "POST", url = URL .. "/v1/chat/completions", body = body,
        headers = { ["content-type"] = "application/json", accept = "text/event-stream",
                    authorization = "Bearer " .. weft.mock.DEFAULT_KEYS.openai },
        on_data = function(chunk)
            if not first and chunk:find('"content"', 1, true) then first = now() end
        end }
    return first - t0
end

local function pct(t, p)
    table.sort(t)
    return t[math.max(1, math.ceil(#t * p))]
end
for _ = 1, 50 do pipeline_ttft() http_ttft() end -- warm-up
local p, h = {}, {}
for i = 1, N do
    p[i] = pipeline_ttft()
    h[i] = http_ttft()
end
local p50p, p50h = pct(p, 0.5), pct(h, 0.5)
print(("time to first token (N=%d sequential each): pipeline p50 %.1f us, p90 %.1f us; weft.http p50 %.1f us, "
    .. "p90 %.1f us; the pipeline adds %.1f us at p50 (target <= 30)"):format(N, p50p * 1e6, pct(p, 0.9) * 1e6,
    p50h * 1e6, pct(h, 0.9) * 1e6, (p50p - p50h) * 1e6))
