-- inflight.lua: memory per in-flight pipeline call. N calls through the
-- whole pipeline (weft.model(...):complete) are held open at once by a
-- `weft mock` answering with the "hang" fault (it never answers), and the
-- client's resident set is compared with what it was before they started
-- (issue 19's target: <= 22 KiB per in-flight call). The same for
-- weft.http alone. The calls are cancelled at the end. N defaults to 5,000
-- (issue 19), more than `weft mock` takes from one address by default (a
-- quarter of its 10,000 connections): start it with --max-connections
-- above N (run.sh does).
-- One variant a process (what a process has freed and not given back
-- would count for the next one):
--   weft run bench/pipeline/inflight.lua MOCK_URL pipeline|http [N]   (the mock's faults are set here)
local URL, MODE, N = arg[1], arg[2], tonumber(arg[3] or 5000)
weft.log.level("error") -- the cancelled calls' lines
assert(URL and (MODE == "pipeline" or MODE == "http"), "usage: weft run inflight.lua MOCK_URL pipeline|http [N]")
local PROMPT = "Bring me the travel checklist for a flight to Canada."
weft.configure { providers = { openai = {
    base_url = URL, secret = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai),
    limits = { rpm = 1e8, tpm = 1e10 }, retry = { max_attempts = 1 }, timeout = 600,
} } }
local model = weft.model("openai/gpt-4o-mini", { max_tokens = 64 })
local body = weft.json.encode { model = "gpt-4o-mini", max_tokens = 64, messages = { { role = "user", content = PROMPT } } }
local hopts = { method = "POST", url = URL .. "/v1/chat/completions", body = body, timeout = 600,
                headers = { ["content-type"] = "application/json",
                            authorization = "Bearer " .. weft.mock.DEFAULT_KEYS.openai } }

local function rss_kib()
    local f = assert(io.open("/proc/self/status"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)"))
end
local function mock(method, path, b)
    return weft.http.request { method = method, url = URL .. path, body = b }
end
-- (the stats request itself is one of the mock's requests in flight)
local function in_flight() return weft.json.decode(mock("GET", "/_mock/stats").body).in_flight - 1 end

local function measure(name, call)
    mock("POST", "/_mock/faults", "[]")
    for _ = 1, 200 do call() end -- warm-up (answered)
    collectgarbage()
    collectgarbage()
    local before = rss_kib()
    -- every request hangs: a sequence of N "hang"s
    local seq = {}
    for i = 1, N do seq[i] = '"hang"' end
    mock("POST", "/_mock/faults", '[{"endpoint":"chat","sequence":[' .. table.concat(seq, ",") .. ']}]')
    -- (requests an earlier run left hanging at the mock are not this run's)
    local base = in_flight()
    local tasks = {}
    for i = 1, N do tasks[i] = weft.spawn(function() pcall(call) end) end
    local deadline = weft.now() + 120
    local held = 0
    while held < N and weft.now() < deadline do
        weft.sleep(0.1)
        held = in_flight() - base
    end
    local during = rss_kib()
    print(("%-10s RSS before %d KiB, with %d in flight %d KiB: %.1f KiB per in-flight call"):format(name, before,
        held, during, (during - before) / held))
    for _, t in ipairs(tasks) do t:cancel() end
    for _, t in ipairs(tasks) do pcall(t.wait, t) end
    mock("POST", "/_mock/faults", "[]")
    return (during - before) / held
end
local calls = { pipeline = function() return model:complete(PROMPT) end,
                http = function() return weft.http.request(hopts) end }
local per = measure(MODE == "http" and "weft.http" or MODE, calls[MODE])
print(("memory per in-flight call (N=%d): %s %.1f KiB%s"):format(N, MODE == "http" and "weft.http" or MODE, per,
    MODE == "pipeline" and " (target <= 22 KiB)" or ""))
