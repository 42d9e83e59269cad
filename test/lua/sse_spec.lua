-- sse_spec.lua: weft._sse (runtime/sse.c) from Lua, on hand-made input and
-- on the three dialects' real streams from weft mock, delivered in the
-- chunks the network gives (and again byte by byte).
local sse = require "weft._sse"
local http, json = weft.http, weft.json

local function events_of(chunks, max)
    local p = sse.new(max)
    local all = {}
    for _, c in ipairs(chunks) do
        for _, ev in ipairs(p:feed(c)) do all[#all + 1] = ev end
    end
    return all, p:pending()
end

describe("weft._sse", function()
    it("parses events, types, ids, retry and multi-line data", function()
        local evs, pending = events_of { "event: a\nid: 3\nretry: 1500\ndata: x\n", "data: y\n\n: comment\n\ndata: z\r\n\r\n" }
        assert.are.equal(2, #evs)
        assert.are.same({ event = "a", data = "x\ny", id = "3", retry = 1.5 }, evs[1])
        assert.are.same({ event = "message", data = "z", id = "3", retry = 1.5 }, evs[2])
        assert.is_false(pending)
    end)

    it("reports a partial event at the end, and refuses oversize events", function()
        local evs, pending = events_of { "data: done\n\ndata: half" }
        assert.are.equal(1, #evs)
        assert.is_true(pending)
        local p = sse.new(16)
        local ok, err = pcall(p.feed, p, "data: " .. ("x"):rep(32) .. "\n")
        assert.is_false(ok)
        assert.are.equal("integration", err.kind)
        assert.matches("over 16 bytes", err.message)
        assert.matches("max_event", select(2, pcall(sse.new, -1)))
    end)
end)

describe("the dialects' streams from weft mock", function()
    local m
    before_each(function() m = weft.mock.start { port = 0 } end)
    after_each(function() m:close() end)

    -- POST and collect the body's chunks as they arrive.
    local function stream(path, headers, body)
        local chunks = {}
        headers["content-type"] = "application/json"
        local res = http.request { method = "POST", url = m.url .. path, headers = headers, body = json.encode(body),
            on_data = function(c) chunks[#chunks + 1] = c end }
        assert.are.equal(200, res.status)
        return chunks
    end
    local function bytes(chunks)
        local out = {}
        for c in table.concat(chunks):gmatch(".") do out[#out + 1] = c end
        return out
    end

    it("OpenAI: deltas then usage then [DONE]", function()
        local chunks = stream("/v1/chat/completions", { authorization = "Bearer sk-weft-mock" },
            { model = "gpt-4o-mini", stream = true, stream_options = { include_usage = true },
              messages = { { role = "user", content = "one two three" } } })
        for _, input in ipairs { chunks, bytes(chunks) } do
            local evs, pending = events_of(input)
            assert.is_false(pending)
            assert.are.equal("[DONE]", evs[#evs].data)
            local text = {}
            for i = 1, #evs - 1 do
                local d = json.decode(evs[i].data)
                if d.choices[1] and d.choices[1].delta.content then text[#text + 1] = d.choices[1].delta.content end
            end
            assert.are.equal("echo: one two three", table.concat(text))
            assert.is_truthy(json.decode(evs[#evs - 1].data).usage)
        end
    end)

    it("Anthropic: typed events ending in message_stop", function()
        local chunks = stream("/v1/messages", { ["x-api-key"] = "sk-ant-weft-mock", ["anthropic-version"] = "2023-06-01" },
            { model = "claude-3-5-haiku-latest", max_tokens = 100, stream = true,
              messages = { { role = "user", content = "hello" } } })
        local evs, pending = events_of(bytes(chunks))
        assert.is_false(pending)
        assert.are.equal("message_start", evs[1].event)
        assert.are.equal("message_stop", evs[#evs].event)
        for _, ev in ipairs(evs) do assert.are.equal(ev.event, json.decode(ev.data).type) end
    end)

    it("Gemini: data events until the plain end of the stream", function()
        local chunks = stream("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            { ["x-goog-api-key"] = "weft-mock-key" }, { contents = { { role = "user", parts = { { text = "hi" } } } } })
        local evs, pending = events_of(chunks)
        assert.is_false(pending)
        assert.is_true(#evs >= 1)
        local last = json.decode(evs[#evs].data)
        assert.are.equal("STOP", last.candidates[1].finishReason)
    end)
end)
