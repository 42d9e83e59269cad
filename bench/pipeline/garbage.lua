-- garbage.lua: what one call allocates on the Lua heap, for the whole
-- pipeline (weft.model(...):complete) and for the same request through
-- weft.http alone: N sequential calls with the collector stopped, after a
-- warm-up (series, plugin copies and connections made), the heap's growth
-- divided by N. Sequential calls keep what is held in flight out of it:
-- this is the garbage a call leaves (the target of issue 19: <= 2 KB),
-- and the allocations it took (weft._budget.blocks: objects and their
-- parts; each costs the allocator and the collector).
--   weft run bench/pipeline/garbage.lua MOCK_URL [N]
local URL, N = arg[1], tonumber(arg[2] or 10000)
assert(URL, "usage: weft run garbage.lua MOCK_URL [N]")
local PROMPT = "Bring me the travel checklist for a flight to Canada."
weft.configure { providers = { openai = {
    base_url = URL, secret = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai),
    limits = { rpm = 1e8, tpm = 1e10 }, retry = { max_attempts = 4 },
} } }
local model = weft.model("openai/gpt-4o-mini", { max_tokens = 64 })
local body = weft.json.encode { model = "gpt-4o-mini", max_tokens = 64, messages = { { role = "user", content = PROMPT } } }
local opts = { method = "POST", url = URL .. "/v1/chat/completions", body = body,
               headers = { ["content-type"] = "application/json",
                           authorization = "Bearer " .. weft.mock.DEFAULT_KEYS.openai } }

local blocks = require("weft._budget").blocks
local function per_call(fn)
    for _ = 1, 1000 do fn() end
    collectgarbage()
    collectgarbage()
    collectgarbage("stop")
    local k0, b0 = collectgarbage("count"), blocks()
    for _ = 1, N do fn() end
    local grown, made = collectgarbage("count") - k0, blocks() - b0
    collectgarbage("restart")
    return grown * 1024 / N, made / N
end
local p, pb = per_call(function() model:complete(PROMPT) end)
local h, hb = per_call(function() weft.http.request(opts) end)
print(("garbage per call (N=%d, sequential): pipeline %.0f bytes in %.1f allocations, weft.http alone %.0f bytes in %.1f (target: pipeline <= 2048 bytes)")
    :format(N, p, pb, h, hb))
