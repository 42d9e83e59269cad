-- classes_spec.lua: every class the host registers goes through
-- weft_register_class (runtime/luax.c), so each metatable is protected
-- (getmetatable gives the class name, setmetatable refuses), names itself
-- in __name, and keeps its methods and metamethods.
local raw_getmetatable = debug.getmetatable

local function assert_class(name, v)
    assert.are.equal(name, getmetatable(v), name .. ": getmetatable gives the name")
    assert.are.equal(name, raw_getmetatable(v).__name, name .. ": __name")
end

describe("host classes", function()
    it("are protected and named: error values", function()
        local E = require "weft._error"
        local e = E.new("transient", "boom", { status = 502 })
        assert_class("weft.error", e)
        assert.are.equal("transient: boom (status 502)", tostring(e))
        assert.is_false(pcall(setmetatable, e, {}))
        assert.are.equal(raw_getmetatable(e), E.mt)
    end)

    it("are protected and named: tasks, with the method table weft extends", function()
        local T = require "weft._task"
        local t = T.current()
        assert_class("weft.task", t)
        assert.are.equal(raw_getmetatable(t).__index, T.methods)
        assert.is_function(t.join)
        assert.matches("^weft%.task: ", tostring(t))
    end)

    it("are protected and named: secrets, with fields, private methods and metamethods", function()
        local S = require "weft._secrets"
        local h = S.handle("env:WEFT_CLASSES_SPEC_UNSET")
        assert_class("weft.secret", h)
        assert.are.equal("env:WEFT_CLASSES_SPEC_UNSET", h.name)
        assert.is_function(h._set) -- through __index's upvalue, the method table
        assert.are.equal("<secret env:WEFT_CLASSES_SPEC_UNSET>", tostring(h))
        assert.is_true(h == S.handle("env:WEFT_CLASSES_SPEC_UNSET"))
        assert.is_false(pcall(function() return "x" .. h end))
    end)

    it("are protected and named: breakers, retry policies and budgets, limiters", function()
        local br = require("weft._breaker").new { name = "classes" }
        assert_class("weft.breaker", br)
        assert.are.equal("classes", br:state().name)
        local R = require "weft._retry"
        assert_class("weft.retry.policy", R.policy {})
        assert_class("weft.retry.budget", R.budget())
        local lim = require("weft._limiter").new { { unit = "requests", limit = 10, period = 1 } }
        assert_class("weft.limiter", lim)
        assert.is_table(lim:state())
    end)

    it("take as self only an object of their own class (known by size and mark, not metatable)", function()
        local br = require("weft._breaker").new { name = "classes-self" }
        local lim = require("weft._limiter").new { { unit = "requests", limit = 10, period = 1 } }
        local series = require("weft._metrics").new("counter", "weft_classes_self_total", "c", {}):labels()
        local secret = require("weft._secrets").handle("env:WEFT_CLASSES_SPEC_UNSET")
        local x = assert(require("weft._http_client").start { url = "http://127.0.0.1:9/", timeout = 0.01 })
        local methods = {
            { "weft.breaker", br.state }, { "weft.limiter", lim.state }, { "weft.metric.series", series.value },
            { "weft.secret", secret._set }, { "weft.http.xfer", x.cancel },
        }
        local others = { br, lim, series, secret, x, {}, "s", 1, weft.json.null }
        for _, m in ipairs(methods) do
            for _, other in ipairs(others) do
                local own = getmetatable(other) == m[1]
                local ok, err = pcall(m[2], other, "v")
                if not own then
                    assert.is_false(ok, m[1])
                    assert.matches(m[1] .. " expected", err, 1, true)
                end
            end
        end
        x:cancel()
    end)

    it("are protected and named: metrics, series, SSE parsers", function()
        local M = require "weft._metrics"
        local m = M.new("counter", "weft_classes_spec_total", "classes_spec", { "k" })
        assert_class("weft.metric", m)
        assert_class("weft.metric.series", m:labels("v"))
        assert_class("weft.sse.parser", require("weft._sse").new(1024))
    end)

    it("are protected and named: servers, whose fields are read when asked", function()
        local srv = assert(require("weft._http_server").serve {
            port = 0, background = true, handler = function() end,
        })
        assert_class("weft.http.server", srv)
        assert.is_true(srv.port > 0)
        assert.are.equal("127.0.0.1", srv.host)
        srv:close()
    end)
end)
