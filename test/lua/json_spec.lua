-- json_spec.lua: weft.json's documented choices.
local json = weft.json

local function enc(v) return json.encode(v, { sort_keys = true }) end

describe("weft.json.encode", function()
    it("writes scalars", function()
        assert.are.equal('"a"', json.encode("a"))
        assert.are.equal("true", json.encode(true))
        assert.are.equal("null", json.encode(json.null))
        assert.are.equal("null", json.encode(nil))
    end)

    it("keeps integers below 2^53 exact (cjson keeps 14 digits)", function()
        assert.are.equal("123456789012345", json.encode(123456789012345))
        assert.are.equal("9007199254740991", json.encode(2 ^ 53 - 1))
        assert.are.equal("-42", json.encode(-42))
        assert.are.equal("1700000000123", json.encode(1700000000123))
    end)

    it("writes other numbers so they read back exactly", function()
        for _, v in ipairs { 0.1, 1 / 3, 1e300, -2.5e-12, 2 ^ 60, math.pi } do
            assert.are.equal(v, json.decode(json.encode(v)))
        end
        assert.are.equal("0.1", json.encode(0.1))
    end)

    it("refuses NaN and infinities, naming the path", function()
        assert.has_error(function() json.encode({ a = { b = 0 / 0 } }) end,
            "json.encode: cannot encode nan at $.a.b")
        assert.has_error(function() json.encode({ math.huge }) end,
            "json.encode: cannot encode inf at $[1]")
    end)

    it("does not escape the slash and escapes control characters", function()
        assert.are.equal('"a/b"', json.encode("a/b"))
        assert.are.equal('"q\\"b\\\\n\\n\\t\\u0000\\u001f"', json.encode('q"b\\n\n\t\0\31'))
        assert.are.equal('"héllo"', json.encode("héllo"))
    end)

    it("tells arrays from objects by their keys", function()
        assert.are.equal("[1,2,3]", json.encode { 1, 2, 3 })
        assert.are.equal('{"a":1,"b":2}', enc { b = 2, a = 1 })
        assert.are.equal("{}", json.encode {})
    end)

    it("writes marked empty arrays and objects", function()
        assert.are.equal('{"tools":[]}', json.encode { tools = json.array() })
        assert.are.equal('{"x":[]}', json.encode { x = json.empty_array })
        assert.are.equal("{}", json.encode(json.object()))
        assert.are.equal("[1]", json.encode(json.array { 1 }))
    end)

    it("refuses sparse arrays, mixed keys, cycles and functions", function()
        assert.has_error(function() json.encode { a = { 1, nil, 3 } } end,
            "json.encode: sparse array (holes) at $.a")
        assert.has_error(function() json.encode { m = { 1, 2, x = 3 } } end)
        assert.has_error(function() json.encode { [true] = 1 } end)
        local t = {}
        t.self = t
        assert.has_error(function() json.encode(t) end, "json.encode: cycle at $.self")
        assert.has_error(function() json.encode { f = print } end,
            "json.encode: cannot encode a function at $.f")
    end)

    it("allows the same table twice when it is not a cycle", function()
        local shared = { 1 }
        assert.are.equal('{"a":[1],"b":[1]}', enc { a = shared, b = shared })
    end)

    it("refuses nesting deeper than 1000", function()
        local t = {}
        local cur = t
        for _ = 1, 1100 do cur[1] = {}; cur = cur[1] end
        assert.has_error(function() json.encode(t) end)
    end)

    it("pretty-prints with sorted keys", function()
        assert.are.equal('{\n  "a": [\n    1,\n    {}\n  ],\n  "b": "x"\n}',
            json.pretty { b = "x", a = { 1, {} } })
    end)
end)

