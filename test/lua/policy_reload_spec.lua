-- policy_reload_spec.lua: a policy plugin is hot-reloaded like a provider.
-- 48 tasks call through a policy model for 30 s while its file is
-- rewritten 50 times, 10 of them broken in different ways: no call fails,
-- no broken version is ever served, every good version is served, and
-- every broken one is counted as a failed load.
local model = require "weft.model"
local plugins = require "weft.plugins"
local policy = require "weft.policy"
local mockmod = weft.mock
local value = weft.metrics.value

local OPENAI = "openai/gpt-4o-mini"

local function good(v)
    return ([[
return {
    api = 1, kind = "policy", name = "hot", version = "good-%d",
    schema = { note = { type = "string", default = "" } },
    run = function(req, targets, api, cfg)
        local ok, res = api.call(1, nil, "v%d")
        if ok then return res end
        return nil, res
    end,
}
]]):format(v, v)
end

-- Ten ways to be broken; each carries a version no call may report.
local BROKEN = {
    "return { api = 1, kind = 'policy', name = 'hot', version = 'broken-syntax', run = function( end }",
    "error('failed while loading')",
    "return { api = 1, kind = 'policy', name = 'hot', version = 'broken-norun', schema = { note = { type = 'string' } } }",
    "return { api = 1, kind = 'provider', name = 'hot', version = 'broken-kind', run = function() end }",
    "return { api = 1, kind = 'policy', name = 'other', version = 'broken-name', schema = { note = { type = 'string' } }, run = function() end }",
    "return { api = 99, kind = 'policy', name = 'hot', version = 'broken-api', run = function() end }",
    "return { api = 1, kind = 'policy', name = 'hot', version = 'broken-schema', schema = { note = { type = 'string', default = 5 } }, run = function() end }",
    -- no longer accepts the configuration that uses it (note)
    "return { api = 1, kind = 'policy', name = 'hot', version = 'broken-config', run = function(req, t, api) local ok, r = api.call(1) return r end }",
    "while true do end",
    "return { api = 1, kind = 'policy', name = 'hot', version = 'broken-check', schema = { note = { type = 'string' } }, check = function() return nil, 'no' end, run = function() end }",
}

describe("policy plugins: hot reload under load", function()
    local dir, mock

    setup(function()
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir .. "/policies") == 0)
        plugins.add_dir(dir)
        -- no provider rate limit: the calls are as many as the loop allows
        mock = mockmod.start { port = 0, limits = { rpm = 1e9, tpm = 1e12 } }
    end)
    teardown(function()
        mock:close()
        os.execute("rm -rf " .. dir)
    end)

    -- a new file (new inode) in one step, as editors and deploys do
    local function put(text)
        local path = dir .. "/policies/hot.lua"
        local f = assert(io.open(path .. ".tmp", "w"))
        f:write(text)
        f:close()
        assert(os.rename(path .. ".tmp", path))
    end

    local function wait_for(cond, what)
        for _ = 1, 1000 do
            if cond() then return end
            weft.sleep(0.01)
        end
        error("never happened: " .. what)
    end

    it("serves every good version, never a broken one, and fails no call", function()
        put(good(0))
        model.reset()
        policy.reset()
        weft.configure {
            providers = { openai = { base_url = mock.url, breaker = false,
                                     secret = weft.secrets.value("reload-key", mockmod.DEFAULT_KEYS.openai) } },
            models = { hotpol = { policy = "hot", targets = { OPENAI }, note = "kept" } },
        }
        local entry = plugins.registry["policy/hot"]
        assert.is_not_nil(entry)
        local failed_before = value("weft_plugin_loads_total", { plugin = "policy/hot", outcome = "failed" }) or 0
        local served, failures, stop = {}, {}, false
        local m = weft.model("hotpol")
        local tasks = {}
        for w = 1, 48 do
            tasks[w] = weft.spawn(function()
                while not stop do
                    local ok, r = pcall(m.complete, m, "task " .. w)
                    if ok then
                        served[r.policy_version] = (served[r.policy_version] or 0) + 1
                    else
                        failures[#failures + 1] = tostring(r)
                        weft.sleep(0.01) -- recorded; do not spin on a failure that needs no wait
                    end
                end
            end)
        end
        local bad_at = {}
        for k = 1, 10 do bad_at[k * 5] = k end
        local t0 = weft.now()
        for v = 1, 50 do
            local b = bad_at[v]
            if b then
                local fails = entry.failures
                put(BROKEN[b] .. "\n-- " .. v)
                wait_for(function() return entry.failures > fails end, "broken version " .. b .. " refused")
            else
                put(good(v))
                wait_for(function() return entry.plugin.version == "good-" .. v end, "version " .. v .. " loaded")
                wait_for(function() return (served["good-" .. v] or 0) > 0 end, "version " .. v .. " served")
            end
            -- spread the 50 rewrites over about 30 s
            local due = t0 + 30 * v / 50
            if weft.now() < due then weft.sleep(due - weft.now()) end
        end
        stop = true
        for _, t in ipairs(tasks) do t:wait() end
        local total = 0
        for version, count in pairs(served) do
            assert.is_nil(version:match("^broken"), "a broken version was served: " .. version)
            total = total + count
        end
        for v = 0, 50 do
            if not bad_at[v] then assert.is_true((served["good-" .. v] or 0) > 0, "good-" .. v .. " never served") end
        end
        print(("\n# policy reload: %d calls in %.1f s through 40 good and 10 broken versions, %d failed"):format(
            total, weft.now() - t0, #failures))
        assert.are.same({}, failures)
        assert.are.equal(10, (value("weft_plugin_loads_total", { plugin = "policy/hot", outcome = "failed" }) or 0) - failed_before)
    end)
end)
