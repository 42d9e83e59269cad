-- sandbox_spec.lua: nothing a plugin can reach is shared mutable state
-- (issue 14, "the sandbox shares mutable host state"). Each escape the
-- review found is tried by a real plugin, then a plugin walks every value
-- reachable from its environment (tables, keys, metatables) and writes to
-- all of them; the host's own graph is then searched for its marks.
local model = require "weft.model"
local plugins = require "weft.plugins"
local errors = require "weft.error"
local json = weft.json

local pd = require "plugin_dir" ()
local write = pd.write


local MARK = "__weft_escape_mark"
local KEY = weft.mock.DEFAULT_KEYS.openai

-- The text of the first message of the n-th request the mock saw.
local function sent(mock, n)
    local reqs = mock:requests()
    return json.decode(reqs[n or #reqs].body).messages[1].content
end

-- A minimal OpenAI-dialect codec with `body` spliced in as its encode's
-- first statements (`req` and `cfg` in scope) and `load` run at load time.
local function codec(name, load, body)
    return ([[
local MARK = %q
%s
return {
    api = 1, name = %q, kind = "provider", version = "1", secret = false,
    encode = function(op, req, cfg)
        %s
        return { path = "/v1/chat/completions", body = { model = req.model, messages = req.messages } }
    end,
    decode = function(op, body, req, cfg)
        local c = body.choices[1]
        return { text = c.message.content, usage = { input = body.usage.prompt_tokens, output = body.usage.completion_tokens } }
    end,
    classify = function(status, headers, body, cfg) return { kind = status == 429 and "rate_limited" or "transient" } end,
}
]]):format(MARK, load or "", name, body or "")
end

-- Everything reachable from the host's roots through table keys, values
-- and metatables (raw): the registry, the globals, the string metatable.
-- `skip(t, k)` leaves out a field (tables that are the plugin's own).
local function host_tables(skip)
    local seen, list = {}, {}
    local function visit(v)
        if type(v) ~= "table" or seen[v] then return end
        seen[v] = true
        list[#list + 1] = v
        for k, x in next, v do
            visit(k)
            if not (skip and skip(v, k)) then visit(x) end
        end
        visit(debug.getmetatable(v))
    end
    visit(debug.getregistry())
    visit(_G)
    visit(debug.getmetatable(""))
    return list
end

-- The instance's per-version plugin configurations are copies made for
-- the plugin: the plugin may write to them.
local function plugin_owned(t, k) return k == "cfgs" end

describe("the plugin sandbox", function()
    local mock
    before_each(function()
        model.reset()
        mock = weft.mock.start { port = 0 }
    end)
    after_each(function()
        mock:close()
        plugins.reset()
    end)
    teardown(pd.remove)

    local function call(name, req)
        weft.configure { providers = { [name] = { base_url = mock.url, secret = weft.secrets.value("sb-" .. name, KEY),
                                                  retry = { max_attempts = 1 }, breaker = false } } }
        return weft.model(name .. "/gpt-4o-mini"):complete(req or "hi")
    end

    it("keeps every escape the review found inside the plugin", function()
        write("escaper", codec("escaper", [[
            local results = {}
            local function try(name, f) local ok, e = pcall(f) results[#results + 1] = name .. "=" .. tostring(ok) end
            try("kinds_add", function() weft.error.KINDS.pwned = true end)
            try("kinds_delete", function() weft.error.KINDS.auth = nil weft.error.KINDS.transient = nil end)
            try("empty_array_index", function() weft.json.empty_array[1] = "POISON" end)
            try("empty_array_rawset", function() rawset(weft.json.empty_array, 1, "POISON") end)
            try("error_mt", function() getmetatable(weft.error.new("transient")).__tostring = function() return "pwned" end end)
            try("error_setmt", function() setmetatable(weft.error.new("transient"), {}) end)
            try("array_mt", function() getmetatable(weft.json.array()).__index = function() return "pwned" end end)
            try("log_level", function() weft.log.level("off") end)
            try("log_format", function() weft.log.format("logfmt") end)
            try("string_mt", function() getmetatable("").__index.upper = function() return "pwned" end end)
            try("string_lib", function() string.upper = function() return "pwned" end end)
            try("randomseed", function() math.randomseed(42) end)
            try("dump", function() return string.dump(function() end) end)
            MODULE_RESULTS = results
        ]], [[
            req.messages[1].content = "mutated by the plugin"
            req.messages[2] = { role = "user", content = "added by the plugin" }
            req.model = "pwned-model"
            cfg.injected = true
        ]]))
        local req = { messages = { { role = "user", content = "the caller's words" } } }
        local r = call("escaper", req)
        assert.are.equal("string", type(r.text))
        -- the caller's request is untouched
        assert.are.equal("the caller's words", req.messages[1].content)
        assert.is_nil(req.messages[2])
        assert.is_nil(req.model)
        -- the host's shared state is untouched
        assert.is_nil(errors.KINDS.pwned)
        assert.is_true(errors.KINDS.auth)
        assert.is_true(errors.KINDS.transient)
        assert.are.equal('{"x":[]}', json.encode { x = json.empty_array })
        assert.is_nil(rawget(json.empty_array, 1))
        assert.are.equal('{"x":[]}', json.encode { x = json.array() })
        assert.matches("^transient: boom", tostring(errors.new("transient", "boom")))
        assert.are.equal("weft.error", getmetatable(errors.new("transient")))
        assert.are.equal("A", ("a"):upper())
        assert.are.equal("A", string.upper("a"))
        assert.are_not.equal("off", weft.log.level())
        -- a 401 of another provider is still an auth error (KINDS.auth intact)
        mock:set_faults { { dialect = "openai", sequence = { 401 } } }
        weft.configure { providers = { openai = { base_url = mock.url, secret = weft.secrets.value("sb-key", KEY),
                                                  retry = { max_attempts = 1 }, breaker = false } } }
        local ok, err = pcall(function() return weft.model("openai/gpt-4o-mini"):complete("x") end)
        assert.is_false(ok)
        assert.are.equal("auth", err.kind)
    end)

    it("lets the plugin change a text prompt's request, which is the call's own, and copies the model's defaults", function()
        -- A request made from a text is the call's alone (the plugin gets it
        -- without a copy); a default of the model that is a table is shared
        -- by every call of the model, so what the plugin gets is a copy.
        write("scribbler", [[
return {
    api = 1, name = "scribbler", kind = "provider", version = "1", secret = false,
    encode = function(op, req, cfg)
        local seen = { content = req.messages[1].content, n = #req.messages, extra = req.extra and req.extra.k }
        req.messages[1].content = "changed by the plugin"
        req.messages[2] = { role = "user", content = "added by the plugin" }
        if req.extra then req.extra.k = "changed by the plugin" end
        return { path = "/v1/chat/completions", body = { model = req.model, messages = req.messages, seen = seen } }
    end,
    decode = function(op, body) return { text = body.choices[1].message.content } end,
    classify = function(status) return { kind = "transient" } end,
}
]])
        weft.configure { providers = { scribbler = { base_url = mock.url, secret = weft.secrets.value("sb-scribbler", KEY),
                                                     retry = { max_attempts = 1 }, breaker = false } } }
        local extra = { k = "the model's" }
        local plain = weft.model("scribbler/gpt-4o-mini")
        local shared = weft.model("scribbler/gpt-4o-mini", { extra = extra, max_tokens = 8 })
        for _ = 1, 2 do
            plain:complete("first words")
            shared:complete("second words")
        end
        assert.are.equal("the model's", extra.k)
        local reqs = mock:requests()
        assert.are.equal(4, #reqs)
        for i, r in ipairs(reqs) do
            local b = json.decode(r.body)
            -- each call's plugin saw the request as the caller made it ...
            assert.are.same({ content = i % 2 == 1 and "first words" or "second words", n = 1,
                              extra = i % 2 == 0 and "the model's" or nil }, b.seen, i)
            -- ... and sent what it made of it
            assert.are.equal("changed by the plugin", b.messages[1].content, i)
            assert.are.equal("added by the plugin", b.messages[2].content, i)
        end
    end)

    it("hands out protected metatables and no way to reseed or dump", function()
        write("probe", codec("probe", [[
            PROBE = {
                err_mt = getmetatable(weft.error.new("transient")),
                arr_mt = getmetatable(weft.json.array()),
                empty_mt = getmetatable(weft.json.empty_array),
                str_mt = getmetatable(""),
                seed = math.randomseed, dump = string.dump, level = weft.log.level,
                jit = jit, debug = debug, io = io, require = require, load = load, loadstring = loadstring,
                setfenv = setfenv, getfenv = getfenv, collectgarbage = collectgarbage, newproxy = newproxy,
                coroutine = coroutine, os_exit = os.exit, os_execute = os.execute, os_getenv = os.getenv,
            }
        ]], [[
            local out = {}
            for k, v in pairs(PROBE) do out[#out + 1] = k .. "=" .. tostring(v) end
            table.sort(out)
            req.messages = { { role = "user", content = table.concat(out, " ") } }
        ]]))
        local r = call("probe")
        -- the mock answers with a text derived from the prompt; read what the plugin saw from the request log
        local seen = sent(mock, 1)
        assert.matches("err_mt=weft.error", seen, 1, true)
        assert.matches("arr_mt=weft.json.array", seen, 1, true)
        assert.matches("empty_mt=weft.json.empty_array", seen, 1, true)
        for _, k in ipairs { "str_mt", "seed", "dump", "level", "jit", "debug", "io", "require", "load", "loadstring",
                             "setfenv", "getfenv", "collectgarbage", "newproxy", "coroutine", "os_exit",
                             "os_execute", "os_getenv" } do
            assert.is_nil(seen:find(k .. "=", 1, true), k .. " is reachable: " .. seen)
        end
        assert.is_string(r.text)
    end)

    it("lets a plugin write to everything it can reach, and none of it reaches the host", function()
        local WALK = [[
            local seen, stats = {}, { tables = 0, written = 0, refused = 0 }
            local function walk(v, depth)
                if depth > 60 then return end
                local tv = type(v)
                if tv == "string" or tv == "number" or tv == "boolean" or tv == "function" or tv == "nil" then
                    local mt = getmetatable(v)
                    if mt ~= nil then walk(mt, depth + 1) end
                    return
                end
                if tv ~= "table" or seen[v] then return end
                seen[v] = true
                stats.tables = stats.tables + 1
                local pairs_list = {}
                for k, x in pairs(v) do pairs_list[#pairs_list + 1] = { k, x } end
                for _, kv in ipairs(pairs_list) do walk(kv[1], depth + 1) walk(kv[2], depth + 1) end
                local mt = getmetatable(v)
                if mt ~= nil then walk(mt, depth + 1) end
                if pcall(rawset, v, MARK, true) then stats.written = stats.written + 1 else stats.refused = stats.refused + 1 end
                pcall(function() v[MARK .. "_index"] = true end)
            end
            return walk, seen, stats
        ]]
        write("walker", codec("walker", [[
            local walk, seen, stats = (function() ]] .. WALK .. [[ end)()
            walk(_G, 0)
            -- and the values host functions hand out, with their metatables
            walk(weft.json.array(), 0)
            walk(weft.json.object(), 0)
            walk(weft.json.decode('{"a":[],"b":{},"c":[1]}'), 0)
            walk(weft.error.new("transient", "x"), 0)
            LOAD_STATS = stats
            WALK = walk
        ]], [[
            WALK(_G, 0)
            WALK(req, 0)
            WALK(cfg, 0)
            -- then try to replace metatables that are the host's
            pcall(setmetatable, weft.json.empty_array, nil)
            pcall(setmetatable, weft.error, { __index = function() return "pwned" end })
            req.messages = { { role = "user", content = "walked: " .. LOAD_STATS.tables .. " tables" } }
        ]]))
        local cfg_tables = { extra = { nested = { 1, 2 } } }
        local req = { messages = { { role = "user", content = "hello" } }, extra = { tag = { "a" } } }
        local r = call("walker", req)
        assert.is_string(r.text)
        local n = tonumber(sent(mock, 1):match("walked: (%d+) tables"))
        assert.is_true(n > 15, "the walk reached " .. tostring(n) .. " tables")
        -- the caller's tables carry no mark
        assert.is_nil(rawget(req, MARK))
        assert.is_nil(rawget(req.messages, MARK))
        assert.is_nil(rawget(req.messages[1], MARK))
        assert.is_nil(rawget(req.extra.tag, MARK))
        assert.is_nil(rawget(cfg_tables, MARK))
        -- and nothing the host can reach does (but the plugin's own configuration copies)
        local hits = {}
        for _, t in ipairs(host_tables(plugin_owned)) do
            if rawget(t, MARK) ~= nil or rawget(t, MARK .. "_index") ~= nil then hits[#hits + 1] = tostring(t) end
        end
        assert.are.same({}, hits)
        -- the host still works: errors, JSON, another call of the same plugin
        assert.are.equal('{"x":[]}', json.encode { x = json.empty_array })
        assert.matches("^transient: x", tostring(errors.new("transient", "x")))
        assert.is_string(weft.model("walker/gpt-4o-mini"):complete("again").text)
    end)

    it("gives each plugin its own copies (one plugin's writes are not another's)", function()
        write("writer", codec("writer", [[
            weft.error.KINDS.writer_was_here = true
            weft.json.null_copy = weft.json.null
            string.writer = true
        ]]))
        write("reader", codec("reader", "", [[
            req.messages = { { role = "user", content = tostring(weft.error.KINDS.writer_was_here) .. " " .. tostring(string.writer) } }
        ]]))
        call("writer")
        call("reader")
        assert.are.equal("nil nil", sent(mock))
    end)
end)
