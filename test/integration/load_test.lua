-- load_test.lua: 10,000 requests at concurrency 256 to a local server in
-- another process all get their answer.
local t = require "support"
local http = weft.http

local fs = t.faultserver()
local url = fs.url .. "/ok"
local N, C = 10000, 256
local next_i, ok, statuses = 0, 0, {}

local workers = {}
for w = 1, C do
    workers[w] = function()
        while next_i < N do
            next_i = next_i + 1
            local r = http.request { method = "POST", url = url, body = '{"n":1}',
                                     headers = { ["content-type"] = "application/json" } }
            if r.status == 200 then ok = ok + 1 else statuses[r.status] = (statuses[r.status] or 0) + 1 end
        end
    end
end
local t0 = weft.now()
weft.all(workers)
local dt = weft.now() - t0
print(("# %d requests at concurrency %d in %.2f s (%.0f req/s)"):format(N, C, dt, N / dt))
t.check(ok == N, "all 10,000 requests got a 200", ok)
fs.close()
t.done()
