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

describe("cjson", function()
    it("is available to scripts as require 'cjson'", function()
        local cjson = require "cjson"
        assert.are.equal(2, cjson.decode("[1,2]")[2])
    end)
end)
