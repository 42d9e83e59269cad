-- codec_spec.lua: weft.codec, the helpers provider plugins share (plugin
-- API 2, issue 17): each function on the wire forms the shipped plugins
-- read and write; the host's weft.retry.http_error on the same status
-- ladder; and in the sandbox one read-only codec for every plugin, which
-- a plugin can neither change for another nor use to reach the host, and
-- whose functions run under the calling plugin's budget.
local codec = require "weft.codec"
local plugins = require "weft.plugins"
local json = weft.json

local pd = require "plugin_dir" ()
local write = pd.write

describe("weft.codec", function()
    it("coerces values: str, num, tab, usage, json_table", function()
        assert.are.equal("a", codec.str("a"))
        assert.is_nil(codec.str(1))
        assert.is_nil(codec.str(json.null))
        assert.are.equal(12, codec.num("12"))
        assert.are.equal(3, codec.num(3, 0))
        assert.are.equal(0, codec.num("twelve", 0))
        assert.is_nil(codec.num({}))
        local t = {}
        assert.are.equal(t, codec.tab(t))
        assert.are.same({}, codec.tab("x"))
        assert.are_not.equal(codec.tab(nil), codec.tab(nil)) -- a new table each time
        assert.are.same({ input = 13, output = 9 },
            codec.usage({ prompt_tokens = 13, completion_tokens = "9" }, "prompt_tokens", "completion_tokens"))
        assert.are.same({ input = 0, output = 0 }, codec.usage({}, "prompt_tokens", "completion_tokens"))
        assert.are.same({ input = 4, output = 0 }, codec.usage({ prompt_tokens = 4, completion_tokens = 7 }, "prompt_tokens"))
        assert.is_nil(codec.usage(json.null, "prompt_tokens", "completion_tokens"))
        assert.are.same({ a = 1 }, codec.json_table('{"a":1}'))
        assert.is_nil(codec.json_table("12"))
        assert.is_nil(codec.json_table("{broken"))
        assert.is_nil(codec.json_table(nil))
    end)

    it("decodes and encodes tool-call arguments", function()
        assert.are.same({ city = "Paris" }, codec.decode_args('{"city":"Paris"}'))
        for _, bad in ipairs { "", "not json", "42", false } do
            assert.are.equal("{}", json.encode(codec.decode_args(bad)), tostring(bad))
        end
        assert.are.equal("{}", json.encode(codec.decode_args(nil)))
        assert.are.equal('{"city":"Oslo"}', codec.encode_args({ city = "Oslo" }))
        assert.are.equal("{}", codec.encode_args(nil))
    end)

    it("folds system messages into one text, leaving the others in order", function()
        local req = { system = "Be brief.", messages = {
            { role = "system", content = "Use French." }, { role = "user", content = "Hi" },
            { role = "system", content = "No emojis." }, { role = "assistant", content = "Salut" } } }
        local system, msgs = codec.split_system(req)
        assert.are.equal("Be brief.\n\nUse French.\n\nNo emojis.", system)
        assert.are.same({ { role = "user", content = "Hi" }, { role = "assistant", content = "Salut" } }, msgs)
        assert.are.equal(req.messages[2], msgs[1]) -- the request's own tables, not copies
        assert.are.equal(4, #req.messages)          -- and the request untouched
        local none, all = codec.split_system { messages = { { role = "user", content = "x" } } }
        assert.is_nil(none)
        assert.are.equal(1, #all)
    end)

    it("encodes messages and tools in OpenAI's dialect and reads its tool calls, whole and streamed", function()
        local msgs = codec.openai_messages { system = "S", messages = {
            { role = "user", content = "Weather?", name = "ann" },
            { role = "assistant", tool_calls = { { id = "c1", name = "weather", arguments = '{"city":"Paris"}' },
                                                 { id = "c2", name = "time" } } },
            { role = "tool", tool_call_id = "c1", content = "21" } } }
        assert.are.same({ role = "system", content = "S" }, msgs[1])
        assert.are.same({ role = "user", content = "Weather?", name = "ann" }, msgs[2])
        assert.are.equal(json.null, msgs[3].content)
        assert.are.same({ id = "c2", type = "function", ["function"] = { name = "time", arguments = "{}" } }, msgs[3].tool_calls[2])
        assert.are.same({ role = "tool", tool_call_id = "c1", content = "21" }, msgs[4])
        -- messages of a role and a text only are already the wire form:
        -- the request's own list is sent (no table made for each); any
        -- other field, a system text or a message without text is written
        local plain = { { role = "user", content = "a" }, { role = "assistant", content = "b" } }
        assert.are.equal(plain, codec.openai_messages { messages = plain })
        for _, req in ipairs {
            { system = "S", messages = { { role = "user", content = "a" } } },
            { messages = { { role = "user", content = "a", cache = true } } },
            { messages = { { role = "user", content = "a" }, { role = "tool", content = "x", tool_call_id = "c" } } },
            { messages = { { role = "assistant", tool_calls = { { id = "c", name = "f" } } } } },
        } do
            local out = codec.openai_messages(req)
            assert.are_not.equal(req.messages, out)
            assert.is_nil(out[#out].cache)
        end
        local wire = { type = "function", ["function"] = { name = "raw" } }
        local tools = codec.openai_tools { { name = "weather", description = "d", parameters = { type = "object" } }, wire }
        assert.are.same({ type = "function", ["function"] = { name = "weather", description = "d", parameters = { type = "object" } } }, tools[1])
        assert.are.equal(wire, tools[2])
        assert.are.same({ { id = "call_9", name = "weather", arguments = '{"a":1}' }, { name = "f", arguments = "" } },
            codec.openai_tool_calls { { id = "call_9", ["function"] = { name = "weather", arguments = '{"a":1}' } },
                                      { ["function"] = { name = "f" } } })
        assert.is_nil(codec.openai_tool_calls {})
        assert.is_nil(codec.openai_tool_calls(json.null))
        local acc = {}
        codec.openai_tool_deltas(acc, { { index = 0, id = "call_9", ["function"] = { name = "weather", arguments = "" } } })
        codec.openai_tool_deltas(acc, { { index = 0, ["function"] = { arguments = '{"city":' } } })
        assert.are.equal(acc, codec.openai_tool_deltas(acc, { { index = 0, ["function"] = { arguments = '"Oslo"}' } } }))
        assert.are.same({ { id = "call_9", name = "weather", arguments = '{"city":"Oslo"}' } }, acc)
    end)

    it("maps finish reasons per dialect, and hands out copies of the maps", function()
        assert.are.equal("tool_calls", codec.finish_reason("openai", "function_call"))
        assert.are.equal("something_new", codec.finish_reason("openai", "something_new"))
        assert.are.equal("length", codec.finish_reason("anthropic", "max_tokens"))
        assert.are.equal("content_filter", codec.finish_reason("anthropic", "refusal"))
        assert.are.equal("content_filter", codec.finish_reason("gemini", "SAFETY"))
        assert.are.equal("language", codec.finish_reason("gemini", "LANGUAGE")) -- unknown: lower case
        assert.is_nil(codec.finish_reason("openai", json.null))
        assert.matches("unknown dialect cohere", select(2, pcall(codec.finish_reason, "cohere", "stop")))
        local m = codec.finish_map("openai")
        m.stop = "changed"
        assert.are.equal("stop", codec.finish_reason("openai", "stop"))
        assert.are.equal("stop", codec.finish_map("openai").stop)
    end)

    it("has one status ladder, which weft.retry.http_error uses too", function()
        local want = { [400] = "invalid_request", [401] = "auth", [403] = "auth", [404] = "invalid_request",
                       [408] = "transient", [409] = "transient", [413] = "invalid_request", [422] = "invalid_request",
                       [429] = "rate_limited", [500] = "transient", [502] = "transient", [503] = "transient",
                       [529] = "transient" }
        for status, kind in pairs(want) do
            assert.are.equal(kind, codec.status_kind(status), status)
            assert.are.equal(kind, weft.retry.http_error({ status = status, headers = {}, body = "{}" }).kind, status)
        end
        assert.is_nil(codec.status_kind(nil))
        assert.is_nil(weft.retry.http_error({ status = 200, headers = {}, body = "" }))
        -- the spent quotas only a body tells apart stay the host's
        assert.are.equal("quota_exhausted", weft.retry.http_error({ status = 429, headers = {},
            body = '{"error":{"code":"insufficient_quota"}}' }).kind)
    end)

    it("reads JSON error bodies: the error member, a bare error object, or nothing", function()
        local e, v = codec.error_of('{"error":{"message":"m","code":"c"}}')
        assert.are.same({ message = "m", code = "c" }, e)
        assert.are.equal(e, v.error)
        assert.are.equal("bare", codec.error_of('{"object":"error","message":"bare"}').message)
        assert.are.same({}, codec.error_of('{"detail":"x"}'))
        assert.are.same({}, (codec.error_of("<html>bad gateway</html>")))
        assert.are.same({}, (codec.error_of(nil)))
    end)

    it("reads the rate-limit headers of OpenAI and Anthropic, and Google's RetryInfo", function()
        local o = codec.openai_rate_limits(429, { ["x-ratelimit-remaining-requests"] = "99", ["x-ratelimit-reset-requests"] = "1m30s",
            ["x-ratelimit-remaining-tokens"] = "5000", ["x-ratelimit-reset-tokens"] = "6ms", ["retry-after-ms"] = "1500",
            ["retry-after"] = "9" })
        assert.are.same({ requests = { remaining = 99, reset = 90 }, tokens = { remaining = 5000, reset = 0.006 }, retry_after = 1.5 }, o)
        assert.are.equal(9, codec.openai_rate_limits(429, { ["retry-after"] = "9" }).retry_after)
        assert.is_nil(codec.openai_rate_limits(200, { ["retry-after"] = "9" }).retry_after)
        local a = codec.anthropic_rate_limits(429, { ["anthropic-ratelimit-requests-remaining"] = "7",
            ["anthropic-ratelimit-requests-reset"] = "2000-01-01T00:00:00Z", ["retry-after"] = "3" })
        assert.are.same({ requests = { remaining = 7, reset = 0 }, retry_after = 3 }, a)
        assert.are.equal(17, codec.retry_info([[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.QuotaFailure"},
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}]]))
        assert.is_nil(codec.retry_info('{"error":{"details":[]}}'))
        assert.is_nil(codec.retry_info("not json"))
    end)

    it("tool_choice: the neutral forms in each dialect, a provider's own form as it is", function()
        local tc = codec.tool_choice
        assert.equals("required", tc("required", "openai"))
        assert.same({ type = "function", ["function"] = { name = "f" } }, tc({ name = "f" }, "openai"))
        assert.same({ type = "any" }, tc("required", "anthropic"))
        assert.same({ type = "auto" }, tc("auto", "anthropic"))
        assert.same({ type = "none" }, tc("none", "anthropic"))
        assert.same({ type = "tool", name = "f" }, tc({ name = "f" }, "anthropic"))
        assert.same({ functionCallingConfig = { mode = "ANY" } }, tc("required", "gemini"))
        assert.same({ functionCallingConfig = { mode = "NONE" } }, tc("none", "gemini"))
        assert.same({ functionCallingConfig = { mode = "ANY", allowedFunctionNames = { "f" } } },
            tc({ name = "f" }, "gemini"))
        local own = { type = "tool", name = "f" }
        assert.equals(own, tc(own, "anthropic"))
        local g = { functionCallingConfig = { mode = "AUTO" } }
        assert.equals(g, tc(g, "gemini"))
        assert.equals("something", tc("something", "openai"))
    end)
end)

describe("weft.codec in the plugin sandbox", function()
    after_each(function() plugins.reset() end)
    teardown(pd.remove)

    local function plugin(name, body)
        return assert(plugins.load_file(write(name, ([[
return { api = 2, name = %q, kind = "provider", version = "1", secret = false,
    encode = function() return { path = "/" } end, decode = function() end, classify = function() end,
%s }
]]):format(name, body)), "provider"))
    end

    it("is one read-only codec that no plugin can change for another", function()
        local a = plugin("attacker", [[
    attack = function()
        local out = {}
        local function try(name, f)
            local ok, e = pcall(f)
            out[#out + 1] = name .. "=" .. (ok and "changed" or "refused")
        end
        try("assign", function() weft.codec.str = function() return "pwned" end end)
        try("add", function() weft.codec.extra = "pwned" end)
        try("rawset", function() rawset(weft.codec, "str", function() return "pwned" end) end)
        try("setmetatable", function() setmetatable(weft.codec, {}) end)
        try("metatable", function() getmetatable(weft.codec).__index.str = function() return "pwned" end end)
        try("pairs", function() for k in pairs(weft.codec) do end end)
        -- what the codec returns is the caller's own
        local map = weft.codec.finish_map("openai")
        map.stop = "pwned"
        return table.concat(out, " "), getmetatable(weft.codec), tostring(weft.codec), type(weft.codec)
    end,
    codec = function() return weft.codec end,
]])
        local ok, tried, mt, name, kind = plugins.call(a, "attack")
        assert.is_true(ok)
        assert.are.equal("assign=refused add=refused rawset=refused setmetatable=refused metatable=refused pairs=refused", tried)
        assert.are.same({ "weft.codec", "weft.codec", "userdata" }, { mt, name, kind })
        local b = plugin("bystander", [[
    use = function()
        return weft.codec.str("x"), weft.codec.finish_reason("openai", "stop"), weft.codec.extra, weft.codec.finish_map("openai").stop
    end,
    codec = function() return weft.codec end,
]])
        assert.are.same({ true, "x", "stop", nil, "stop" }, { plugins.call(b, "use") })
        -- the same codec in both sandboxes (shared, not copied per plugin)
        local _, ca = plugins.call(a, "codec")
        local _, cb = plugins.call(b, "codec")
        assert.is_true(rawequal(ca, cb))
        -- and the host's module is as it was
        assert.are.equal("x", codec.str("x"))
        assert.is_nil(rawget(codec, "extra"))
        assert.are.equal("stop", codec.finish_map("openai").stop)
    end)

    it("cannot be handed back to the host as data", function()
        local p = plugin("leaker", [[ leak = function() return { c = weft.codec } end, ]])
        local ok, v = plugins.call(p, "leak")
        assert.is_true(ok)
        assert.is_nil(plugins.plain(v))
        assert.matches("not plain data", select(2, plugins.plain(v)))
    end)

    it("runs under the calling plugin's budget, with the JIT off", function()
        -- the host runs the same loop first with the JIT on: were the codec
        -- compiled, the plugin's call would run in a trace the budget's count
        -- hook never sees
        local big = {}
        for i = 1, 50000 do big[i] = { role = "user", content = "x" } end
        for _ = 1, 20 do codec.split_system { messages = big } end
        local p = assert(plugins.load_file(write("spinner", [[
local BIG = {}
for i = 1, 50000 do BIG[i] = { role = "user", content = "x" } end
return { api = 2, name = "spinner", kind = "provider", version = "1", secret = false,
    encode = function() return { path = "/" } end, decode = function() end, classify = function() end,
    spin = function()
        local _, msgs = weft.codec.split_system({ messages = BIG })
        return #msgs
    end,
}
]]), "provider"))
        assert.are.same({ true, 50000 }, { plugins.call(p, "spin") })
        local limits = plugins.budget()
        plugins.budget { instructions = 100000 }
        local ok, err = plugins.call(p, "spin")
        plugins.budget(limits)
        assert.is_nil(ok)
        assert.matches("provider plugin spinner %(1%): spin exceeded its CPU budget", err)
    end)

    it("does not let a plugin go on after its budget ran out inside a codec function", function()
        local p = plugin("reader", [[
    read = function(text)
        if weft.codec.json_table(text) == nil then return "went on" end -- it ran out of memory in there
    end,
]])
        local text = "[" .. string.rep("1,", 500000) .. "1]"
        local limits = plugins.budget()
        plugins.budget { memory = 1048576 }
        local ok, err = plugins.call(p, "read", text)
        plugins.budget(limits)
        assert.is_nil(ok)
        assert.matches("read exceeded its memory budget", err)
    end)
end)
