-- client.lua: the weft side of bench/http. N POSTs of a JSON body at
-- concurrency C through weft.http.request, keep-alive, every status checked.
--
--   weft run bench/http/client.lua N C URL BODY_FILE
local N, C, URL, BODY_FILE = tonumber(arg[1]), tonumber(arg[2]), arg[3], arg[4]
assert(N and C and URL and BODY_FILE, "usage: weft run client.lua N C URL BODY_FILE")
local f = assert(io.open(BODY_FILE, "rb"))
local body = f:read("*a")
f:close()

local request = weft.http.request
local opts = { method = "POST", url = URL, body = body,
               headers = { ["content-type"] = "application/json" } }
local started, done, failed = 0, 0, 0

local function worker()
    while started < N do
        started = started + 1
        local r = request(opts)
        if r.status ~= 200 then failed = failed + 1 end
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
