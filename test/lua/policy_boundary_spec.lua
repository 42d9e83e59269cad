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
    local function use(name, run)
        local f = assert(io.open(dir .. "/policies/" .. name .. ".lua", "w"))
        f:write(("return { api = 1, kind = 'policy', name = %q, version = '1', run = %s }"):format(name, run))
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
