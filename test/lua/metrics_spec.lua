-- metrics_spec.lua: weft.metrics (custom metrics, exposition, snapshot,
-- serve) and weft.calls (call records, hooks, sampling, log binding).
local metrics, calls, E = weft.metrics, weft.calls, weft.error
local value = metrics.value

local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

-- a unique name per test (the registry is process-wide)
local n = 0
local function uniq(prefix)
    n = n + 1
    return ("spec_%s_%d"):format(prefix, n)
end

describe("weft.metrics", function()
    it("defines counters, gauges and histograms with labels", function()
        local cn, gn, hn = uniq("c") .. "_total", uniq("g"), uniq("h") .. "_seconds"
        local c = metrics.counter(cn, "A counter.", { "route" })
        c:inc(1, "a")
        c:inc(2.5, "a")
        c:inc(nil, "b")
        local g = metrics.gauge(gn, "A gauge.", { "k" })
        g:set(7, "x")
        g:inc(-2, "x")
        local h = metrics.histogram(hn, "A histogram.", { "step" })
        local s = h:labels("fetch")
        s:observe(0.002)
        s:observe(3)
        local snap = metrics.snapshot()
        assert.are.equal("counter", snap[cn].type)
        assert.are.equal("A counter.", snap[cn].help)
        assert.are.equal(3.5, value(cn, { route = "a" }))
        assert.are.equal(1, value(cn, { route = "b" }))
        assert.are.equal(5, value(gn, { k = "x" }))
        local hs = snap[hn].series[1]
        assert.are.same({ step = "fetch" }, hs.labels)
        assert.are.equal(2, hs.count)
        assert.are.equal(3.002, hs.sum)
        assert.are.equal(0.0025, hs.buckets[2][1])
        assert.are.equal(1, hs.buckets[2][2])        -- cumulative count at le=0.0025
        assert.are.equal(math.huge, hs.buckets[#hs.buckets][1])
        assert.are.equal(2, hs.buckets[#hs.buckets][2])
    end)

    it("records several series in one call, each by its kind", function()
        local c = metrics.counter(uniq("rc") .. "_total", "c", { "k" }):labels("a")
        local g = metrics.gauge(uniq("rg"), "g", { "k" }):labels("a")
        local h = metrics.histogram(uniq("rh") .. "_seconds", "h", { "k" }):labels("a")
        g:set(100)
        metrics.record(c, 2, g, 7, h, 0.5)
        metrics.record(c, 1.5, nil, 99, h, 3, g, 8) -- a nil series is skipped
        assert.are.equal(3.5, c:value())
        assert.are.equal(8, g:value())               -- a gauge is set, not added to
        assert.are.equal(2, h:value())               -- a histogram's count
        metrics.record()
        assert.matches("in pairs", raised(metrics.record, c))
        assert.matches("metric series expected", raised(metrics.record, c, 1, {}, 1))
        assert.matches("metric series expected", raised(metrics.record, metrics.counter(uniq("m") .. "_total", "m"), 1))
        assert.matches("cannot decrease", raised(metrics.record, c, -1))
        assert.matches("number expected", raised(metrics.record, c, "x"))
        local many = {}
        for i = 1, 17 do many[2 * i - 1], many[2 * i] = c, 1 end
        assert.matches("at most 16", raised(metrics.record, unpack(many)))
        assert.are.equal(3.5, c:value())
    end)

    it("renders Prometheus text with HELP, TYPE and escaped labels", function()
        local name = uniq("esc") .. "_total"
        metrics.counter(name, "Escapes.", { "v" }):inc(1, 'a"b\\c\nd')
        local t = metrics.text()
        assert.truthy(t:find("# HELP " .. name .. " Escapes.\n", 1, true))
        assert.truthy(t:find("# TYPE " .. name .. " counter\n", 1, true))
        assert.truthy(t:find(name .. '{v="a\\"b\\\\c\\nd"} 1\n', 1, true))
    end)

    it("token buckets and custom buckets", function()
        local name = uniq("tok")
        local h = metrics.histogram(name, "Tokens.", nil, "tokens")
        h:observe(100)
        local b = metrics.snapshot()[name].series[1].buckets
        assert.are.equal(16, b[1][1])
        assert.are.equal(1, b[3][2]) -- le=256
        local h2 = metrics.histogram(uniq("cust"), "Custom.", nil, { 1, 10 })
        h2:observe(10)
        assert.matches("increasing", raised(metrics.histogram, uniq("bad"), "", nil, { 2, 1 }))
        assert.matches("buckets", raised(metrics.histogram, uniq("bad"), "", nil, "weekly"))
    end)

    it("refuses misuse with clear errors", function()
        assert.matches("_total", raised(metrics.counter, "no_suffix"))
        assert.matches("invalid metric name", raised(metrics.gauge, "bad-name"))
        assert.matches("name must be a string", raised(metrics.gauge, 42))
        assert.matches("labels", raised(metrics.gauge, uniq("g"), "", "route"))
        local c = metrics.counter(uniq("c") .. "_total", "", { "a", "b" })
        assert.matches("needs 2 label values, got 1", raised(c.inc, c, 1, "x"))
        assert.matches("cannot decrease", raised(c.inc, c, -1, "x", "y"))
        assert.matches("not a histogram", raised(c.observe, c, 1, "x", "y"))
        assert.matches("not a gauge", raised(c.set, c, 1, "x", "y"))
        -- another type under a taken name
        local name = uniq("taken")
        metrics.gauge(name, "")
        assert.matches("another type", raised(metrics.histogram, name, ""))
        -- the same definition again is the same metric (a reloaded plugin)
        local again = metrics.gauge(name, "")
        again:set(4)
        assert.are.equal(4, value(name))
    end)

    it("caps the label combinations: the rest goes to 'other', counted", function()
        local name = uniq("cap") .. "_total"
        local c = metrics.counter(name, "", { "user" })
        c:max_series(2)
        for i = 1, 5 do c:inc(1, "u" .. i) end
        assert.are.equal(1, value(name, { user = "u1" }))
        assert.are.equal(3, value(name, { user = "other" }))
        assert.is_nil(value(name, { user = "u3" }))
        assert.are.equal(3, value("weft_metrics_overflow_total", { metric = name }))
    end)

    it("serves /metrics over HTTP (and 404 elsewhere)", function()
        local name = uniq("served") .. "_total"
        metrics.counter(name, "Served."):inc(3)
        local srv = metrics.serve { port = 0 }
        local base = "http://127.0.0.1:" .. srv.port
        local res = weft.http.request { url = base .. "/metrics" }
        assert.are.equal(200, res.status)
        assert.are.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
        assert.truthy(res.body:find("\n" .. name .. " 3\n", 1, true))
        assert.are.equal(404, weft.http.request { url = base .. "/other" }.status)
        assert.are.equal(405, weft.http.request { url = base .. "/metrics", method = "POST", body = "" }.status)
        local head = weft.http.request { url = base .. "/metrics", method = "HEAD" }
        assert.are.equal(200, head.status)
        assert.are.equal("", head.body)
        assert.matches("expected a table", raised(metrics.serve, "9464"))
        srv:close()
        assert.matches("HOST:PORT", raised(metrics.serve_address, "nonsense"))
        assert.matches("HOST:PORT", raised(metrics.serve_address, "127.0.0.1:99999"))
    end)

    it("never exposes a loaded secret's value: label values and help read <secret NAME>", function()
        -- the canary (test/canaries.txt) is used as a label value and in a
        -- help text before it is loaded as a secret: redaction happens when
        -- the registry is exposed, not when the series is made
        local KEY = assert(os.getenv("WEFT_CANARY_KEY"), "run through ctest")
        local name, hname = uniq("leak") .. "_total", uniq("leak_h") .. "_seconds"
        local c = metrics.counter(name, "Keyed by " .. KEY .. ".", { "key", "route" })
        c:inc(2, KEY, "a")
        c:inc(1, "Bearer " .. KEY, "b")
        metrics.histogram(hname, "H.", { "key" }):observe(0.2, KEY)
        local key = weft.secret("env:WEFT_CANARY_KEY")
        local shown = "<secret env:WEFT_CANARY_KEY>"
        c:inc(1, KEY, "a") -- the same series as before: it counts on
        local t = metrics.text()
        assert.is_nil(t:find(KEY, 1, true))
        assert.truthy(t:find("# HELP " .. name .. " Keyed by " .. shown .. ".\n", 1, true))
        assert.truthy(t:find(name .. '{key="' .. shown .. '",route="a"} 3\n', 1, true))
        assert.truthy(t:find(name .. '{key="Bearer ' .. shown .. '",route="b"} 1\n', 1, true))
        assert.truthy(t:find(hname .. '_count{key="' .. shown .. '"} 1\n', 1, true))
        -- the snapshot handed to Lua, and value() given the raw label value
        local snap = metrics.snapshot()
        assert.are.equal("Keyed by " .. shown .. ".", snap[name].help)
        for _, series in ipairs(snap[name].series) do
            assert.is_nil(series.labels.key:find(KEY, 1, true))
        end
        assert.are.equal(3, value(name, { key = KEY, route = "a" }))
        assert.are.equal(3, value(name, { key = shown, route = "a" }))
        -- the HTTP endpoint
        local srv = metrics.serve { port = 0 }
        local res = weft.http.request { url = "http://127.0.0.1:" .. srv.port .. "/metrics" }
        srv:close()
        assert.are.equal(200, res.status)
        assert.is_nil(res.body:find(KEY, 1, true))
        assert.truthy(res.body:find(name .. '{key="' .. shown .. '",route="a"} 3\n', 1, true))
        assert.truthy(key.loaded) -- kept alive (and so loaded) until here
    end)
end)

describe("weft.calls", function()
    local fake
    before_each(function()
        fake = 1000
        calls.set_clock(function() return fake end)
        calls.configure { success_lines_per_second = math.huge }
    end)
    after_each(function()
        calls.set_clock(nil)
        calls.configure { success_lines_per_second = 20 }
    end)

    it("records a call's outcome, attempts, retries, latency and overhead", function()
        local p = uniq("prov")
        local c = calls.begin { provider = p, model = "m1", operation = "chat" }
        c:attempt()
        fake = fake + 0.5
        c:wire_time(0.3)
        c:retry(E.new("transient", "HTTP 503"), 0.1)
        c:wait_time(0.1)
        c:attempt()
        fake = fake + 0.5
        c:wire_time(0.4)
        c:finish()
        local L = { provider = p, model = "m1", operation = "chat" }
        assert.are.equal(2, value("weft_attempts_total", L))
        assert.are.equal(1, value("weft_retries_total", { provider = p, reason = "transient" }))
        assert.are.equal(1, value("weft_calls_total", { provider = p, outcome = "success" }))
        local snap = metrics.snapshot()
        for _, s in ipairs(snap.weft_call_duration_seconds.series) do
            if s.labels.provider == p then assert.are.equal(1, s.sum) end
        end
        for _, s in ipairs(snap.weft_overhead_seconds.series) do
            if s.labels.provider == p then assert.is_true(math.abs(s.sum - 0.2) < 1e-9, s.sum) end
        end
        -- a failed call: outcome is the error kind
        local c2 = calls.begin { provider = p, model = "m1", operation = "chat" }
        c2:attempt()
        c2:finish(E.new("auth", "HTTP 401"))
        assert.are.equal(1, value("weft_calls_total", { provider = p, outcome = "auth" }))
    end)

    it("records tokens and cost from the price table, and no cost without a price", function()
        local p = uniq("prov")
        calls.set_prices(p, { priced = { input = 2, output = 8 } })
        local c = calls.begin { provider = p, model = "priced" }
        c:usage(1000, 500)
        c:finish()
        assert.are.equal(1000, value("weft_tokens_total", { provider = p, direction = "input" }))
        assert.are.equal(500, value("weft_tokens_total", { provider = p, direction = "output" }))
        assert.are.equal((1000 * 2 + 500 * 8) / 1e6, value("weft_cost_usd_total", { provider = p, model = "priced" }))
        local c2 = calls.begin { provider = p, model = "unpriced" }
        c2:usage(10, 10)
        c2:finish()
        assert.is_nil(value("weft_cost_usd_total", { provider = p, model = "unpriced" }))
        assert.is_nil(c2.cost)
        assert.matches("USD per 1M", raised(calls.set_prices, p, { m = { input = "cheap" } }))
    end)

    it("runs hooks; a raising hook is counted and the call goes on", function()
        local p = uniq("prov")
        local seen = {}
        local off1 = weft.on("request", function(e) seen[#seen + 1] = "request " .. e.attempt end)
        local off2 = weft.on("retry", function(e) seen[#seen + 1] = "retry " .. e.reason end)
        local off3 = weft.on("response", function() error("hook bug") end)
        local off4 = weft.on("response", function(e) seen[#seen + 1] = "response " .. e.outcome end)
        local off5 = weft.on("error", function(e) seen[#seen + 1] = "error " .. e.outcome end)
        local before = value("weft_hook_errors_total", { event = "response" }) or 0
        local policy = weft.retry.policy { base = 0.001, cap = 0.001, seed = 1 }
        local tries = 0
        local r = weft.retry.run(policy, function()
            tries = tries + 1
            if tries == 1 then error(E.new("timeout", "slow"), 0) end
            return "fine"
        end, { provider = p, model = "m" })
        assert.are.equal("fine", r)
        assert.are.same({ "request 1", "retry timeout", "request 2", "response success" }, seen)
        assert.are.equal(before + 1, value("weft_hook_errors_total", { event = "response" }))
        local err = raised(weft.retry.run, policy, function() error(E.new("auth", "no"), 0) end, { provider = p })
        assert.are.equal("auth", err.kind)
        assert.are.equal("error auth", seen[#seen])
        for _, off in ipairs { off1, off2, off3, off4, off5 } do off() end
        calls.begin { provider = p }:finish()
        assert.are.equal("error auth", seen[#seen]) -- unsubscribed
        assert.matches("unknown event", raised(weft.on, "bogus", print))
    end)

    it("announces plugin loads to reload hooks and counts them", function()
        local got = {}
        local off = weft.on("reload", function(e) got[#got + 1] = e end)
        local before = value("weft_plugin_loads_total", { plugin = "secrets/vault", outcome = "ok" }) or 0
        weft.secrets.use("vault", { addr = "http://127.0.0.1:1" })
        assert.is_false(pcall(weft.secrets.use, "no-such-plugin"))
        off()
        assert.are.equal(2, #got)
        assert.are.same({ "secrets/vault", true }, { got[1].plugin, got[1].ok })
        assert.are.same({ "secrets/no-such-plugin", false }, { got[2].plugin, got[2].ok })
        assert.are.equal(before + 1, value("weft_plugin_loads_total", { plugin = "secrets/vault", outcome = "ok" }))
        assert.are.equal(1, value("weft_plugin_loads_total", { plugin = "secrets/no-such-plugin", outcome = "failed" }))
    end)

    it("counts exact attempts and retries through weft.retry.run", function()
        local p = uniq("prov")
        local policy = weft.retry.policy { base = 0.001, cap = 0.001, seed = 2 }
        for i = 1, 10 do
            local fails = (i <= 3) and 1 or 0
            weft.retry.run(policy, function(attempt)
                if attempt <= fails then error(E.new("transient", "HTTP 503", { status = 503 }), 0) end
                return true
            end, { provider = p, model = "m", operation = "chat" })
        end
        local L = { provider = p, model = "m", operation = "chat" }
        assert.are.equal(13, value("weft_attempts_total", L))
        assert.are.equal(3, value("weft_retries_total", L))
        assert.are.equal(10, value("weft_calls_total", { provider = p, outcome = "success" }))
    end)

    it("records a cancelled call as cancelled and a programming error as error", function()
        calls.set_clock(nil)
        local p = uniq("prov")
        local policy = weft.retry.policy { base = 0.001, seed = 1 }
        local t = weft.spawn(function()
            return weft.retry.run(policy, function() weft.sleep(30) end, { provider = p, model = "m" })
        end)
        weft.sleep(0.01)
        t:cancel()
        assert.are.equal("cancelled", select(2, pcall(t.wait, t)).kind)
        assert.are.equal(1, value("weft_calls_total", { provider = p, outcome = "cancelled" }))
        assert.are.equal(0, value("weft_retries_total", { provider = p }) or 0)
        -- a bug in the attempt function: never retried, raised as it was, counted as "error"
        local err = raised(weft.retry.run, policy, function() local x = nil; return x.field end, { provider = p })
        assert.matches("attempt to index", tostring(err))
        assert.are.equal(1, value("weft_calls_total", { provider = p, outcome = "error" }))
        assert.are.equal(1, value("weft_attempts_total", { provider = p, model = "unknown" }))
        assert.is_nil(weft.log.bound())
    end)

    it("counts limiter queueing as waiting, not as weft's overhead", function()
        calls.set_clock(nil)
        local p = uniq("prov")
        local lim = weft.limiter.new { rps = 10, burst = 1, name = p }
        local c = calls.begin { provider = p, model = "m" }
        c:attempt()
        c:wait_time(lim:acquire()) -- acquire returns the seconds it waited
        c:wait_time(lim:acquire()) -- waits about 0.1 s for the next token
        c:finish()
        assert.is_true(c.waited >= 0.09, c.waited)
        local snap = metrics.snapshot()
        for _, s in ipairs(snap.weft_overhead_seconds.series) do
            if s.labels.provider == p then assert.is_true(s.sum < c.waited, s.sum) end
        end
    end)

    it("binds the call's id to the task's log lines while it runs", function()
        assert.is_nil(weft.log.bound())
        local c = calls.begin { provider = "x", model = "y" }
        assert.are.equal(c.id, weft.log.bound().call_id)
        -- a call opened inside it binds its own id, then gives the task back
        local inner = calls.begin { provider = "x", model = "z" }
        assert.are.equal(inner.id, weft.log.bound().call_id)
        inner:finish()
        assert.are.equal(c.id, weft.log.bound().call_id)
        -- another task does not carry it
        local other = weft.spawn(function() return weft.log.bound() end):wait()
        assert.is_nil(other)
        c:finish()
        assert.is_nil(weft.log.bound())
        -- ids are unique
        local a, b = calls.begin {}, calls.begin {}
        assert.are_not.equal(a.id, b.id)
        b:finish()
        a:finish()
    end)

    it("logs every success line at an unlimited rate, even with a clock that stands still", function()
        local before = value("weft_log_lines_sampled_out_total") or 0
        for _ = 1, 50 do calls.begin { provider = "s" }:finish() end
        assert.are.equal(before, value("weft_log_lines_sampled_out_total") or 0)
    end)

    it("samples success lines above the configured rate, never failures", function()
        calls.configure { success_lines_per_second = 2 }
        local level = weft.log.level()
        -- a level that writes no info line samples nothing
        weft.log.level("warn")
        local before = value("weft_log_lines_sampled_out_total") or 0
        for _ = 1, 10 do calls.begin { provider = "s" }:finish() end
        assert.are.equal(before, value("weft_log_lines_sampled_out_total") or 0)
        weft.log.level("info")
        for _ = 1, 10 do calls.begin { provider = "s" }:finish() end
        assert.are.equal(before + 8, value("weft_log_lines_sampled_out_total"))
        fake = fake + 1 -- two more lines' worth of budget
        for _ = 1, 3 do calls.begin { provider = "s" }:finish() end
        assert.are.equal(before + 9, value("weft_log_lines_sampled_out_total"))
        for _ = 1, 5 do calls.begin { provider = "s" }:finish(E.new("timeout", "t")) end
        assert.are.equal(before + 9, value("weft_log_lines_sampled_out_total"))
        weft.log.level(level)
    end)

    it("records first token, wire time and quota that weft.http measured on the call", function()
        local srv = weft.http.serve { port = 0, handler = function(_, res)
            res:start(200, { ["x-ratelimit-remaining-requests"] = "41", ["x-ratelimit-remaining-tokens"] = "9000" })
            res:write("data: 1\n\n")
            res:finish()
        end }
        local p = uniq("prov")
        calls.set_clock(nil)
        local c = calls.begin { provider = p, model = "m", operation = "stream" }
        c:attempt()
        local url = "http://127.0.0.1:" .. srv.port .. "/"
        -- weft.http records nothing on a call by itself (it does not look one up)
        local plain = weft.http.request { url = url }
        assert.are.equal(0, c.wire)
        assert.is_nil(value("weft_quota_remaining", { provider = p }))
        assert.is_true(plain.wire > 0)
        assert.is_nil(plain.first_byte) -- no on_data: no first data handed over
        -- the response carries what it measured; the call's holder records it
        local res = weft.http.request { url = url, on_data = function() c:first_token() end }
        assert.is_true(res.first_byte >= 0 and res.first_byte <= res.wire, res.first_byte)
        c:http(res)
        assert.are.equal(res.wire, c.wire)
        c:finish()
        srv:close()
        assert.is_true(c.wire > 0)
        assert.is_true(c.ttft ~= nil and c.ttft >= 0)
        assert.are.equal(1, value("weft_time_to_first_token_seconds", { provider = p }))
        assert.are.equal(41, value("weft_quota_remaining", { provider = p, unit = "requests" }))
        assert.are.equal(9000, value("weft_quota_remaining", { provider = p, unit = "tokens" }))
    end)

    it("puts the time on the wire on the error value of a failed request", function()
        local srv = weft.http.serve { port = 0, handler = function() return { status = 200 } end }
        local port = srv.port
        srv:close()
        local ok, err = pcall(weft.http.request, { url = "http://127.0.0.1:" .. port .. "/", timeout = 2 })
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        assert.are.equal("number", type(err.wire))
        assert.is_true(err.wire >= 0)
        local c = calls.begin { provider = uniq("prov"), model = "m" }
        c:http(err)
        assert.are.equal(err.wire, c.wire)
        c:finish(err)
    end)

    it("publishes limiter, breaker and cache state", function()
        local name = uniq("lim")
        local lim = weft.limiter.new { rps = 5, burst = 5, name = name }
        lim:acquire(2)
        local br = weft.breaker.new { name = name, min_calls = 1, threshold = 0.5, window = 10, cooldown = 60 }
        pcall(br.call, br, function() error(E.new("transient", "x"), 0) end)
        metrics.cache(name, true)
        metrics.cache(name, false)
        metrics.cache(name, false)
        metrics.text() -- runs the collectors
        local level = value("weft_limiter_level", { limiter = name, limit = "rps" })
        assert.is_true(level >= 3 and level < 3.5, level)
        assert.are.equal(0, value("weft_limiter_queue_length", { limiter = name, priority = "normal" }))
        assert.are.equal(2, value("weft_breaker_state", { breaker = name }))
        assert.are.equal(1, value("weft_cache_requests_total", { cache = name, result = "hit" }))
        assert.are.equal(2, value("weft_cache_requests_total", { cache = name, result = "miss" }))
    end)

    it("shows a provider's limiter levels only for the limits configured now", function()
        local model = require "weft.model"
        local name = uniq("prov")
        local function provider(limits)
            return { providers = { [name] = { plugin = "openai", base_url = "http://127.0.0.1:9", limits = limits } } }
        end
        local function limits_shown(who)
            local got = {}
            local m = metrics.snapshot().weft_limiter_level
            for _, s in ipairs(m and m.series or {}) do
                if s.labels.limiter == who then got[#got + 1] = s.labels.limit end
            end
            table.sort(got)
            return got
        end
        weft.configure(provider { rpm = 60, tpm = 100000 })
        assert.are.same({ "rpm", "tpm" }, limits_shown(name))
        -- configured again with rpm only: the tpm series of the limiter it replaced goes
        weft.configure(provider { rpm = 60 })
        assert.are.same({ "rpm" }, limits_shown(name))
        assert.is_nil(value("weft_limiter_level", { limiter = name, limit = "tpm" }))
        -- a configuration refused after its providers were built changes nothing
        local ok = pcall(weft.configure, { providers = provider({ rpd = 5 }).providers,
                                           models = { broken = "no-such-provider/x" } })
        assert.is_false(ok)
        assert.are.same({ "rpm" }, limits_shown(name))
        -- without limits the provider's limiter admits everything: nobody configured a limit
        weft.configure(provider(nil))
        assert.are.same({}, limits_shown(name))
        assert.is_nil(value("weft_limiter_queue_length", { limiter = name, priority = "normal" }))
        -- the same for a provider used without any configuration
        model.reset()
        model.provider("gemini")
        assert.are.same({}, limits_shown("gemini"))
        model.reset()
    end)

    it("takes a gauge series out of the exposition (unset) until it is set again", function()
        local gn = uniq("g")
        local g = metrics.gauge(gn, "A gauge.", { "k" })
        g:set(3, "a")
        g:set(4, "b")
        assert.is_true(g:unset("a"))
        assert.is_false(g:unset("never"))
        assert.is_nil(value(gn, { k = "a" }))
        assert.are.equal(4, value(gn, { k = "b" }))
        assert.is_nil(metrics.text():find(gn .. '{k="a"}', 1, true))
        assert.are.same({ 0, 0 }, { g:value("a") })
        g:set(5, "a")
        assert.are.equal(5, value(gn, { k = "a" }))
        assert.is_truthy(metrics.text():find(gn .. '{k="a"} 5', 1, true))
        assert.is_truthy(raised(function() metrics.counter(uniq("c") .. "_total"):unset() end):find("not a gauge"))
    end)

    it("reads values back from the registry, creating no series", function()
        local name = uniq("app_reads") .. "_total"
        local m = metrics.counter(name, "Reads.", { "provider", "outcome" })
        m:inc(3, "a", "success")
        m:inc(2, "a", "timeout")
        local s = m:labels("b", "success")
        s:inc(0.5)
        assert.are.same({ 3, 1 }, { m:value("a", "success") })
        assert.are.same({ 5, 2 }, { m:value("a") })           -- a missing label value matches any
        assert.are.same({ 3.5, 2 }, { m:value(nil, "success") })
        assert.are.same({ 5.5, 3 }, { m:value() })
        assert.are.equal(0.5, s:value())
        assert.are.same({ 0, 0 }, { m:value("c", "success") })
        assert.is_nil(value(name, { provider = "c" }))        -- the read made no series
        local h = metrics.histogram(uniq("app_reads_seconds"), "H.", { "route" })
        h:observe(0.2, "r")
        h:observe(9, "r")
        assert.are.equal(2, (h:value("r")))                   -- a histogram's count
        assert.are.equal(2, h:labels("r"):value())
    end)

    it("summarises calls per provider/model", function()
        calls.reset_summary()
        assert.are.equal("", calls.summary())
        calls.set_prices("sumprov", { m = { input = 1, output = 1 } })
        for i = 1, 20 do
            local c = calls.begin { provider = "sumprov", model = "m" }
            fake = fake + i / 1000 -- durations 1..20 ms
            c:usage(10, 5)
            c:finish(i == 20 and E.new("timeout", "t") or nil)
        end
        local s = calls.summary()
        assert.matches("sumprov/m", s)
        assert.matches("timeout 1", s)
        assert.matches("10.0ms", s)  -- p50 of 1..20 ms
        assert.matches("19.0ms", s)  -- p95
        assert.matches("20.0ms", s)  -- p99
        assert.matches("200", s)     -- tokens in
        assert.matches("0.000300", s) -- 300 tokens at $1/M
    end)
end)
