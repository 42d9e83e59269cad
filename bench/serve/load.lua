-- load.lua: the wrk script of bench/serve, the same client for every leg.
-- POSTs one chat completion per request over keep-alive; after N responses
-- it stops its thread and interrupts wrk's main thread (which otherwise
-- sleeps out -d), so a run is N requests, not a duration. done() prints one
-- line the run script parses:
--   RESULT requests duration_us p50_us p99_us non2xx connect read write timeout
--
--   wrk -t1 -cC -dMAXs -s load.lua URL -- N MODEL [stream] [KEY]
-- N 0: no limit (run for -d; bench/serve holds streams open that way).
-- One thread only (-t1): the count is per thread.
local ffi = require("ffi")
ffi.cdef [[
int kill(int pid, int sig);
int getpid(void);
]]
local SIGINT = 2

local limit, seen = 0, 0
non200 = 0 -- a global: done() reads it with thread:get

function init(args)
    limit = tonumber(args[1]) or 0
    local model = args[2] or "gpt-4o-mini"
    local stream = args[3] == "stream"
    local key = args[4]
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
    wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Bring your passport?"}],'
        .. '"max_tokens":16' .. (stream and ',"stream":true' or '') .. '}'
end

function response(status)
    seen = seen + 1
    if status ~= 200 then non200 = non200 + 1 end
    if seen == limit then
        wrk.thread:stop()
        ffi.C.kill(ffi.C.getpid(), SIGINT) -- wakes the main thread's sleep(-d)
    end
end

-- main state: keep the thread to read its counter of non-200 answers
local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency)
    local bad = 0
    for _, t in ipairs(threads) do bad = bad + (t:get("non200") or 0) end
    local e = summary.errors
    io.write(("RESULT %d %d %d %d %d %d %d %d %d\n"):format(summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99), bad, e.connect, e.read, e.write, e.timeout))
end
