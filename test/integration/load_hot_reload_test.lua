-- load_hot_reload_test.lua: the hot-reload soak. Tasks keep a steady
-- stream of calls going through the whole pipeline (weft.model -> plugin
-- -> `weft mock` in its own process) for at least SOAK_SECONDS (30) and
-- at least SOAK_CALLS (60,000) calls, while the provider plugin file is
-- rewritten 100 times (every fifth version broken in a different way:
-- syntax error, error while loading, unsupported API version, missing
-- function, a schema the configuration does not satisfy).
--
-- Checked: no call fails; every good version is seen in results; every
-- broken version is counted in weft_plugin_loads_total{outcome="failed"}
-- and none is ever served. The call rate is printed (it is a figure, not
-- an assertion: machines here are shared).
local t = require "support"
local check = t.check
local plugins = require "weft.plugins"
local model = require "weft.model"

local SECONDS = tonumber(os.getenv("SOAK_SECONDS")) or 30
local MIN_CALLS = tonumber(os.getenv("SOAK_CALLS")) or 60000
local REWRITES = 100
local WORKERS = tonumber(os.getenv("SOAK_WORKERS")) or 48

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/providers") == 0)
-- the mock's own rate limits (10,000 rpm by default) would be the bottleneck
local profile = io.open(dir .. "/profile.lua", "w")
profile:write("return { limits = { rpm = 1e9, tpm = 1e12 } }\n")
profile:close()
local mock = t.start_mock("--profile " .. dir .. "/profile.lua")
plugins.add_dir(dir)

local BROKEN = {
    function(v) return "return { api = 1, name = 'soak' kind = 'provider' } -- " .. v end,          -- syntax
    function(v) return "local x = nil; return x.field -- " .. v end,                                 -- load error
    function(v) return ("return { api = 99, name = 'soak', kind = 'provider', version = %q, extends = 'openai' }"):format(v) end,
    function(v) return ("return { api = 1, name = 'soak', kind = 'provider', version = %q, encode = function() end }"):format(v) end,
    function(v) return ("return { api = 1, name = 'soak', kind = 'provider', version = %q, extends = 'openai', base_url = false, secret = false, schema = { region = { type = 'string', required = true } } }"):format(v) end,
}

local function good(v)
    return ([[
return {
    api = 1, name = "soak", kind = "provider", version = %q, extends = "openai",
    base_url = false, secret = false,
}
]]):format(v)
end

local path = dir .. "/providers/soak.lua"
local function install(text)
    local tmp = dir .. "/providers/.soak.tmp"
    local f = assert(io.open(tmp, "w"))
    f:write(text)
    f:close()
    assert(os.rename(tmp, path))
end

install(good("good-0"))
weft.configure { providers = { soak = {
    base_url = mock.url, secret = weft.secrets.value("soak-key", weft.mock.DEFAULT_KEYS.openai),
    retry = { base = 0.01 }, breaker = false,
} } }
local m = weft.model("soak/gpt-4o-mini", { max_tokens = 4 })
m:complete("warm up")

local function failed_loads()
    return weft.metrics.value("weft_plugin_loads_total", { plugin = "provider/soak", outcome = "failed" }) or 0
end

local seen, calls, failures, first_error = {}, 0, 0, nil
local stop = false
local function worker()
    while not stop do
        local ok, r = pcall(m.complete, m, "hello there")
        calls = calls + 1
        if ok then
            seen[r.plugin_version] = (seen[r.plugin_version] or 0) + 1
        else
            failures = failures + 1
            first_error = first_error or r
        end
    end
end

local failed0 = failed_loads()
local good_versions, broken_versions = { "good-0" }, {}
local t0 = weft.now()
local tasks = {}
for i = 1, WORKERS do tasks[i] = weft.spawn(worker) end

-- the writer: one rewrite every SECONDS/REWRITES; each waits until the
-- watcher has acted on it (the good version served, or the broken one counted)
local step = SECONDS / REWRITES
local missed = 0
for i = 1, REWRITES do
    local at = t0 + i * step
    local v
    if i % 5 == 0 then
        v = "broken-" .. i
        broken_versions[#broken_versions + 1] = v
        local want = failed_loads() + 1
        install(BROKEN[(i / 5 - 1) % #BROKEN + 1](v))
        local limit = weft.now() + 10
        while failed_loads() < want and weft.now() < limit do weft.sleep(0.005) end
        if failed_loads() < want then missed = missed + 1 end
    else
        v = "good-" .. i
        good_versions[#good_versions + 1] = v
        install(good(v))
        local limit = weft.now() + 10
        while not seen[v] and weft.now() < limit do weft.sleep(0.005) end
    end
    local wait = at - weft.now()
    if wait > 0 then weft.sleep(wait) end
end
while calls < MIN_CALLS do weft.sleep(0.1) end
stop = true
for _, task in ipairs(tasks) do task:wait() end
local elapsed = weft.now() - t0

print(("# %d calls in %.1f s: %.0f calls/s with %d workers; %d rewrites (%d broken)"):format(calls, elapsed,
    calls / elapsed, WORKERS, REWRITES, #broken_versions))
check(failures == 0, "no call failed", first_error and tostring(first_error))
check(calls >= MIN_CALLS, "at least " .. MIN_CALLS .. " calls made", calls)
local unseen = {}
for _, v in ipairs(good_versions) do
    if not seen[v] then unseen[#unseen + 1] = v end
end
check(#unseen == 0, "every good version served calls (" .. #good_versions .. ")", table.concat(unseen, " "))
local served_broken = {}
for v in pairs(seen) do
    if v:find("^broken") then served_broken[#served_broken + 1] = v end
end
check(#served_broken == 0, "no broken version was ever served", table.concat(served_broken, " "))
check(failed_loads() - failed0 == #broken_versions, "every broken version was counted as a failed load",
    (failed_loads() - failed0) .. " of " .. #broken_versions)
check(missed == 0, "the watcher saw every broken rewrite", missed)
check(plugins.registry["provider/soak"].n == #good_versions, "one successful load per good version",
    plugins.registry["provider/soak"].n)

plugins.reset()
mock.close()
os.execute("rm -rf " .. dir)
t.done()
