-- mock_tools_spec.lua: tool (function) calling in weft mock: what triggers
-- a call (tool_choice, the "call " prefix), the call's wire shape in the
-- OpenAI, Anthropic and Gemini dialects, streamed and not, the echo of a
-- tool's result, and round trips through weft's own provider plugins.
local http, json = weft.http, weft.json
local mock_mod = weft.mock
local model = require "weft.model"

local count = mock_mod.count_tokens
local keys = mock_mod.DEFAULT_KEYS

local PROMPT = "What is the weather in Paris?"
local ARGS = { text = PROMPT }

local function sse_events(body)
    local events = {}
    for block in (body .. "\n\n"):gmatch("(.-)\r?\n\r?\n") do
        if block ~= "" then
            events[#events + 1] = { event = block:match("^event: ([^\r\n]+)"), data = block:match("data: ([^\r\n]*)") }
        end
    end
    return events
end

-- Output tokens of a tool call: those of the name and of the arguments' JSON.
local function call_tokens(name, args) return count(name) + count(args) end

describe("weft mock tool calls", function()
    local m

    before_each(function() m = mock_mod.start { port = 0 } end)
    after_each(function() m:close() end)

    ------------------------------------------------------------ OpenAI

    describe("OpenAI dialect", function()
        local TOOLS = {
            { type = "function", ["function"] = { name = "lookup", parameters = { type = "object" } } },
            { type = "function", ["function"] = { name = "get_weather", parameters = { type = "object" } } },
        }
        local function chat(extra)
            local b = { model = "gpt-4o-mini", messages = { { role = "user", content = PROMPT } }, tools = TOOLS }
            for k, v in pairs(extra or {}) do b[k] = v end
            local r = http.request { method = "POST", url = m.url .. "/v1/chat/completions",
                headers = { authorization = "Bearer " .. keys.openai, ["content-type"] = "application/json" },
                body = json.encode(b) }
            assert.are.equal(200, r.status)
            return r
        end
        local function ask(prompt) return { { role = "user", content = prompt } } end

        it("answers tool_choice \"required\" with a call of the first tool", function()
            local v = json.decode(chat({ tool_choice = "required" }).body)
            local c = v.choices[1]
            assert.are.equal("tool_calls", c.finish_reason)
            assert.are.equal(json.null, c.message.content)
            assert.are.equal("assistant", c.message.role)
            assert.are.equal(1, #c.message.tool_calls)
            local tc = c.message.tool_calls[1]
            assert.matches("^call_", tc.id)
            assert.are.equal("function", tc.type)
            assert.are.equal("lookup", tc["function"].name)
            assert.are.equal("string", type(tc["function"].arguments))
            assert.are.same(ARGS, json.decode(tc["function"].arguments))
            -- input as the text path counts it (3 + 3 per message); output: name and arguments
            local out = call_tokens("lookup", tc["function"].arguments)
            assert.are.same({ prompt_tokens = count(PROMPT) + 6, completion_tokens = out,
                              total_tokens = count(PROMPT) + 6 + out }, v.usage)
        end)

        it("calls the function tool_choice names, and the one \"call NAME\" names", function()
            local v = json.decode(chat({ tool_choice = { type = "function", ["function"] = { name = "get_weather" } } }).body)
            assert.are.equal("get_weather", v.choices[1].message.tool_calls[1]["function"].name)
            v = json.decode(chat({ messages = ask("call get_weather for Paris") }).body)
            local tc = v.choices[1].message.tool_calls[1]
            assert.are.equal("get_weather", tc["function"].name)
            assert.are.same({ text = "call get_weather for Paris" }, json.decode(tc["function"].arguments))
            assert.are.equal("tool_calls", v.choices[1].finish_reason)
            -- a name the request has no tool of: its first tool
            v = json.decode(chat({ messages = ask("call nothing_like_it") }).body)
            assert.are.equal("lookup", v.choices[1].message.tool_calls[1]["function"].name)
            -- "required" with the prefix: the named one
            v = json.decode(chat({ tool_choice = "required", messages = ask("call get_weather") }).body)
            assert.are.equal("get_weather", v.choices[1].message.tool_calls[1]["function"].name)
        end)

        it("answers with text when nothing asks for a call", function()
            for _, extra in ipairs {
                {},                                                   -- tools, no trigger
                { tool_choice = "auto" },
                { tool_choice = "none", messages = ask(PROMPT) },
                { tools = json.array(), tool_choice = "required" },   -- no tools
            } do
                local c = json.decode(chat(extra).body).choices[1]
                assert.are.equal("echo: " .. PROMPT, c.message.content)
                assert.are.equal("stop", c.finish_reason)
                assert.is_nil(c.message.tool_calls)
            end
            -- "call " with tool_choice "none", and without tools: text
            local c = json.decode(chat({ tool_choice = "none", messages = ask("call get_weather") }).body).choices[1]
            assert.are.equal("echo: call get_weather", c.message.content)
            c = json.decode(chat({ tools = json.array(), messages = ask("call get_weather") }).body).choices[1]
            assert.are.equal("echo: call get_weather", c.message.content)
        end)

        it("echoes a tool's result, even when a tool is required", function()
            local msgs = {
                { role = "user", content = "call get_weather" },
                { role = "assistant", content = json.null, tool_calls = { { id = "call_1", type = "function",
                    ["function"] = { name = "get_weather", arguments = "{}" } } } },
                { role = "tool", tool_call_id = "call_1", content = "sunny, 21 C" },
            }
            for _, choice in ipairs { "auto", "required" } do
                local v = json.decode(chat({ messages = msgs, tool_choice = choice }).body)
                assert.are.equal("echo: sunny, 21 C", v.choices[1].message.content)
                assert.are.equal("stop", v.choices[1].finish_reason)
                assert.is_nil(v.choices[1].message.tool_calls)
                assert.are.equal(count("echo: sunny, 21 C"), v.usage.completion_tokens)
            end
        end)

        it("streams a call in OpenAI's delta shapes, with usage when asked", function()
            local r = chat { tool_choice = "required", messages = ask("call get_weather"), stream = true,
                             stream_options = { include_usage = true } }
            assert.matches("^text/event%-stream", r.headers["content-type"])
            local ev = sse_events(r.body)
            assert.are.equal("[DONE]", ev[#ev].data)
            local chunks = {}
            for i = 1, #ev - 1 do chunks[i] = json.decode(ev[i].data) end
            -- the first delta: the call's index, id, type, name and empty arguments
            local first = chunks[1].choices[1].delta
            assert.are.equal("assistant", first.role)
            assert.are.equal(json.null, first.content)
            local tc = first.tool_calls[1]
            assert.are.equal(0, tc.index)
            assert.matches("^call_", tc.id)
            assert.are.equal("function", tc.type)
            assert.are.equal("get_weather", tc["function"].name)
            assert.are.equal("", tc["function"].arguments)
            -- then the arguments in pieces, then finish_reason, then usage
            local args, finish, usage, pieces = "", nil, nil, 0
            for i = 2, #chunks do
                local c = chunks[i]
                local ch = c.choices[1]
                if ch then
                    for _, d in ipairs(ch.delta.tool_calls or {}) do
                        assert.are.equal(0, d.index)
                        assert.is_nil(d.id)
                        args = args .. d["function"].arguments
                        pieces = pieces + 1
                    end
                    assert.is_nil(ch.delta.content)
                    if ch.finish_reason ~= json.null then finish = ch.finish_reason end
                end
                if c.usage ~= json.null then usage = c.usage end
            end
            assert.is_true(pieces > 1)
            assert.are.same({ text = "call get_weather" }, json.decode(args))
            assert.are.equal("tool_calls", finish)
            assert.are.equal(call_tokens("get_weather", args), usage.completion_tokens)
            assert.are.equal(count("call get_weather") + 6, usage.prompt_tokens)
            -- without include_usage: no usage at all
            local plain = sse_events(chat { tool_choice = "required", stream = true }.body)
            for i = 1, #plain - 1 do assert.is_nil(json.decode(plain[i].data).usage) end
        end)

        it("cuts a streamed call under a mid_stream_error fault", function()
            m:set_faults { { dialect = "openai", sequence = { "mid_stream_error" } } }
            local ev = sse_events(chat { tool_choice = "required", stream = true }.body)
            assert.are_not.equal("[DONE]", ev[#ev].data)
            assert.is_table(json.decode(ev[#ev].data).error)
            assert.is_table(json.decode(ev[1].data).choices[1].delta.tool_calls)
        end)
    end)

    ------------------------------------------------------------ Anthropic

    describe("Anthropic dialect", function()
        local TOOLS = { { name = "lookup", input_schema = { type = "object" } },
                        { name = "get_weather", input_schema = { type = "object" } } }
        local function claude(extra)
            local b = { model = "claude-3-5-haiku-latest", max_tokens = 100,
                        messages = { { role = "user", content = PROMPT } }, tools = TOOLS }
            for k, v in pairs(extra or {}) do b[k] = v end
            local r = http.request { method = "POST", url = m.url .. "/v1/messages",
                headers = { ["x-api-key"] = keys.anthropic, ["anthropic-version"] = "2023-06-01" },
                body = json.encode(b) }
            assert.are.equal(200, r.status)
            return r
        end
        local function ask(prompt) return { { role = "user", content = prompt } } end

        it("answers tool_choice {type = \"any\"} with a tool_use block", function()
            local v = json.decode(claude({ tool_choice = { type = "any" } }).body)
            assert.are.equal("tool_use", v.stop_reason)
            assert.are.equal(1, #v.content)
            local b = v.content[1]
            assert.are.equal("tool_use", b.type)
            assert.matches("^toolu_", b.id)
            assert.are.equal("lookup", b.name)
            assert.are.same(ARGS, b.input)
            assert.are.same({ input_tokens = count(PROMPT) + 3,
                              output_tokens = call_tokens("lookup", json.encode(ARGS)) }, v.usage)
        end)

        it("calls the tool tool_choice names, and the one \"call NAME\" names", function()
            local v = json.decode(claude({ tool_choice = { type = "tool", name = "get_weather" } }).body)
            assert.are.equal("get_weather", v.content[1].name)
            v = json.decode(claude({ messages = ask("call get_weather please") }).body)
            assert.are.equal("get_weather", v.content[1].name)
            assert.are.same({ text = "call get_weather please" }, v.content[1].input)
            assert.are.equal("tool_use", v.stop_reason)
            v = json.decode(claude({ messages = { { role = "user", content = { { type = "text", text = "call x" } } } } }).body)
            assert.are.equal("lookup", v.content[1].name)
        end)

        it("answers with text when nothing asks for a call", function()
            for _, extra in ipairs {
                {},
                { tool_choice = { type = "auto" } },
                { tool_choice = { type = "none" }, messages = ask("call get_weather") },
                { tools = json.array(), tool_choice = { type = "any" } },
            } do
                local v = json.decode(claude(extra).body)
                local want = extra.messages and "echo: call get_weather" or ("echo: " .. PROMPT)
                assert.are.same({ { type = "text", text = want } }, v.content)
                assert.are.equal("end_turn", v.stop_reason)
            end
        end)

        it("echoes a tool_result, even when a tool is required", function()
            for _, content in ipairs { "sunny, 21 C", { { type = "text", text = "sunny, 21 C" } } } do
                local msgs = {
                    { role = "user", content = "call get_weather" },
                    { role = "assistant", content = { { type = "tool_use", id = "toolu_1", name = "get_weather",
                                                        input = json.object() } } },
                    { role = "user", content = { { type = "tool_result", tool_use_id = "toolu_1", content = content } } },
                }
                local v = json.decode(claude({ messages = msgs, tool_choice = { type = "any" } }).body)
                assert.are.same({ { type = "text", text = "echo: sunny, 21 C" } }, v.content)
                assert.are.equal("end_turn", v.stop_reason)
                -- the tool_result's text counts as input
                assert.are.equal(3 + count("call get_weather") + 3 + 3 + count("sunny, 21 C"), v.usage.input_tokens)
            end
        end)

        it("streams a call as tool_use and input_json_delta events", function()
            local ev = sse_events(claude({ tool_choice = { type = "tool", name = "get_weather" }, stream = true }).body)
            local names = {}
            for i, e in ipairs(ev) do names[i] = e.event end
            assert.are.equal("message_start", names[1])
            assert.are.equal("content_block_start", names[2])
            assert.are.equal("message_stop", names[#names])
            local start = json.decode(ev[2].data)
            assert.are.equal(0, start.index)
            assert.are.equal("tool_use", start.content_block.type)
            assert.matches("^toolu_", start.content_block.id)
            assert.are.equal("get_weather", start.content_block.name)
            assert.are.equal("{}", json.encode(start.content_block.input))
            local partial, pieces, stop, usage, stopped = "", 0, nil, nil, false
            for i = 3, #ev do
                local v = json.decode(ev[i].data)
                if ev[i].event == "content_block_delta" then
                    assert.are.equal("input_json_delta", v.delta.type)
                    assert.is_nil(v.delta.text)
                    partial = partial .. v.delta.partial_json
                    pieces = pieces + 1
                elseif ev[i].event == "content_block_stop" then
                    stopped = true
                elseif ev[i].event == "message_delta" then
                    stop, usage = v.delta.stop_reason, v.usage
                end
            end
            assert.is_true(pieces > 1)
            assert.is_true(stopped)
            assert.are.same(ARGS, json.decode(partial))
            assert.are.equal("tool_use", stop)
            assert.are.equal(call_tokens("get_weather", partial), usage.output_tokens)
        end)
    end)

    ------------------------------------------------------------ Gemini

    describe("Gemini dialect", function()
        local TOOLS = { { functionDeclarations = { { name = "lookup" }, { name = "get_weather" } } } }
        local function gemini(verb, extra, query)
            local b = { contents = { { role = "user", parts = { { text = PROMPT } } } }, tools = TOOLS }
            for k, v in pairs(extra or {}) do b[k] = v end
            local r = http.request { method = "POST",
                url = m.url .. "/v1beta/models/gemini-2.0-flash:" .. verb .. (query or ""),
                headers = { ["x-goog-api-key"] = keys.gemini }, body = json.encode(b) }
            assert.are.equal(200, r.status)
            return r
        end
        local function ask(prompt) return { { role = "user", parts = { { text = prompt } } } } end

        it("answers mode ANY and \"call NAME\" with a functionCall part", function()
            local v = json.decode(gemini("generateContent", { toolConfig = { functionCallingConfig = { mode = "ANY" } } }).body)
            local c = v.candidates[1]
            assert.are.same({ { functionCall = { name = "lookup", args = ARGS } } }, c.content.parts)
            assert.are.equal("STOP", c.finishReason)
            assert.are.equal(count(PROMPT), v.usageMetadata.promptTokenCount)
            assert.are.equal(call_tokens("lookup", json.encode(ARGS)), v.usageMetadata.candidatesTokenCount)
            v = json.decode(gemini("generateContent", { toolConfig = { functionCallingConfig = {
                mode = "ANY", allowedFunctionNames = { "get_weather" } } } }).body)
            assert.are.equal("get_weather", v.candidates[1].content.parts[1].functionCall.name)
            v = json.decode(gemini("generateContent", { contents = ask("call get_weather") }).body)
            assert.are.equal("get_weather", v.candidates[1].content.parts[1].functionCall.name)
            v = json.decode(gemini("generateContent", { contents = ask("call get_weather"),
                toolConfig = { functionCallingConfig = { mode = "NONE" } } }).body)
            assert.are.same({ { text = "echo: call get_weather" } }, v.candidates[1].content.parts)
            v = json.decode(gemini("generateContent").body)
            assert.are.same({ { text = "echo: " .. PROMPT } }, v.candidates[1].content.parts)
        end)

        it("echoes a functionResponse, and streams a call in one chunk", function()
            local v = json.decode(gemini("generateContent", { contents = {
                { role = "user", parts = { { text = "call get_weather" } } },
                { role = "model", parts = { { functionCall = { name = "get_weather", args = json.object() } } } },
                { role = "user", parts = { { functionResponse = { name = "get_weather", response = { content = "sunny" } } } } },
            }, toolConfig = { functionCallingConfig = { mode = "ANY" } } }).body)
            assert.are.same({ { text = "echo: sunny" } }, v.candidates[1].content.parts)
            local ev = sse_events(gemini("streamGenerateContent", { contents = ask("call get_weather") }, "?alt=sse").body)
            assert.are.equal(1, #ev)
            local c = json.decode(ev[1].data).candidates[1]
            assert.are.equal("get_weather", c.content.parts[1].functionCall.name)
            assert.are.equal("STOP", c.finishReason)
        end)
    end)
end)

------------------------------------------------------------ round trips

describe("weft's provider plugins calling tools against weft mock", function()
    local mock
    local n = 0
    local MODELS = { openai = "openai/gpt-4o-mini", anthropic = "anthropic/claude-3-5-haiku-latest",
                     gemini = "gemini/gemini-2.0-flash" }
    -- tool_choice in each provider's own wire form (the plugins pass it through)
    local REQUIRED = { openai = "required", anthropic = { type = "any" },
                       gemini = { functionCallingConfig = { mode = "ANY" } } }
    local TOOLS = { { name = "get_weather", description = "the weather", parameters = { type = "object" } } }
    -- Gemini ends a turn with a function call as any other (STOP), which
    -- the gemini plugin reads as "stop"
    local FINISH = { openai = "tool_calls", anthropic = "tool_calls", gemini = "stop" }

    before_each(function()
        mock = mock_mod.start { port = 0 }
        model.reset()
        n = n + 1
        local providers = {}
        for name in pairs(MODELS) do
            providers[name] = { base_url = mock.url, secret = weft.secrets.value("tools-" .. name .. n, keys[name]),
                                retry = { base = 0.001, cap = 0.005 }, breaker = false }
        end
        weft.configure { providers = providers }
    end)
    after_each(function() mock:close() end)

    it("complete: tool_choice asks for the call, then the tool's result is answered", function()
        for name, id in pairs(MODELS) do
            local r = weft.model(id):complete { messages = { { role = "user", content = PROMPT } }, tools = TOOLS,
                                               tool_choice = REQUIRED[name] }
            assert.are.equal(FINISH[name], r.finish_reason, name)
            assert.are.equal(1, #r.tool_calls, name)
            local tc = r.tool_calls[1]
            assert.are.equal("get_weather", tc.name, name)
            assert.are.same(ARGS, json.decode(tc.arguments), name)
            assert.are.equal(call_tokens("get_weather", json.encode(ARGS)), r.usage.output, name)
            -- the second turn: the call and its result go back, the mock echoes the result
            local r2 = weft.model(id):complete { tools = TOOLS, messages = {
                { role = "user", content = PROMPT },
                { role = "assistant", tool_calls = { { id = tc.id or "call_x", name = tc.name, arguments = tc.arguments } } },
                { role = "tool", tool_call_id = tc.id or "call_x", name = tc.name, content = "sunny, 21 C" },
            } }
            assert.are.equal("echo: sunny, 21 C", r2.text, name)
            assert.are.equal("stop", r2.finish_reason, name)
            assert.is_nil(r2.tool_calls, name)
        end
    end)

    it("complete: \"call NAME\" asks for the call without tool_choice", function()
        for name, id in pairs(MODELS) do
            local r = weft.model(id):complete { messages = { { role = "user", content = "call get_weather in Paris" } },
                                               tools = { { name = "other", parameters = { type = "object" } }, TOOLS[1] } }
            assert.are.equal("get_weather", r.tool_calls[1].name, name)
            assert.are.same({ text = "call get_weather in Paris" }, json.decode(r.tool_calls[1].arguments), name)
        end
    end)

    it("stream: the result carries the tool calls", function()
        for name, id in pairs(MODELS) do
            local texts = {}
            local r = weft.model(id):stream({ messages = { { role = "user", content = PROMPT } }, tools = TOOLS,
                                              tool_choice = REQUIRED[name] },
                                            function(ev) texts[#texts + 1] = ev.text end)
            assert.are.equal(0, #texts, name)
            assert.are.equal("", r.text, name)
            assert.are.equal(FINISH[name], r.finish_reason, name)
            assert.are.equal(1, #r.tool_calls, name)
            assert.are.equal("get_weather", r.tool_calls[1].name, name)
            assert.are.same(ARGS, json.decode(r.tool_calls[1].arguments), name)
            if name ~= "gemini" then assert.is_string(r.tool_calls[1].id, name) end
            assert.are.equal(call_tokens("get_weather", json.encode(ARGS)), r.usage.output, name)
        end
    end)
end)
