-- policy_boundary_spec.lua: a policy plugin is untrusted code like a
-- provider plugin. It runs under the plugin budget between API calls, sees
-- copies only, can only return what a target produced (or an error), and
-- a broken one fails its own calls and nothing else.
local model = require "weft.model"
local plugins = require "weft.plugins"
local policy = require "weft.policy"
local mockmod = weft.mock
local value = weft.metrics.value

local OPENAI = "openai/gpt-4o-mini"

describe("policy plugins at the boundary", function()
    local dir, mock, n = nil, nil, 0

    setup(function()
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir .. "/policies") == 0)
        plugins.add_dir(dir)
        mock = mockmod.start { port = 0 }
    end)
    teardown(function()
        mock:close()
        os.execute("rm -rf " .. dir)
    end)

    -- policy `name` with body `run`, and a model `name` using it over openai
    local function use(name, run, first)
        local f = assert(io.open(dir .. "/policies/" .. name .. ".lua", "w"))
        f:write(("return { api = 1, kind = 'policy', name = %q, version = '1', run = %s%s }"):format(name, run,
            first and (", first = " .. first) or ""))
        f:close()
        model.reset()
        policy.reset()
        n = n + 1
        weft.configure {
            providers = { openai = { base_url = mock.url, breaker = false,
                                     secret = weft.secrets.value("boundary-" .. n, mockmod.DEFAULT_KEYS.openai) } },
            models = { [name] = { policy = name, targets = { OPENAI } } },
        }
        return weft.model(name)
    end

    local function fails(m, req)
        local ok, err = pcall(m.complete, m, req or "Hi")
        assert.is_false(ok)
        return err
    end

    it("a run that never ends runs out of budget, fails its call, and the next call works", function()
        local m = use("spin", "function(req, t, api) while true do end end")
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("policy spin", err.message)
        assert.matches("CPU budget", err.message)
        assert.are.equal(1, value("weft_plugin_budget_exceeded_total", { plugin = "spin", limit = "instructions" }))
        assert.are.equal("echo: Hi", weft.model(OPENAI):complete("Hi").text)
    end)

    it("a loop around the API is cut after its bound of API calls", function()
        local m = use("chatty", "function(req, t, api) while true do api.decide(1, 'again') end end")
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("more than 10000 API calls", err.message)
    end)

    it("cannot return a result no target produced, nor pass off a changed one", function()
        local m = use("forger", "function(req, t, api) return { text = 'forged', usage = { input = 0, output = 0 } } end")
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("no target produced", err.message)
        m = use("tamper", "function(req, t, api) local ok, r = api.call(1) r.text = 'tampered' r.provider = 'nobody' return r end")
        local r = m:complete("Hi")
        assert.are.equal("echo: Hi", r.text)
        assert.are.equal("openai", r.provider)
    end)

    it("sees a copy of the request: changing it changes neither the caller's nor what the target gets", function()
        local m = use("mutate", "function(req, t, api) req.messages[1].content = 'changed' local ok, r = api.call(1) return r end")
        local req = { messages = { { role = "user", content = "original" } } }
        local r = m:complete(req)
        assert.are.equal("echo: original", r.text)
        assert.are.equal("original", req.messages[1].content)
    end)

    it("may raise an error value of its own; other errors name the policy", function()
        local m = use("refuse", "function() error(weft.error.new('quota_exhausted', 'monthly budget spent')) end")
        local err = fails(m)
        assert.are.equal("quota_exhausted", err.kind)
        assert.are.equal("monthly budget spent", err.message)
        m = use("oops", "function() error('something broke') end")
        err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("policy oops %(plugin oops 1%): .*something broke", err.message)
        m = use("badtarget", "function(req, t, api) return api.call(7) end")
        err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("no target 7", err.message)
    end)

    it("has no coroutine library and no host functions in its sandbox", function()
        local m = use("probe", "function(req, t, api) if coroutine or io or require or debug then return nil, 'reachable' end return nil, weft.error.new('cancelled', 'clean') end")
        local err = fails(m)
        assert.are.equal("cancelled", err.kind)
        assert.are.equal("clean", err.message)
    end)

    it("has one budget for the whole call, however many API calls split it", function()
        -- 100 slices of 3 M instructions: each under the 10 M limit, together far over it
        local m = use("hog", "function(req, t, api) for i = 1, 100 do local x = 0 for j = 1, 3000000 do x = x + j end api.decide(1, 'again') end local ok, r = api.call(1) return r end")
        local before = mock:stats().requests
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("CPU budget %(10000000 instructions%)", err.message)
        assert.are.equal(before, mock:stats().requests)
    end)

    it("reads what the plugin hands the API as plain data: its metamethods never run in the host", function()
        local m = use("evil", "function(req, t, api) return api.race(setmetatable({}, { __index = function() while true do end end })) end")
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("expected a non%-empty list", err.message)
        local seen
        local off = weft.on("escalate", function(ev) seen = ev end)
        m = use("esc", [[function(req, t, api)
            local e = weft.error.new('auth', 'forged')
            rawset(e, 'message', setmetatable({}, { __tostring = function() while true do end end }))
            api.escalate(1, e)
            return nil, weft.error.new('invalid_request', 'done')
        end]])
        fails(m)
        off()
        -- an error no target raised says nothing to the subscribers
        assert.are.equal(OPENAI, seen.target)
        assert.is_nil(seen.kind)
        assert.is_nil(seen.message)
    end)

    it("checks every race entry before starting any, and leaves nothing running", function()
        local m = use("badrace", "function(req, t, api) return api.race { { target = 1 }, { target = 9 } } end")
        local before, tasks = mock:stats().requests, weft.stats().tasks
        local err = fails(m)
        assert.matches("no target 9", err.message)
        -- no race entry was started: no task left behind, nothing sent
        assert.are.equal(tasks, weft.stats().tasks)
        assert.are.equal(before, mock:stats().requests)
    end)

    it("bounds target calls per call, api.all and api.race included", function()
        local m = use("fan", "function(req, t, api) local l = {} for i = 1, 300 do l[i] = { target = 1 } end local rs = api.all(l) return rs[1].result end")
        local before = mock:stats().requests
        local err = fails(m)
        assert.matches("more than 100 target calls", err.message)
        assert.are.equal(before, mock:stats().requests)
    end)

    it("cannot crowd the decisions metric: odd reasons are 'other', at most 64 series a model", function()
        local m = use("noisy", "function(req, t, api) for i = 1, 200 do api.decide(nil, 'r' .. i) end api.decide(nil, 'bad reason!') local ok, r = api.call(1) return r end")
        m:complete("Hi")
        assert.are.equal(1, value("weft_policy_decisions_total", { policy = "noisy", target = "-", reason = "r1" }))
        assert.is_nil(value("weft_policy_decisions_total", { policy = "noisy", target = "-", reason = "r100" }))
        assert.is_true(value("weft_policy_decisions_total", { policy = "noisy", target = "-", reason = "other" }) > 100)
    end)

    it("cannot pass off a target's result as an error", function()
        local m = use("flip", "function(req, t, api) local ok, r = api.call(1) return nil, r end")
        local err = fails(m)
        assert.is_true(weft.error.is(err))
        assert.are.equal("integration", err.kind)
        assert.matches("result as its error", err.message)
    end)

    it("a first choice that is not a target, or that never ends, fails its call only", function()
        local function first_plugin(name, first)
            return use(name, "function(req, t, api) local ok, r = api.call(1) return r end", first)
        end
        local m = first_plugin("firstbad", "function() return 7 end")
        local err = fails(m)
        assert.are.equal("integration", err.kind)
        assert.matches("not a target's index", err.message)
        m = first_plugin("firstspin", "function() while true do end end")
        err = fails(m)
        assert.matches("first exceeded its CPU budget", err.message)
        -- a first choice that fails hands run the error, and run goes on
        m = first_plugin("firstok", "function(op, t, states) assert(states[1].breaker == 'closed') assert(states[2] == nil) return 1, 'pick' end")
        assert.are.equal("echo: Hi", m:complete("Hi").text)
        assert.are.equal(1, value("weft_policy_decisions_total", { policy = "firstok", target = OPENAI, reason = "pick" }))
    end)

    it("cannot send requests anywhere but its targets: a semantic cache model it names is ignored", function()
        local m = use("sneaky", "function(req, t, api) local ok, r = api.cached(1, { semantic = 'openai/text-embedding-3-small' }) return r end")
        local before = mock:stats().requests
        assert.are.equal("echo: Hi", m:complete("Hi").text)
        assert.are.equal(before + 1, mock:stats().requests) -- the target only: no embedding call
        assert.is_nil(mock:stats().by_model["text-embedding-3-small"])
    end)

    it("weft check drives a policy and fails one that forges results", function()
        local path = dir .. "/policies/forger.lua"
        local F = require("weft.check").file(path)
        assert.is_true(F.errors >= 1)
        local text = table.concat(F.lines, "\n")
        assert.matches("no target produced", text)
        F = require("weft.check").file("../../plugins/policies/fallback.lua")
        assert.are.equal(0, F.errors)
    end)
end)
