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
            { "return { api = 99, name = 'x', kind = 'provider' }", "API version 99 is not supported: this weft loads plugin API 1 to 2 %(the plugin was written for a newer weft%)" },
            { "return { api = 1, name = 'a b', kind = 'provider' }", "name must be" },
            { "return { api = 1, name = 'x', kind = 'gizmo' }", "kind must be" },
            { "return { api = 1, name = 'x', kind = 'provider', encode = function() end }", "must have function decode" },
            { "return { api = 1, name = 'x', kind = 'policy', schema = { n = { type = 'number', default = 'ten' } } }",
              "schema.n: default is a string, not a number" },
            { "return { api = 1, name = 'x', kind = 'policy', schema = { n = { type = 'boolean|nope' } } }",
              "schema.n must be {type = string|number|boolean|table|function" },
            { "return { api = 1, name = 'x', kind = 'policy', schema = { n = { type = 'boolean|table', default = 1 } } }",
              "schema.n: default is a number, not a boolean|table" },
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

    it("takes several types for one option (\"boolean|string|table\")", function()
        local p = assert(plugins.load_file(write("policies/union.lua", [[
            return { api = 2, name = "union", kind = "policy", run = function() end, schema = {
                shared = { type = "boolean|string|table", default = false, description = "a switch, a URL or a table" } } }
        ]])))
        assert.are.same({ shared = false }, plugins.configure(p, {}))
        assert.are.same({ shared = "redis://x" }, plugins.configure(p, { shared = "redis://x" }))
        assert.are.same({ shared = { url = "redis://x" } }, plugins.configure(p, { shared = { url = "redis://x" } }))
        assert.matches("shared must be a boolean or string or table, got number",
            select(2, pcall(plugins.configure, p, { shared = 1 })))
    end)

    ------------------------------------------------------------ plugin API 2

    it("refuses a plugin API this host does not load, naming the versions it does, before anything else", function()
        for _, c in ipairs {
            { 3, "plugin API version 3 is not supported: this weft loads plugin API 1 to 2 %(the plugin was written for a newer weft%)" },
            { 0, "plugin API version 0 is not supported: this weft loads plugin API 1 to 2 %(the plugin was written for an older weft: update it%)" },
            { 1.5, "plugin API version 1.5 is not supported: this weft loads plugin API 1 to 2$" },
        } do
            -- `extends` of a plugin that does not exist: the API is what is reported
            local path = write("providers/future.lua", ("return { api = %s, name = 'future', kind = 'provider', extends = 'nope' }"):format(c[1]))
            local p, err = plugins.load_file(path)
            assert.is_nil(p)
            assert.matches(c[2], err)
        end
        assert.are.same({ 1, 2 }, { plugins.API_MIN, plugins.API })
    end)

    it("API 2 schema fields: description and validate checked, other fields refused", function()
        local function schema_of(field)
            return write("providers/api2.lua", ("return { api = 2, name = 'api2', kind = 'provider', encode = function() end, "
                .. "decode = function() end, classify = function() end, schema = { n = %s } }"):format(field))
        end
        assert.is_table(plugins.load_file(schema_of("{ type = 'number', default = 1, description = 'how many', validate = function() return true end }")))
        assert.matches("schema.n: description must be a string", select(2, plugins.load_file(schema_of("{ type = 'number', description = 5 }"))))
        assert.matches("schema.n: validate must be a function", select(2, plugins.load_file(schema_of("{ type = 'number', validate = 'positive' }"))))
        assert.matches("schema.n: unknown field 'defualt'", select(2, plugins.load_file(schema_of("{ type = 'number', defualt = 1 }"))))
        -- plugin API 1 is as it was: its schema fields are not checked beyond type and default
        local v1 = write("providers/api1.lua", "return { api = 1, name = 'api1', kind = 'provider', encode = function() end, "
            .. "decode = function() end, classify = function() end, schema = { n = { type = 'number', defualt = 1, description = 5 } } }")
        assert.is_table(plugins.load_file(v1))
    end)

    it("runs a schema field's validate at configure time: nil, message fails naming the plugin and the key", function()
        local p = assert(plugins.load_file(write("providers/validated.lua", [[
return { api = 2, name = "validated", kind = "provider", version = "1", secret = false, base_url = "http://127.0.0.1:9",
    encode = function() return { path = "/" } end, decode = function() end, classify = function() end,
    schema = {
        temperature = { type = "number", default = 1, description = "sampling temperature",
                        validate = function(v) if v >= 0 and v <= 2 then return true end return nil, "must be from 0 to 2" end },
        floor = { type = "number", default = 0, description = "at most temperature",
                  validate = function(v, cfg)
                      cfg.temperature = 99 -- its own copy
                      if v <= 1 then return true end
                      return nil, "must be at most 1"
                  end },
        tags = { type = "table", description = "names", validate = function(v) v[1] = "changed" return true end },
        boom = { type = "string", description = "raises", validate = function(v) error("validator broke") end },
        spin = { type = "boolean", description = "loops", validate = function(v) while true do end end },
    },
}
]]), "provider"))
        local tags = { "a" }
        assert.are.same({ temperature = 0.5, floor = 0, tags = { "a" } }, plugins.configure(p, { temperature = 0.5, tags = tags }))
        assert.are.equal("a", tags[1])
        local function fails(cfg) return select(2, pcall(plugins.configure, p, cfg, "config.lua:7")) end
        assert.matches("^config.lua:7: provider validated: temperature: must be from 0 to 2$", fails { temperature = 3 })
        assert.matches("^config.lua:7: provider validated: floor: must be at most 1$", fails { floor = 1.5 })
        assert.matches("provider validated: boom: validate failed: .*validator broke", fails { boom = "x" })
        assert.matches("provider validated: spin: validate exceeded its CPU budget", fails { spin = true })
        -- through weft.configure: the provider and the key are named
        local ok, err = pcall(weft.configure, { providers = { v = { plugin = "validated", temperature = 7 } } })
        assert.is_false(ok)
        assert.matches("providers.v", err, 1, true)
        assert.matches("temperature: must be from 0 to 2", err, 1, true)
    end)

    it("merges tables reached by many paths once: a shared-table chain loads (no walk per path)", function()
        local dag = [[local function dag(n) local t = {} local cur = t
  for i = 1, n do local nxt = { leaf = i } cur.a = nxt cur.b = nxt cur = nxt end
  return t end
]]
        write("providers/dag_base.lua", dag .. [[
return { api = 2, name = "dag_base", kind = "provider", version = "1",
  encode = function() return { path = "/x", body = {} } end,
  decode = function() return {} end, classify = function() return { kind = "transient" } end,
  extra_data = dag(60) }
]])
        write("providers/dag.lua", dag .. [[
return { api = 2, name = "dag", kind = "provider", version = "1", extends = "dag_base", extra_data = dag(60) }
]])
        -- 2^60 paths: done by tables, it loads; done by paths, it would never end
        local p = assert(plugins.load_file(dir .. "/providers/dag.lua", "provider"))
        local t, depth = p.extra_data, 0
        while t.a do t, depth = t.a, depth + 1 end
        assert.are.equal(60, depth)
        assert.are.equal(60, t.leaf)
    end)

    it("merges an API 2 plugin deeply into the plugin it extends (API 1 keeps the shallow merge)", function()
        write("providers/parent2.lua", [[
return { api = 2, name = "parent2", kind = "provider", version = "1", secret = false,
    capabilities = { complete = true, stream = false, embed = true },
    prices = { a = { input = 1, output = 2 } },
    auth = { header = "authorization", format = "Bearer {}" },
    schema = { path = { type = "string", default = "/v1", description = "the path" },
               mode = { type = "string", default = "fast", description = "speed" } },
    stops = { "a", "b", "c" },
    encode = function() return { path = "/parent" } end, decode = function() end, classify = function() end,
}
]])
        local child = assert(plugins.load_file(write("providers/child2.lua", [[
return { api = 2, name = "child2", kind = "provider", version = "2", extends = "parent2",
    capabilities = { embed = false },
    prices = weft.json.null,
    schema = { path = { default = "/v2" }, extra = { type = "number", description = "new" } },
    stops = { "x" },
    encode = function() return { path = "/child" } end,
}
]]), "provider"))
        assert.are.same({ complete = true, stream = false, embed = false }, child.capabilities)
        assert.is_nil(child.prices)
        assert.are.same({ type = "string", default = "/v2", description = "the path" }, child.schema.path)
        assert.are.same({ type = "string", default = "fast", description = "speed" }, child.schema.mode)
        assert.are.same({ type = "number", description = "new" }, child.schema.extra)
        assert.are.same({ "x" }, child.stops) -- a list replaces
        assert.are.equal("/child", child.encode().path)
        assert.is_function(child.decode)
        assert.are.same({ "2", "child2" }, { child.version, child.name })
        -- the parent, loaded again, is as it was
        local parent = assert(plugins.load_file(dir .. "/providers/parent2.lua"))
        assert.are.same({ a = { input = 1, output = 2 } }, parent.prices)
        assert.are.same({ "a", "b", "c" }, parent.stops)
        -- plugin API 1: a table the plugin defines replaces the parent's whole
        local old = assert(plugins.load_file(write("providers/child1.lua", [[
return { api = 1, name = "child1", kind = "provider", extends = "parent2", schema = { extra = { type = "number" } } }
]]), "provider"))
        assert.are.same({ extra = { type = "number" } }, old.schema)
        assert.are.same({ a = { input = 1, output = 2 } }, old.prices)
    end)

    it("openai_compatible no longer repeats openai's schema but has every option of it", function()
        local openai = assert(plugins.load_file(assert(plugins.find("provider", "openai")), "provider"))
        local compat = assert(plugins.load_file(assert(plugins.find("provider", "openai_compatible")), "provider"))
        local f = assert(io.open(plugins.find("provider", "openai_compatible")))
        local src = f:read("*a")
        f:close()
        assert.is_nil(src:find("chat_path", 1, true))
        for k, s in pairs(openai.schema) do
            assert.is_table(compat.schema[k], k)
            assert.are.equal(s.type, compat.schema[k].type, k)
            assert.are.equal(s.default, compat.schema[k].default, k)
            assert.are.equal(s.validate == nil, compat.schema[k].validate == nil, k)
        end
        for k in pairs(compat.schema) do assert.is_table(openai.schema[k], k) end
        assert.matches("false for servers that do not send one", compat.schema.stream_usage.description, 1, true)
        assert.are_not.equal(openai.schema.stream_usage.description, compat.schema.stream_usage.description)
        assert.are.same({ false, false, nil, 2 }, { compat.base_url, compat.secret, compat.prices, compat.api })
        assert.are.same(openai.capabilities, compat.capabilities)
        assert.are.same(openai.auth, compat.auth)
        assert.is_table(compat.batch)
        assert.matches("chat_path: must be a path starting with /",
            select(2, pcall(plugins.configure, compat, { chat_path = "v1/chat" })))
    end)
end)
