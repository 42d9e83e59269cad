-- client.lua: the weft side of bench/policy. In one process, the same chat
-- completion through:
--   direct   weft.model("openai/gpt-4o-mini")  (the whole provider pipeline)
--   fallback a `fallback` policy whose first target is that model, healthy
--   balance  a `balance` policy, strategy weighted, over two providers
--            (openai, openai_b: the openai plugin) on the same mock backend
-- Each measurement: N calls by C tasks after a warm-up; process CPU time
-- (os.clock: user+sys of this process; the mock is another process) from a
-- full GC before to a full GC after (each variant pays for its garbage).
-- The variants are interleaved, REPS times, in a rotating order.
--
--   weft run bench/policy/client.lua N C REPS MOCK_URL [VARIANT...]
--     C: one concurrency or a comma list ("1,64"); VARIANT: direct,
--     fallback, balance (default: all three), or direct_req: the direct
--     model called with the request a policy hands its target (a table
--     with messages, max_tokens, id: what the target call itself costs).
--     REPS=0: no warm-up, one untimed pass (for callgrind).
local PROMPT = "Bring me the travel checklist for a flight to Canada."
local MODEL = "gpt-4o-mini"
local clock, now = os.clock, weft.now
local format = string.format

local N, CS, REPS, URL = tonumber(arg[1]), arg[2], tonumber(arg[3]), arg[4]
assert(N and CS and REPS and URL, "usage: weft run client.lua N C REPS MOCK_URL [VARIANT...]")
local conc = {}
for c in tostring(CS):gmatch("%d+") do conc[#conc + 1] = tonumber(c) end
local VARIANTS = { "direct", "fallback", "balance" }
if arg[5] then VARIANTS = { select(5, unpack(arg)) } end

local key = weft.secrets.value("bench-key", weft.mock.DEFAULT_KEYS.openai)
local function provider(extra)
    local p = { base_url = URL, secret = key, limits = { rpm = 1e8, tpm = 1e10 }, retry = { max_attempts = 4 } }
    for k, v in pairs(extra or {}) do p[k] = v end
    return p
end
weft.configure {
    providers = { openai = provider(), openai_b = provider { plugin = "openai" } },
    models = {
        bench_fallback = { policy = "fallback", targets = { "openai/" .. MODEL, "openai_b/" .. MODEL } },
        bench_balance = { policy = "balance", strategy = "weighted",
                          targets = { "openai/" .. MODEL, "openai_b/" .. MODEL } },
    },
}
local models = {
    direct = weft.model("openai/" .. MODEL, { max_tokens = 64 }),
    fallback = weft.model("bench_fallback", { max_tokens = 64 }),
    balance = weft.model("bench_balance", { max_tokens = 64 }),
}
models.direct_req = models.direct
for _, v in ipairs(VARIANTS) do assert(models[v], "unknown variant " .. v) end

-- what answered, checked in the timed loop (a few table reads a call)
local failed, not_first, by_provider, first_err = 0, 0, {}, nil

local function batch(variant, n, c)
    local m = models[variant]
    local complete = m.complete
    local started = 0
    local check = variant == "fallback" or variant == "balance"
    local req_of = variant == "direct_req" and function(i)
        return { messages = { { role = "user", content = PROMPT } }, max_tokens = 64, id = "policy-" .. i .. ".1" }
    end
    local function worker()
        while started < n do
            started = started + 1
            local ok, res = pcall(complete, m, req_of and req_of(started) or PROMPT)
            if not ok then
                failed = failed + 1
                first_err = first_err or tostring(res)
            elseif check then
                local r1 = res.route and res.route[1]
                if not r1 or r1.outcome ~= "success" or res.route[2] then not_first = not_first + 1 end
                if variant == "balance" then
                    local p = r1 and r1.target or "?"
                    by_provider[p] = (by_provider[p] or 0) + 1
                end
            end
        end
    end
    if c <= 1 then
        worker()
    else
        local ws = {}
        for i = 1, c do ws[i] = worker end
        weft.all(ws)
    end
end

-- one measurement: CPU us per call, calls per second (wall)
local function measure(variant, n, c)
    collectgarbage()
    collectgarbage()
    local c0, t0 = clock(), now()
    batch(variant, n, c)
    collectgarbage()
    local c1, t1 = clock(), now()
    return (c1 - c0) * 1e6 / n, n / (t1 - t0)
end

local function median(t)
    local s = {}
    for i, x in ipairs(t) do s[i] = x end
    table.sort(s)
    local k = #s
    if k == 0 then return 0 / 0 end
    if k % 2 == 1 then return s[(k + 1) / 2] end
    return (s[k / 2] + s[k / 2 + 1]) / 2
end

if REPS == 0 then
    for _, c in ipairs(conc) do
        for _, v in ipairs(VARIANTS) do batch(v, N, c) end
    end
    print(format("weft: %d calls per variant, %d failed%s", N, failed, first_err and (" (" .. first_err .. ")") or ""))
    os.exit(failed > 0 and 1 or 0)
end

for _, c in ipairs(conc) do
    for _, v in ipairs(VARIANTS) do batch(v, math.max(2000, math.floor(N / 10)), c) end -- warm-up: JIT, connections
end

local results = {}
print(format("%-4s %-4s %-9s %12s %10s", "C", "rep", "variant", "CPU us/call", "calls/s"))
for _, c in ipairs(conc) do
    local cpu = {}
    for _, v in ipairs(VARIANTS) do cpu[v] = {} end
    for rep = 1, REPS do
        for k = 0, #VARIANTS - 1 do
            local v = VARIANTS[(rep - 1 + k) % #VARIANTS + 1] -- rotating order
            local us, rate = measure(v, N, c)
            cpu[v][rep] = us
            print(format("%-4d %-4d %-9s %12.2f %10.0f", c, rep, v, us, rate))
            io.stdout:flush()
        end
    end
    results[#results + 1] = { c = c, cpu = cpu }
end

print()
print(format("summary (N=%d per measurement, %d reps, medians; added = policy - direct; target <= 3 us added)", N, REPS))
local all_ok = true
for _, r in ipairs(results) do
    local cpu = r.cpu
    local line = { format("C=%-3d", r.c) }
    for _, v in ipairs(VARIANTS) do line[#line + 1] = format("%s %.2f", v, median(cpu[v])) end
    print(table.concat(line, "  ") .. "  (CPU us/call)")
    if cpu.direct then
        for _, v in ipairs(VARIANTS) do
            if v ~= "direct" then
                local paired = {}
                for rep = 1, REPS do paired[rep] = cpu[v][rep] - cpu.direct[rep] end
                local added = median(paired)
                local ok = added <= 3
                all_ok = all_ok and ok
                print(format("  %-8s added %+.2f us/call (median of per-rep differences; of medians %+.2f): %s",
                    v, added, median(cpu[v]) - median(cpu.direct), ok and "within 3 us" or "ABOVE 3 us"))
            end
        end
    end
end
local split = {}
for p, k in pairs(by_provider) do split[#split + 1] = p .. " " .. k end
table.sort(split)
if first_err then print("first error: " .. first_err) end
print(format("checks: %d failed, %d policy calls not answered by their first pick%s", failed, not_first,
    #split > 0 and ("; balance split: " .. table.concat(split, ", ")) or ""))
if not results[1] or not results[1].cpu.direct or #VARIANTS < 2 then
    print("target (<= 3 us added per call): not judged (needs direct and a policy variant)")
else
    print(all_ok and "target (<= 3 us added per call): holds" or "target (<= 3 us added per call): NOT met")
end
if failed > 0 or not_first > 0 then os.exit(1) end
