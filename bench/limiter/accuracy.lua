-- accuracy.lua: a limit of 100 requests/s (burst 2) held for 20 s by 50
-- eager callers: admissions should be within 1% of 2,000, and no 1-second
-- window may hold more than rate + burst.
local SECONDS = tonumber(arg[1]) or 20
local lim = weft.limiter.new { rps = 100, burst = 2 }
local start = weft.now()
local stop = start + SECONDS
local stamps = {}
local callers = {}
for i = 1, 50 do
    callers[i] = function()
        while true do
            local left = stop - weft.now()
            if left <= 0 then return end
            local ok = pcall(lim.acquire, lim, 1, { deadline = stop })
            if not ok or weft.now() >= stop then return end
            stamps[#stamps + 1] = weft.now() - start
        end
    end
end
local c0 = os.clock()
weft.all(callers)
local cpu = os.clock() - c0
table.sort(stamps)
local worst, j = 0, 1
for i = 1, #stamps do
    while stamps[i] - stamps[j] >= 1.0 do j = j + 1 end
    if i - j + 1 > worst then worst = i - j + 1 end
end
local expected = 100 * SECONDS
print(("accuracy: %d admitted in %d s (expected %d, error %.2f%%), busiest 1-s window %d (limit rate+burst = 102), CPU %.3f s"):format(
    #stamps, SECONDS, expected, (#stamps - expected) / expected * 100, worst, cpu))
