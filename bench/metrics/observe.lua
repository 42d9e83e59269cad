-- observe.lua: cost of recording a metric from Lua (target: <= 200 ns per
-- observation), and of the whole per-call record weft.calls keeps.
--   weft run observe.lua [N] [C_OBSERVE_NS] [C_LABELLED_NS]
local N = tonumber(arg[1]) or 5000000
local c_observe, c_labelled = tonumber(arg[2]), tonumber(arg[3])
local m = weft.metrics
local h = m.histogram("bench_lua_seconds", "B.", { "provider", "model", "operation" })
local c = m.counter("bench_lua_total", "B.", { "provider", "model", "operation" })
local s = h:labels("openai", "gpt-4o-mini", "chat")

local function time(fn, n)
    fn(10000) -- warm up (JIT)
    local t0 = weft.now()
    fn(n)
    return (weft.now() - t0) / n * 1e9
end

local observe = time(function(n) for i = 1, n do s:observe(i % 1024 * 1e-3) end end, N)
local labelled = time(function(n) for _ = 1, n do c:inc(1, "openai", "gpt-4o-mini", "chat") end end, N)
local hist = time(function(n) for i = 1, n do h:observe(i % 1024 * 1e-3, "openai", "gpt-4o-mini", "chat") end end, N)

weft.log.level("error") -- the call line is not what is measured
weft.calls.configure { success_lines_per_second = 0 }
local calls = weft.calls
local record = time(function(n)
    for _ = 1, n do
        local call = calls.begin { provider = "openai", model = "gpt-4o-mini", operation = "chat" }
        call:attempt()
        call:wire_time(0.001)
        call:usage(100, 20)
        call:finish()
    end
end, math.max(1, math.floor(N / 10)))

print(("Lua: series:observe %.1f ns; counter:inc with 3 label values %.1f ns; histogram:observe with 3 label values %.1f ns"):format(
    observe, labelled, hist))
if c_observe and c_labelled then
    print(("ratio Lua/C: observe %.1fx (C %.1f ns), labelled inc %.1fx (C %.1f ns)"):format(
        observe / c_observe, c_observe, labelled / c_labelled, c_labelled))
end
print(("a whole call record (begin, attempt, wire time, usage with cost, finish; 9 series updates): %.0f ns"):format(record))
print(("target <= 200 ns per observation from Lua: %s"):format(
    (observe <= 200 and hist <= 200) and "met" or "NOT met"))
