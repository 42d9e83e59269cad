-- rss_test.lua: memory per in-flight request. 5,000 requests are held open
-- at once by a server in another process; weft's resident set may grow by at
-- most 32 KiB per in-flight request (raw libcurl-multi: about 16 KiB).
local t = require "support"
local http, json = weft.http, weft.json

local N = tonumber(os.getenv("WEFT_RSS_N")) or 5000
local LIMIT_KIB = 32

local fs = t.faultserver()

-- Warm up the code paths (JIT, pools, first connection) before measuring.
for _ = 1, 50 do http.request { url = fs.url .. "/ok" } end
collectgarbage()
collectgarbage()
local before = t.rss_kib()

local done = 0
for i = 1, N do
    weft.spawn(function()
        local r = http.request { url = fs.url .. "/held", timeout = 120 }
        if r.status == 200 then done = done + 1 end
    end)
end

-- Wait until the server holds every request (it counts them).
local held = 0
local deadline = weft.now() + 90
while held < N and weft.now() < deadline do
    weft.sleep(0.1)
    held = tonumber(http.request { url = fs.url .. "/count" }.body) or 0
end
t.check(held == N, ("the server holds all %d requests at once"):format(N), held)
local during = t.rss_kib()
local per = (during - before) / N
print(("# RSS before %d KiB, with %d in flight %d KiB: %.1f KiB per in-flight request"):format(
    before, held, during, per))
t.check(per <= LIMIT_KIB, ("RSS growth per in-flight request <= %d KiB"):format(LIMIT_KIB), per)

http.request { url = fs.url .. "/release" }
local wait_deadline = weft.now() + 60
while done < N and weft.now() < wait_deadline do weft.sleep(0.05) end
t.check(done == N, "every held request completes after release", done)
fs.close()
t.done()
