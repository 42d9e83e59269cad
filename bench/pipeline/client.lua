-- client.lua: the weft side of bench/pipeline. N chat completions at
-- concurrency C through the whole pipeline: weft.model -> limiter (request
-- and token limits, estimate reconciled) -> breaker -> retry bookkeeping ->
-- the openai plugin's encode -> weft.http with the key rendered by the host
-- -> classify/decode -> weft.calls (metrics, cost, sampled logs).
--
--   weft run bench/pipeline/client.lua N C MOCK_URL
--   weft run bench/pipeline/client.lua body FILE     (writes the request body it sends)
local PROMPT = "Bring me the travel checklist for a flight to Canada."

if arg[1] == "body" then
    -- the exact body the plugin encodes, for the baseline to send
    local p = require("weft.plugins").load_file(require("weft.plugins").find("provider", "openai"), "provider")
    local cfg = require("weft.plugins").configure(p, {})
    local enc = p.encode("complete", { model = "gpt-4o-mini", max_tokens = 64,
                                       messages = { { role = "user", content = PROMPT } } }, cfg)
    local f = assert(io.open(arg[2], "wb"))
    f:write(weft.json.encode(enc.body))
    f:close()
    return
end

local mode = "pipeline"
if arg[1] == "http" then
    -- the same request through weft.http alone (no pipeline): the middle figure
    mode = table.remove(arg, 1)
end
local N, C, URL = tonumber(arg[1]), tonumber(arg[2]), arg[3]
assert(N and C and URL, "usage: weft run client.lua [http] N C MOCK_URL")

if mode == "http" then
    local p = require("weft.plugins").load_file(require("weft.plugins").find("provider", "openai"), "provider")
    local body = weft.json.encode(p.encode("complete", { model = "gpt-4o-mini", max_tokens = 64,
        messages = { { role = "user", content = PROMPT } } }, require("weft.plugins").configure(p, {})).body)
    local opts = { method = "POST", url = URL .. "/v1/chat/completions", body = body,
                   headers = { ["content-type"] = "application/json", accept = "application/json",
                               authorization = "Bearer " .. weft.mock.DEFAULT_KEYS.openai } }
    local started, done, failed = 0, 0, 0
    local workers = {}
    for i = 1, C do
        workers[i] = function()
            while started < N do
                started = started + 1
                if weft.http.request(opts).status ~= 200 then failed = failed + 1 end
                done = done + 1
            end
        end
    end
    weft.all(workers)
    print(("weft: %d requests, %d failed"):format(done, failed))
    if failed > 0 then os.exit(1) end
    return
end

weft.configure { providers = { openai = {
    base_url = URL, secret = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai),
    limits = { rpm = 1e8, tpm = 1e10 }, retry = { max_attempts = 4 },
} } }
local model = weft.model("openai/gpt-4o-mini", { max_tokens = 64 })
local started, done, failed = 0, 0, 0

local function worker()
    while started < N do
        started = started + 1
        local ok = pcall(model.complete, model, PROMPT)
        if not ok then failed = failed + 1 end
        done = done + 1
    end
end

local t0 = weft.now()
local workers = {}
for i = 1, C do workers[i] = worker end
weft.all(workers)
local dt = weft.now() - t0
print(("weft: %d requests, %d failed, %.0f req/s"):format(done, failed, done / dt))
if failed > 0 then os.exit(1) end
