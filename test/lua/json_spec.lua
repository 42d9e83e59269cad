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