describe("weft.json.decode", function()
    it("round-trips [] and {} exactly", function()
        local s = '{"a":[[],[1,[]]],"n":null,"o":{},"s":"[]","tools":[]}'
        assert.are.equal(s, enc(json.decode(s)))
    end)

    it("keeps null as json.null", function()
        local v = json.decode('{"a":null,"b":[null,1]}')
        assert.are.equal(json.null, v.a)
        assert.are.equal(json.null, v.b[1])
        assert.are.equal(2, #v.b)
    end)

    it("is not fooled by brackets inside strings", function()
        local v = json.decode('{"a":"[ ]","b":"x\\"[]","c":[]}')
        assert.are.equal("[ ]", v.a)
        assert.are.equal('x"[]', v.b)
        assert.is_true(json.is_array(v.c))
    end)

    it("returns nil and a message on invalid JSON", function()
        local v, err = json.decode('{"a":')
        assert.is_nil(v)
        assert.matches("invalid JSON", err)
        assert.is_nil((json.decode("NaN")))
        assert.is_nil((json.decode("")))
    end)

    it("raises when given something that is not a string", function()
        assert.has_error(function() json.decode(nil) end)
        assert.has_error(function() json.decode({}) end)
    end)

    it("decodes exact integers below 2^53", function()
        assert.are.equal(9007199254740991, json.decode("9007199254740991"))
    end)
end)

describe("weft.json.decode (runtime/lua_json.c)", function()
    local cjson = require "cjson"
    -- (deep equality; NaN never comes out of a decode)
    local function same(a, b)
        if type(a) ~= type(b) then return false end
        if type(a) ~= "table" then return a == b end
        for k, v in pairs(a) do if not same(v, b[k]) then return false end end
        for k in pairs(b) do if a[k] == nil then return false end end
        return true
    end

    it("reads what lua-cjson reads, value for value", function()
        local texts = {
            '{"a":1}', "[1,2,3]", '"x\\u00e9\\ud83d\\ude00"', "-0", "1e400", "123456789012345678", "0.1", "-12.5e-3",
            "true", " \n\t null \r ", '{"s":"a\\nb\\t\\"\\\\\\/\\b\\f\\r"}', '{"a":{"b":{"c":[1,{"d":null}]}}}',
            "[" .. ("1,"):rep(99) .. "1]", '"raw\tcontrol\1"', '{"e":"","z":0,"f":false}', "2.5E+3", "1E-2",
        }
        for _, t in ipairs(texts) do
            local v, err = json.decode(t)
            assert.is_nil(err, t)
            assert.is_true(same(cjson.decode(t), v), t)
        end
        assert.are.equal(1 / 0, json.decode("1e400"))
        assert.are.equal(-1 / 0, 1 / json.decode("-0")) -- minus zero kept
        assert.are.equal("\240\159\152\128", json.decode('"\\ud83d\\ude00"')) -- a surrogate pair is one UTF-8 character
    end)

    it("makes big containers whole, members in order, the last of a repeated key winning", function()
        local parts, arr = {}, {}
        for i = 1, 100 do
            parts[#parts + 1] = ('"k%d":%d'):format(i, i)
            arr[i] = i
        end
        local o = json.decode("{" .. table.concat(parts, ",") .. ',"k7":"last"}')
        for i = 1, 100 do assert.are.equal(i == 7 and "last" or i, o["k" .. i]) end
        assert.are.same(arr, json.decode(json.encode(arr)))
        assert.are.equal(2, json.decode('{"k":1,"k":2}').k)
        -- nesting to the limit and one past it
        assert.is_table(json.decode(("["):rep(1000) .. ("]"):rep(1000)))
        local v, err = json.decode(("["):rep(1001) .. ("]"):rep(1001))
        assert.is_nil(v)
        assert.matches("nested deeper than 1000 at character 1001", err, 1, true)
    end)

    it("refuses what is not JSON, saying what and where", function()
        local cases = {
            { "", "unexpected end of text at character 1" }, { "{", "unterminated object at character 2" },
            { "[1,]", "invalid token at character 4" }, { '{"a":1,}', "expected a string key at character 8" },
            { "01", "unexpected text after the value at character 2" }, { "1.", "invalid number at character 3" },
            { ".5", "invalid token at character 1" }, { "NaN", "invalid token" }, { "Infinity", "invalid token" },
            { "0x10", "unexpected text after the value" }, { "-", "invalid number" }, { "1e", "invalid number" },
            { '"\\ud800"', "without its low half" }, { '"\\udc00"', "lone low surrogate" }, { '"\\u12"', "invalid \\u escape" },
            { '"abc', "unterminated string" }, { '{"a" 1}', "expected ':'" }, { "[1 2]", "expected ',' or ']'" },
            { "tru", "invalid token" }, { '"\\x"', "invalid escape" }, { "{1:2}", "expected a string key" },
            { "[1] x", "unexpected text after the value at character 5" }, { "// c\n1", "invalid token" },
        }
        for _, c in ipairs(cases) do
            local v, err = json.decode(c[1])
            assert.is_nil(v, c[1])
            assert.are.equal("invalid JSON: ", err:sub(1, 14))
            assert.matches(c[2], err, 1, true)
        end
    end)
end)

describe("cjson", function()
    it("is available to scripts as require 'cjson'", function()
        local cjson = require "cjson"
        assert.are.equal(2, cjson.decode("[1,2]")[2])
    end)
end)

describe("the C encoder", function()
    -- json.encode(v) runs the C encoder; json.encode(v, {}) the Lua one.
    local json = weft.json
    local seed = 12345
    local function rnd(n) -- deterministic LCG: failures reproduce
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
    end
    local NUMBERS = { 0, -0.0, 1, -1, 42, 2 ^ 53 - 1, -(2 ^ 53 - 1), 2 ^ 53, 2 ^ 60, 0.1, 1 / 3, -2.5e-300, 1e300,
                      123456789.125, 3.14159265358979 }
    local function str()
        local t = {}
        for i = 1, rnd(12) do t[i] = string.char(rnd(4) == 0 and rnd(256) or (32 + rnd(95))) end
        return table.concat(t)
    end
    local function value(depth)
        local k = rnd(depth > 4 and 5 or 9)
        if k == 0 then return str()
        elseif k == 1 then return NUMBERS[rnd(#NUMBERS) + 1]
        elseif k == 2 then return rnd(2) == 0
        elseif k == 3 then return json.null
        elseif k == 4 then return rnd(1000) - 500
        elseif k == 5 or k == 6 then
            local t = {}
            for i = 1, rnd(5) do t[i] = value(depth + 1) end
            if #t == 0 and rnd(2) == 0 then return json.array(t) end
            return t
        elseif k == 7 then
            local t = {}
            for _ = 1, rnd(5) do t[str()] = value(depth + 1) end
            if rnd(3) == 0 then return json.object(t) end
            return t
        else
            return rnd(2) == 0 and json.empty_array or json.array { value(depth + 1) }
        end
    end

    it("writes exactly what the Lua encoder writes, for 5000 random documents", function()
        for i = 1, 5000 do
            local v = value(0)
            local c, l = json.encode(v), json.encode(v, {})
            if c ~= l then
                error(("document %d: C %q, Lua %q"):format(i, c, l))
            end
        end
    end)

    it("decodes every random document back to what was encoded", function()
        local SORTED = { sort_keys = true } -- (a table's key order is its own)
        for i = 1, 5000 do
            local v = value(0)
            local d, err = json.decode(json.encode(v))
            local want, got = json.encode(v, SORTED), d ~= nil and json.encode(d, SORTED)
            if err or got ~= want then
                error(("document %d: %q decodes to %s"):format(i, want, err or got))
            end
        end
    end)

    it("decodes or refuses a document cut short or with a byte changed, dropped or added, anywhere", function()
        -- (under ASan this is the decoder's memory-safety run on broken input)
        for i = 1, 3000 do
            local text = json.encode(value(0))
            local at = rnd(#text) + 1
            local byte = string.char(rnd(256))
            for _, t in ipairs { text:sub(1, at - 1), text:sub(1, at - 1) .. byte .. text:sub(at + 1),
                                 text:sub(1, at - 1) .. text:sub(at + 1), text:sub(1, at) .. byte .. text:sub(at + 1) } do
                local ok, v, err = pcall(json.decode, t)
                if not ok or (v == nil and not (type(err) == "string" and err:match("^invalid JSON: .+ at character %d+$"))) then
                    error(("document %d, text %q: %s"):format(i, t, tostring(ok and err or v)))
                end
            end
        end
    end)

    it("leaves every refusal to the Lua encoder's messages", function()
        local cyc = {}
        cyc.self = cyc
        for _, bad in ipairs { { 1, nil, 3 }, { 1, x = 2 }, { [1.5] = 1 }, { a = 0 / 0 }, { f = print }, cyc, { [true] = 1 } } do
            local ok1, e1 = pcall(json.encode, bad)
            local ok2, e2 = pcall(json.encode, bad, {})
            assert.is_false(ok1)
            assert.is_false(ok2)
            assert.are.equal(e2, e1)
        end
    end)
end)

