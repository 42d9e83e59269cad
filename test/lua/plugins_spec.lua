-- plugins_spec.lua: weft.plugins: finding, sandboxed loading, validation,
-- configuration with defaults, load metrics.
local plugins = require "weft.plugins"
local value = weft.metrics.value

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/providers " .. dir .. "/policies") == 0)

local function write(rel, text)
    local f = assert(io.open(dir .. "/" .. rel, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. rel
end

local GOOD = [[
return {
    api = 1, name = "%s", kind = "provider", version = "1.0",
    schema = { base_url = { type = "string", default = "http://x" }, timeout = { type = "number", default = 30 },
               key = { type = "string", required = true } },
    encode = function(req) return { method = "POST", path = "/v1", body = weft.json.encode(req) } end,
    decode = function(res) return res end,
    classify = function(res) return nil end,
}
]]

describe("weft.plugins", function()
    teardown(function() os.execute("rm -rf " .. dir) end)

    it("finds plugins on the search path, added directories first", function()
        write("providers/echo.lua", GOOD:format("echo"))
        plugins.add_dir(dir)
        assert.are.equal(dir .. "/providers/echo.lua", plugins.find("provider", "echo"))
        local none, looked = plugins.find("provider", "nope")
        assert.is_nil(none)
        assert.matches(dir .. "/providers/nope.lua", looked, 1, true)
        assert.matches("invalid plugin name", select(2, pcall(plugins.find, "provider", "../etc")))
    end)

    it("loads a valid plugin in a sandbox and counts the load", function()
        local before = value("weft_plugin_loads_total", { plugin = "provider/echo", outcome = "ok" }) or 0
        local p = assert(plugins.load_file(dir .. "/providers/echo.lua", "provider"))
        assert.are.equal("echo", p.name)
        assert.are.same({ method = "POST", path = "/v1", body = '{"a":1}' }, p.encode({ a = 1 }))
        assert.are.equal(before + 1, value("weft_plugin_loads_total", { plugin = "provider/echo", outcome = "ok" }))
    end)

    it("refuses broken plugins with the file (and line) in the message", function()
        local cases = {
            { "return {\n api = 1,\n name = \"x\" kind = 1 }", "syntax.lua:3:" },
            { "local t = nil\nreturn t.field", "error while loading: .*runtime.lua:2:" },
            { "return 42", "must return a table" },
            { "return { name = 'x', kind = 'provider' }", "missing api" },
            { "return { api = 99, name = 'x', kind = 'provider' }", "API version 99 is not supported %(this weft loads 1 to 1%)" },
            { "return { api = 1, name = 'a b', kind = 'provider' }", "name must be" },
            { "return { api = 1, name = 'x', kind = 'gizmo' }", "kind must be" },
            { "return { api = 1, name = 'x', kind = 'provider', encode = function() end }", "must have function decode" },
            { "return { api = 1, name = 'x', kind = 'policy', schema = { n = { type = 'number', default = 'ten' } } }",
              "schema.n: default is a string, not a number" },
        }
        for i, c in ipairs(cases) do
            local name = i == 1 and "syntax" or (i == 2 and "runtime" or ("bad" .. i))
            local path = write("providers/" .. name .. ".lua", c[1])
            local p, err = plugins.load_file(path)
            assert.is_nil(p)
            assert.matches(c[2], err)
            assert.matches(path:gsub("%p", "%%%0"), err)
        end
        assert.are.equal(1, value("weft_plugin_loads_total", { plugin = "syntax", outcome = "failed" }))
        assert.matches("kind is provider, expected policy",
            select(2, plugins.load_file(dir .. "/providers/echo.lua", "policy")))
    end)

    it("gives each plugin its own environment, without io, os.execute, debug or require", function()
        local path = write("policies/probe.lua", [[
            leaked_global = "from probe"
            string.upper = function() return "hijacked" end
            weft.json.encode = function() return "hijacked" end
            return { api = 1, name = "probe", kind = "policy", run = function() end, seen = {
                io = io, execute = os.execute, popen = io and io.popen, debug = debug, require = require,
                load = load, loadstring = loadstring, dofile = dofile, loadfile = loadfile,
                strmt = getmetatable(""), setfenv = setfenv, getfenv = getfenv, package = package,
                ffi = package and package.loaded and package.loaded.ffi } }
        ]])
        local p = assert(plugins.load_file(path))
        for k in pairs { io = 1, execute = 1, popen = 1, debug = 1, require = 1, load = 1, loadstring = 1,
                         dofile = 1, loadfile = 1, strmt = 1, setfenv = 1, getfenv = 1, package = 1, ffi = 1 } do
            assert.is_nil(p.seen[k], k .. " is reachable from a plugin")
        end
        assert.is_nil(rawget(_G, "leaked_global"))
        assert.are.equal("ABC", ("abc"):upper())
        assert.are.equal('{"a":1}', weft.json.encode { a = 1 })
        local q = assert(plugins.load_file(write("policies/other.lua",
            "return { api = 1, name = 'other', kind = 'policy', run = function() end, g = leaked_global }")))
        assert.is_nil(q.g)
    end)

    it("configures a plugin from its schema: defaults, types, unknown and missing keys", function()
        local p = assert(plugins.load_file(dir .. "/providers/echo.lua"))
        assert.are.same({ base_url = "http://x", timeout = 30, key = "k" }, plugins.configure(p, { key = "k" }))
        assert.are.same({ base_url = "http://y", timeout = 5, key = "k" },
            plugins.configure(p, { base_url = "http://y", timeout = 5, key = "k" }))
        assert.matches("config.lua:3: provider echo: unknown key 'timout'",
            select(2, pcall(plugins.configure, p, { timout = 5, key = "k" }, "config.lua:3")))
        assert.matches("timeout must be a number, got string",
            select(2, pcall(plugins.configure, p, { timeout = "5", key = "k" })))
        assert.matches("missing required key 'key'", select(2, pcall(plugins.configure, p, {})))
    end)
end)
