-- plugin_budget_spec.lua: a runaway plugin fails its own calls and nothing
-- else (issue 14, "runaway plugin or configuration code freezes the whole
-- host"): an endless loop or an endless allocation in any plugin function
-- ends that call with kind integration naming the plugin and the limit,
-- while another task's calls keep succeeding; a plugin cannot catch the
-- budget's error and go on; its errors never reach the caller raw.
local model = require "weft.model"
local plugins = require "weft.plugins"
local json = weft.json

local pd = require "plugin_dir" ()
local write = pd.write

local KEY = weft.mock.DEFAULT_KEYS.openai


-- The openai plugin with one function replaced by `fn` (source text).
local function variant(name, fname, fn, load)
    write(name, ([[
%s
return { api = 1, name = %q, kind = "provider", version = "1", extends = "openai", %s = %s }
]]):format(load or "", name, fname, fn))
end

local function configure(mock, name)
    weft.configure { providers = { [name] = {
        plugin = name ~= "openai" and name or nil, base_url = mock.url,
        secret = weft.secrets.value("bud-" .. name, KEY), retry = { max_attempts = 1 }, breaker = false } } }
end

local function fails(name, req, op)
    local m = weft.model(name .. "/gpt-4o-mini")
    local ok, err = pcall(function()
        if op == "stream" then return m:stream(req or "hi", function() end) end
        if op == "embed" then return m:embed("x") end
        return m:complete(req or "hi")
    end)
    assert.is_false(ok, name .. " did not fail")
    assert.is_true(weft.error.is(err), "not an error value: " .. tostring(err))
    return err
end

describe("the plugin budget", function()
    local mock, saved
    before_each(function()
        model.reset()
        mock = weft.mock.start { port = 0 }
        saved = plugins.budget()
    end)
    after_each(function()
        mock:close()
        plugins.budget(saved)
        plugins.reset()
    end)
    teardown(pd.remove)

    it("ends an endless encode with an integration error while another task's calls go on", function()
        variant("spin", "encode", "function() while true do end end")
        configure(mock, "spin")
        configure(mock, "openai")
        -- another task calls a healthy provider all along
        local done, good = false, 0
        local other = weft.spawn(function()
            local m = weft.model("openai/gpt-4o-mini")
            while not done do
                assert(m:complete("still here").text)
                good = good + 1
            end
        end)
        -- until the other task has had calls answered (a condition, not a time)
        while good < 3 do weft.sleep(0.001) end
        local before = good
        local t0 = weft.now()
        local err = fails("spin")
        local took = weft.now() - t0
        print(("\n# runaway encode ended after %.3f s (budget %d instructions)"):format(took, plugins.budget().instructions))
        assert.are.equal("integration", err.kind)
        assert.matches("provider plugin spin", err.message, 1, true)
        assert.matches("encode exceeded its CPU budget (10000000 instructions)", err.message, 1, true)
        -- and it goes on after the runaway call
        while good <= before do weft.sleep(0.001) end
        done = true
        other:wait()
        assert.is_true(before > 0 and good > before, ("the other task's calls: %d before, %d after"):format(before, good))
        -- nothing was sent for the runaway call
        for _, r in ipairs(mock:requests()) do
            assert.are_not.equal("spin", r.headers["x-provider"])
        end
        local v = weft.metrics.value("weft_plugin_budget_exceeded_total", { plugin = "spin", limit = "instructions" })
        assert.are.equal(1, v)
    end)

    it("ends an endless allocation with the memory limit", function()
        plugins.budget { memory = 8 * 1024 * 1024 }
        variant("hog", "encode", [[function()
            local t = {}
            while true do t[#t + 1] = string.rep("x", 1000) .. #t end
        end]])
        configure(mock, "hog")
        local err = fails("hog")
        assert.are.equal("integration", err.kind)
        assert.matches("provider plugin hog (1): encode exceeded its memory budget (8 MB allocated)", err.message, 1, true)
        -- one huge allocation in a single C call is refused too
        variant("huge", "encode", [[function() return { path = "/" .. string.rep("x", 2 ^ 30) } end]])
        configure(mock, "huge")
        err = fails("huge")
        assert.matches("encode exceeded its memory budget", err.message, 1, true)
        assert.are.equal(0, mock:stats().requests)
    end)

    it("cannot be caught by the plugin: pcall and xpcall re-raise a budget that ran out", function()
        variant("catcher", "encode", [[function()
            while true do
                pcall(function() while true do end end)
                xpcall(function() local t = {} while true do t[#t + 1] = {} end end, function(e) return e end)
            end
        end]])
        configure(mock, "catcher")
        local err = fails("catcher")
        assert.are.equal("integration", err.kind)
        assert.matches("catcher (1): encode exceeded its CPU budget", err.message, 1, true)
    end)

    it("bounds every plugin function: decode, classify, rate_limits and event", function()
        plugins.budget { instructions = 200000 }
        for _, f in ipairs { "decode", "rate_limits" } do
            variant("spin_" .. f, f, "function() while true do end end")
            configure(mock, "spin_" .. f)
            local err = fails("spin_" .. f)
            assert.matches(f .. " exceeded its CPU budget (200000 instructions)", err.message, 1, true)
        end
        variant("spin_classify", "classify", "function() while true do end end")
        configure(mock, "spin_classify")
        mock:set_faults { { dialect = "openai", sequence = { 500 } } }
        local err = fails("spin_classify")
        assert.matches("classify exceeded its CPU budget", err.message, 1, true)
        mock:set_faults {}
        variant("spin_event", "event", "function() while true do end end")
        configure(mock, "spin_event")
        err = fails("spin_event", "hi", "stream")
        assert.are.equal("integration", err.kind)
        assert.matches("event exceeded its CPU budget", err.message, 1, true)
    end)

    it("bounds loading a plugin file, and keeps the loaded version serving", function()
        plugins.budget { instructions = 100000 }
        write("loader", [[
            while true do end
        ]])
        local ok, err = pcall(weft.configure, { providers = { loader = { base_url = mock.url } } })
        assert.is_false(ok)
        assert.matches("loader.lua: error while loading: exceeded its CPU budget (100000 instructions)", tostring(err), 1, true)
        -- a good version, then a runaway edit: the good one keeps serving
        variant("edited", "decode", [[function(op, body) return { text = "v1", usage = { input = 1, output = 1 } } end]])
        configure(mock, "edited")
        assert.are.equal("v1", weft.model("edited/gpt-4o-mini"):complete("x").text)
        write("edited", "local t = {} while true do t[#t + 1] = {} end")
        local res = plugins.reload("edited")
        assert.matches("exceeded its", res["provider/edited"], 1, true)
        assert.are.equal("v1", weft.model("edited/gpt-4o-mini"):complete("x").text)
    end)

    it("turns whatever a plugin raises into an integration error value naming it", function()
        local cases = {
            { "tostring_raises", "encode", [[function()
                error(setmetatable({}, { __tostring = function() error("tostring raised") end }))
            end]], "encode failed: (a table raised as an error)" },
            { "tostring_spins", "encode", [[function()
                error(setmetatable({}, { __tostring = function() while true do end end }))
            end]], "encode failed: (a table raised as an error)" },
            { "cyclic", "encode", [[function(op, req)
                local b = { model = req.model } b.self = b
                return { path = "/v1/chat/completions", body = b }
            end]], "encode: the body cannot be sent as JSON: json.encode: cycle" },
            { "crlf", "encode", [[function(op, req)
                return { path = "/v1/chat/completions", headers = { ["x-a"] = "1\r\nx-injected: 2" },
                         body = { model = req.model, messages = req.messages } }
            end]], "encode: header 'x-a' must be a string without CR, LF or NUL" },
            { "badheader", "encode", [[function(op, req)
                return { path = "/v1/chat/completions", headers = { ["bad header"] = "1" }, body = {} }
            end]], "encode: header names must be HTTP tokens" },
            { "number_error", "encode", "function() error(42) end", "encode failed: /" },
            { "nothing", "encode", "function() return nil end", "encode must return {path=, body=, ...}, got nil" },
            { "meta_result", "encode", [[function(op, req)
                return setmetatable({}, { __index = function(t, k)
                    if k == "path" then while true do end end
                end })
            end]], "encode: refused: path must be a string, got nil" },
            { "bad_decode", "decode", [[function() return { text = 5 } end]], "decode: text must be a string, got number" },
            { "fn_decode", "decode", [[function() return { text = "x", f = function() end } end]],
              "decode returned something that is not plain data: a function is not plain data" },
            { "bad_tools", "decode", [[function() return { text = "x", tool_calls = { { name = {} } } } end]],
              "decode: tool_calls[1] must be {id=, name=, arguments=} strings" },
        }
        for _, c in ipairs(cases) do
            variant(c[1], c[2], c[3])
            configure(mock, c[1])
            local err = fails(c[1])
            assert.are.equal("integration", err.kind, c[1])
            assert.matches("provider plugin " .. c[1] .. " (1)", err.message, 1, true)
            assert.matches(c[4], err.message, 1, true)
            -- no host file and line, no traceback: a value for the caller
            assert.is_nil(err.message:find("model.lua", 1, true), err.message)
        end
    end)

    it("ends cheap loops around expensive C calls with the time limit", function()
        plugins.budget { time = 0.1 }
        variant("finder", "encode", [[function()
            local s = string.rep("a", 8 * 1024 * 1024)
            for _ = 1, 1e6 do s:find("b", 1, true) end
        end]])
        variant("sorter", "encode", [[function()
            local t = {}
            for i = 1, 100000 do t[i] = (i * 7919) % 100003 end
            for _ = 1, 1e6 do table.sort(t) end
        end]])
        for _, name in ipairs { "finder", "sorter" } do
            configure(mock, name)
            local t0 = weft.now()
            local err = fails(name)
            print(("\n# %s ended after %.3f s (time budget 0.1 s)"):format(name, weft.now() - t0))
            assert.are.equal("integration", err.kind)
            assert.matches(name .. " (1): encode exceeded its time budget (100 ms)", err.message, 1, true)
        end
        assert.are.equal(1, weft.metrics.value("weft_plugin_budget_exceeded_total", { plugin = "finder", limit = "time" }))
    end)

    it("bounds the host's encoding of what a plugin returns by the plugin's budget", function()
        plugins.budget { memory = 8 * 1024 * 1024 }
        variant("dag", "encode", [[function(op, req)
            local t = { string.rep("x", 64) }
            for _ = 1, 30 do t = { t, t } end
            return { path = "/v1/chat/completions", body = { model = req.model, messages = req.messages, x = t } }
        end]])
        configure(mock, "dag")
        local err = fails("dag")
        assert.are.equal("integration", err.kind)
        assert.matches("dag (1): encode: the body cannot be sent as JSON", err.message, 1, true)
        assert.matches("memory budget", err.message, 1, true)
        assert.are.equal(0, mock:stats().requests)
    end)

    it("reads the answer's headers before a plugin can change them", function()
        variant("poison", "rate_limits", [[function(status, headers)
            setmetatable(headers, { __index = function() while true do end end })
            headers["retry-after"] = "86400"
            headers["x-should-retry"] = "false"
        end]])
        configure(mock, "poison")
        mock:set_faults { { dialect = "openai", sequence = { 503, "ok" } } }
        weft.configure { providers = { poison = { plugin = "poison", base_url = mock.url,
            secret = weft.secrets.value("bud-poison2", KEY), retry = { max_attempts = 2, base = 0.001, cap = 0.01 },
            breaker = false } } }
        local t0 = weft.now()
        local r = weft.model("poison/gpt-4o-mini"):complete("x")
        -- retried at once (503 is transient) despite the plugin's edits
        assert.are.equal(2, r.attempts)
        assert.is_true(weft.now() - t0 < 60)
        assert.is_nil(weft.metrics.value("weft_plugin_budget_exceeded_total", { plugin = "poison", limit = "instructions" }))
    end)

    it("lets other tasks run between the events of a long chunk", function()
        plugins.budget { time = 1 }
        -- 40 events in one chunk, each costing the plugin ~20 ms
        local srv = weft.http.serve { host = "127.0.0.1", port = 0, background = true, handler = function(req, res)
            res:start(200, { ["content-type"] = "text/event-stream" })
            local parts = {}
            for i = 1, 40 do parts[i] = 'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' end
            parts[#parts + 1] = "data: [DONE]\n\n"
            res:write(table.concat(parts))
            res:finish()
        end }
        variant("slowevent", "event", [[function(ev, st)
            local t0 = os.clock()
            while os.clock() - t0 < 0.02 do end
            if ev.data == "[DONE]" then return { done = true } end
            return { text = "x" }
        end]])
        weft.configure { providers = { slowevent = { plugin = "slowevent", base_url = "http://127.0.0.1:" .. srv.port,
            secret = weft.secrets.value("bud-se", KEY), retry = { max_attempts = 1 }, breaker = false } } }
        local ticks, running = 0, true
        local ticker = weft.spawn(function()
            while running do
                weft.sleep(0.001)
                ticks = ticks + 1
            end
        end)
        while ticks == 0 do weft.sleep(0.001) end -- it runs
        local before = ticks
        local r = weft.model("slowevent/m"):stream("x", function() end)
        local during = ticks - before
        running = false
        ticker:wait()
        srv:close()
        print(("\n# 40 events of ~20 ms in one chunk: the other task ran %d times meanwhile"):format(during))
        assert.are.equal(40, #r.text)
        assert.is_true(during >= 10, "the other task ran " .. during .. " times")
    end)

    it("keeps plugin rate-limit readings sane, and gives back what an attempt that sent nothing took", function()
        variant("wild", "rate_limits", [[function()
            return { requests = { remaining = -1 / 0, reset = 1e308 }, tokens = { remaining = 0 / 0 }, retry_after = 1e300 }
        end]])
        configure(mock, "wild")
        local m = weft.model("wild/gpt-4o-mini")
        m:complete("1")
        local t0 = weft.now()
        m:complete("2")   -- not blocked by the plugin's readings
        assert.is_true(weft.now() - t0 < 30)
        -- a plugin whose encode fails does not use up its provider's limit
        variant("flaky", "encode", [[function(op, req)
            if req.messages[1].content == "bad" then error("cannot encode") end
            return { path = "/v1/chat/completions", body = { model = req.model, messages = req.messages } }
        end]])
        weft.configure { providers = { flaky = { plugin = "flaky", base_url = mock.url, limits = { rpd = 3 },
            secret = weft.secrets.value("bud-flaky", KEY), retry = { max_attempts = 1 }, breaker = false } } }
        local f = weft.model("flaky/gpt-4o-mini")
        for _ = 1, 5 do assert.is_false((pcall(f.complete, f, "bad"))) end
        assert.is_string(f:complete({ prompt = "good", timeout = 5 }).text)
        -- three bad calls and one good: only the good one was counted
        assert.are.equal(2, math.floor(model.provider("flaky").limiter:state().limits.rpd.level))
    end)

    it("runs codecs with the JIT off, at a small measured cost", function()
        local B = require "weft._budget"
        local src = "return function(b) local c = b.choices[1] return { text = c.message.content, n = #b.choices } end"
        local on = loadstring(src)()
        local chunk = loadstring(src)
        jit.off(chunk, true)
        local off = chunk()
        local body = json.decode('{"choices":[{"message":{"content":"hello"}}]}')
        local N = 100000
        local t0 = os.clock()
        for _ = 1, N do pcall(on, body) end
        local t1 = os.clock()
        for _ = 1, N do B.call(off, body) end
        local t2 = os.clock()
        print(("\n# codec call: JIT on, pcall %.3f us; JIT off under the budget %.3f us"):format(
            (t1 - t0) / N * 1e6, (t2 - t1) / N * 1e6))
        local ok, v = B.call(off, body)
        assert.is_true(ok)
        assert.are.equal("hello", v.text)
    end)
end)
