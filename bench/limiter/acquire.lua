-- acquire.lua: cost of an uncontended limiter:acquire from Lua. Target <= 300 ns.
local N = tonumber(arg[1]) or 2000000
local lim = weft.limiter.new { rps = 1e12, tpm = 1e15 }
local cost = { requests = 1, tokens = 100 }
for _ = 1, 10000 do lim:acquire(cost) end -- warm up the JIT
local t0 = weft.now()
for _ = 1, N do lim:acquire(cost) end
local dt = weft.now() - t0
-- the raw binding, without the Lua wrapper's option handling
local c = lim.c
local t1 = weft.now()
for _ = 1, N do c:acquire(1, 100, 1, 0) end
local dt2 = weft.now() - t1
print(("Lua limiter:acquire(cost): %.1f ns/call; raw binding: %.1f ns/call"):format(dt / N * 1e9, dt2 / N * 1e9))
