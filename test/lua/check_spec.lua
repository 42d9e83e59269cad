-- check_spec.lua: weft check (lua/weft/check.lua) on the cases issue 17
-- names: a file whose name is not the one it declares (weft would find it
-- and then refuse it at the first call), a plugin that `extends` another
-- and has no fixtures of its own (its parent's are replayed, wherever the
-- parent is), plugin API 2 schema fields, and every finding printed once
-- (a file that did not load was also a log line with the same text).
local check = require "weft.check"
local plugins = require "weft.plugins"
local log = require "weft.log"

local pd = require "plugin_dir" ()
local write = pd.write

local CODEC = [[
return { api = 2, name = %q, kind = "provider", version = "1", secret = false, base_url = "http://127.0.0.1:9",
    encode = function(op, req) return { path = "/v1/chat/completions", body = { model = req.model } } end,
    decode = function() return { text = "", finish_reason = "stop" } end,
    classify = function(status) return { kind = weft.codec.status_kind(status) } end,
}
]]

-- The lines weft check prints for `path`, and the log lines written meanwhile.
local function run(path)
    local printed, logged = {}, {}
    local saved_print = _G.print
    local saved = {}
    for _, level in ipairs { "debug", "info", "warn", "error" } do
        saved[level] = log[level]
        log[level] = function(msg, fields)
            logged[#logged + 1] = msg .. " " .. require("weft.json").encode(fields or {})
        end
    end
    _G.print = function(s) printed[#printed + 1] = s end
    local ok, rc = pcall(check.main, path)
    _G.print = saved_print
    for level, f in pairs(saved) do log[level] = f end
    assert(ok, rc)
    return printed, logged, rc
end

local function count(lines, text)
    local n = 0
    for _, l in ipairs(lines) do
        if l:find(text, 1, true) then n = n + 1 end
    end
    return n
end

describe("weft check", function()
    after_each(function() plugins.reset() end)
    teardown(pd.remove)

    it("prints each finding once: a file that does not load is not also a log line", function()
        local cases = {
            { write("nofunc", "return { api = 2, name = 'nofunc', kind = 'provider' }"), "a provider must have function encode" },
            { write("syntax", "return { api = 2,\n name = 'syntax' kind = 'provider' }"), "syntax.lua:2:" },
            { write("future", "return { api = 9, name = 'future', kind = 'provider' }"), "plugin API version 9 is not supported" },
        }
        for _, c in ipairs(cases) do
            local printed, logged, rc = run(c[1])
            assert.are.equal(1, rc)
            assert.are.equal(1, count(printed, c[2]), table.concat(printed, "\n"))
            assert.are.equal(0, count(logged, c[2]), table.concat(logged, "\n"))
        end
        -- and a plugin that passes: no line twice
        local printed = run("../../plugins/providers/openai.lua")
        local seen = {}
        for _, l in ipairs(printed) do
            assert.is_nil(seen[l], "printed twice: " .. l)
            seen[l] = true
        end
    end)

    it("refuses a file whose name is not the name it declares", function()
        local path = write("wrongname", CODEC:format("rightname"))
        local F = check.file(path)
        assert.are.equal(1, F.errors)
        assert.are.equal(1, count(F.lines, "error    declares name 'rightname' but the file is wrongname.lua: weft looks a "
            .. "plugin up as providers/rightname.lua"))
        -- which is what a configuration using it would run into
        local _, err = plugins.get("provider", "wrongname")
        assert.matches("declares name 'rightname', expected 'wrongname'", err)
        assert.are.equal(0, check.file(write("rightname", CODEC:format("rightname"))).errors)
    end)

    it("replays the fixtures of the plugin an extending plugin inherits from when it has none", function()
        write("groq", [[
return { api = 2, name = "groq", kind = "provider", version = "1", extends = "openai",
         base_url = "https://api.groq.com/openai", secret = false }
]])
        write("deeper", [[
return { api = 2, name = "deeper", kind = "provider", version = "1", extends = "openai_compatible",
         base_url = "http://127.0.0.1:8000" }
]])
        local shipped = plugins.find("provider", "openai"):gsub("%.lua$", ".fixtures.lua")
        for _, name in ipairs { "groq", "deeper" } do
            local F = check.file(pd.dir .. "/providers/" .. name .. ".lua")
            assert.are.equal(0, F.errors, table.concat(F.lines, "\n"))
            assert.are.equal(1, count(F.lines, "ok       fixtures from " .. shipped), table.concat(F.lines, "\n"))
            assert.are.equal(1, count(F.lines, "classify 5 (HTTP 429) -> rate_limited"))
            assert.are.equal(0, count(F.lines, "no fixtures"))
        end
        -- its own fixtures come first
        write("groq.fixtures", [[return { errors = { { status = 429, body = "{}", kind = "rate_limited" } } }]])
        local F = check.file(pd.dir .. "/providers/groq.lua")
        assert.are.equal(1, count(F.lines, "fixtures from " .. pd.dir .. "/providers/groq.fixtures.lua"))
        assert.are.equal(1, count(F.lines, "classify 1 (HTTP 429) -> rate_limited"))
        assert.are.equal(0, count(F.lines, "classify 2"))
    end)

    it("runs the schema's validators on the defaults and names fields without a description (API 2)", function()
        local path = write("strict", [[
return { api = 2, name = "strict", kind = "provider", version = "1", secret = false, base_url = "http://127.0.0.1:9",
    schema = { mode = { type = "string", default = "slow", description = "fast or slower",
                        validate = function(v) if v == "fast" then return true end return nil, "must be fast" end },
               a = { type = "number" }, b = { type = "string" } },
    encode = function() return { path = "/" } end, decode = function() end, classify = function() end,
}
]])
        local F = check.file(path)
        assert.are.equal(1, count(F.lines, "error    configuration: provider strict: mode: must be fast"), table.concat(F.lines, "\n"))
        assert.are.equal(1, count(F.lines, "warning  schema fields without a description: a, b"))
    end)
end)
