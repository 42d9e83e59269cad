-- providers_spec.lua: the shipped provider plugins as pure codecs, on
-- hand-written wire data the mock does not produce: tool calls (request
-- and answer, whole and streamed), and the error bodies that decide a kind
-- beyond the status (quota, key invalid, overloaded) or a reason (a prompt
-- over the context window); then the context-length answers of weft mock
-- through the whole pipeline (weft.model).
local plugins = require "weft.plugins"
local json = weft.json

local function load(name)
    local p = assert(plugins.load_file(assert(plugins.find("provider", name)), "provider"))
    return p, plugins.configure(p, {})
end

local TOOL_REQ = {
    model = "m",
    messages = {
        { role = "user", content = "Weather in Paris?" },
        { role = "assistant", tool_calls = { { id = "call_1", name = "weather", arguments = '{"city":"Paris"}' } } },
        { role = "tool", tool_call_id = "call_1", name = "weather", content = '{"c":21}' },
    },
    tools = { { name = "weather", description = "Current weather",
                parameters = { type = "object", properties = { city = { type = "string" } } } } },
}

local function events(p, cfg, raw)
    local parser = require("weft._sse").new()
    local st, out = {}, { text = {} }
    for _, ev in ipairs(parser:feed(raw)) do
        local d = p.event(ev, st, TOOL_REQ, cfg)
        if d then
            if d.text then out.text[#out.text + 1] = d.text end
            if d.tool_calls then out.tool_calls = d.tool_calls end
            if d.usage then out.usage = d.usage end
            if d.finish_reason then out.finish_reason = d.finish_reason end
            if d.done then out.done = true end
            if d.error then out.error = d.error end
        end
    end
    out.text = table.concat(out.text)
    return out
end

describe("openai codec", function()
    local p, cfg = load("openai")

    it("encodes tools, tool calls and tool results in OpenAI's shapes", function()
        local b = p.encode("complete", TOOL_REQ, cfg).body
        assert.are.equal("function", b.tools[1].type)
        assert.are.equal("weather", b.tools[1]["function"].name)
        local a = b.messages[2]
        assert.are.equal("assistant", a.role)
        assert.are.equal(json.null, a.content)
        assert.are.same({ id = "call_1", type = "function", ["function"] = { name = "weather", arguments = '{"city":"Paris"}' } },
            a.tool_calls[1])
        assert.are.same({ role = "tool", tool_call_id = "call_1", name = "weather", content = '{"c":21}' }, b.messages[3])
        assert.is_nil(b.stream)
        local s = p.encode("stream", TOOL_REQ, cfg).body
        assert.is_true(s.stream)
        assert.is_true(s.stream_options.include_usage)
    end)

    it("decodes a tool call answer", function()
        local body = json.decode([[{"id":"c1","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_9","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Oslo\"}"}}]},
            "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":40,"completion_tokens":12}}]])
        local r = p.decode("complete", body, TOOL_REQ, cfg)
        assert.are.equal("", r.text)
        assert.are.equal("tool_calls", r.finish_reason)
        assert.are.same({ { id = "call_9", name = "weather", arguments = '{"city":"Oslo"}' } }, r.tool_calls)
        assert.are.same({ input = 40, output = 12 }, r.usage)
    end)

    it("assembles streamed tool call arguments", function()
        local out = events(p, cfg, table.concat {
            'data: {"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"weather","arguments":""}}]},"finish_reason":null}]}\n\n',
            'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]},"finish_reason":null}]}\n\n',
            'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"Oslo\\"}"}}]},"finish_reason":null}]}\n\n',
            'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n',
            'data: {"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":12}}\n\n',
            "data: [DONE]\n\n",
        })
        assert.is_true(out.done)
        assert.are.equal("tool_calls", out.finish_reason)
        assert.are.same({ { id = "call_9", name = "weather", arguments = '{"city":"Oslo"}' } }, out.tool_calls)
        assert.are.same({ input = 40, output = 12 }, out.usage)
    end)

    it("tells a spent quota and a bad key from other errors", function()
        local quota = [[{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}]]
        assert.are.equal("quota_exhausted", p.classify(429, {}, quota, cfg).kind)
        assert.are.equal("rate_limited", p.classify(429, {}, [[{"error":{"message":"Rate limit","type":"requests"}}]], cfg).kind)
        assert.are.equal("auth", p.classify(401, {}, [[{"error":{"code":"invalid_api_key","message":"bad"}}]], cfg).kind)
        assert.are.equal("invalid_request", p.classify(400, {}, [[{"error":{"code":"context_length_exceeded","message":"too long"}}]], cfg).kind)
        assert.are.equal("transient", p.classify(502, {}, "<html>bad gateway</html>", cfg).kind)
        assert.are.equal("bad", p.classify(401, {}, [[{"error":{"code":"invalid_api_key","message":"bad"}}]], cfg).message)
    end)

    it("tells a prompt over the context window by its code, or a compatible server's message", function()
        local over = [[{"error":{"message":"This model's maximum context length is 4097 tokens. However, you requested 4120 tokens (3120 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}]]
        local c = p.classify(400, {}, over, cfg)
        assert.are.equal("invalid_request", c.kind)
        assert.are.equal("context_length", c.reason)
        assert.are.equal("context_length_exceeded", c.code)
        -- vLLM and others: a bare error object, no code
        local bare = [[{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}]]
        c = p.classify(400, {}, bare, cfg)
        assert.are.same({ "invalid_request", "context_length" }, { c.kind, c.reason })
        assert.matches("^This model's maximum context length is 4096", c.message)
        -- other 400s, and a 429 about tokens per minute, have no reason
        assert.is_nil(p.classify(400, {}, [[{"error":{"message":"'messages' is too short","type":"invalid_request_error","param":"messages","code":null}}]], cfg).reason)
        c = p.classify(429, {}, [[{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000.","type":"tokens","code":"rate_limit_exceeded"}}]], cfg)
        assert.are.same({ "rate_limited" }, { c.kind, c.reason })
    end)
end)

describe("anthropic codec", function()
    local p, cfg = load("anthropic")

    it("encodes tools as input_schema, tool calls as tool_use blocks and results as tool_result", function()
        local b = p.encode("complete", TOOL_REQ, cfg).body
        assert.are.equal(1024, b.max_tokens) -- required by the API: the schema default
        assert.are.equal("object", b.tools[1].input_schema.type)
        assert.are.equal("tool_use", b.messages[2].content[1].type)
        assert.are.equal("Paris", b.messages[2].content[1].input.city)
        assert.are.same({ role = "user", content = { { type = "tool_result", tool_use_id = "call_1", content = '{"c":21}' } } },
            b.messages[3])
        local s = p.encode("complete", { model = "m", messages = { { role = "system", content = "Be brief." },
                                                                   { role = "user", content = "hi" } }, stop = "END" }, cfg).body
        assert.are.equal("Be brief.", s.system)
        assert.are.equal(1, #s.messages)
        assert.are.same({ "END" }, s.stop_sequences)
    end)

    it("decodes text and tool_use blocks", function()
        local body = json.decode([[{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[
            {"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"weather","input":{"city":"Oslo"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":50,"output_tokens":20}}]])
        local r = p.decode("complete", body, TOOL_REQ, cfg)
        assert.are.equal("Let me check.", r.text)
        assert.are.equal("tool_calls", r.finish_reason)
        assert.are.equal("toolu_1", r.tool_calls[1].id)
        assert.are.same({ city = "Oslo" }, json.decode(r.tool_calls[1].arguments))
        assert.are.same({ input = 50, output = 20 }, r.usage)
    end)

    it("assembles streamed tool input and reads usage from message_start and message_delta", function()
        local function ev(name, data) return "event: " .. name .. "\ndata: " .. data .. "\n\n" end
        local out = events(p, cfg, table.concat {
            ev("message_start", '{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":50,"output_tokens":1}}}'),
            ev("content_block_start", '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'),
            ev("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}'),
            ev("content_block_start", '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"weather","input":{}}}'),
            ev("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": "}}'),
            ev("content_block_delta", '{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"Oslo\\"}"}}'),
            ev("ping", '{"type":"ping"}'),
            ev("message_delta", '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}'),
            ev("message_stop", '{"type":"message_stop"}'),
        })
        assert.is_true(out.done)
        assert.are.equal("Checking.", out.text)
        assert.are.equal("tool_calls", out.finish_reason)
        assert.are.same({ { id = "toolu_1", name = "weather", arguments = '{"city": "Oslo"}' } }, out.tool_calls)
        assert.are.same({ input = 50, output = 20 }, out.usage)
    end)

    it("classifies by status, and by error type inside a stream", function()
        assert.are.equal("transient", p.classify(529, {}, [[{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}]], cfg).kind)
        assert.are.equal("quota_exhausted", p.classify(400, {}, [[{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low"}}]], cfg).kind)
        assert.are.equal("auth", p.classify(401, {}, [[{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}]], cfg).kind)
        local out = events(p, cfg, 'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}\n\n')
        assert.are.same({ kind = "rate_limited", message = "slow down" }, out.error)
    end)

    it("tells a prompt over the context window from other invalid requests", function()
        local function c(msg)
            return p.classify(400, {}, json.encode { type = "error", error = { type = "invalid_request_error", message = msg } }, cfg)
        end
        assert.are.same({ "invalid_request", "context_length" }, { c("prompt is too long: 208656 tokens > 200000 maximum").kind,
                                                                   c("prompt is too long: 208656 tokens > 200000 maximum").reason })
        assert.are.equal("context_length", c("input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, decrease input length or `max_tokens` and try again").reason)
        assert.is_nil(c("max_tokens: 10000 > 4096, which is the maximum allowed number of output tokens for claude-3-5-sonnet-20240620").reason)
        assert.is_nil(c("messages: Field required").reason)
    end)

    it("has no embeddings", function()
        assert.is_false(p.capabilities.embed)
    end)
end)

describe("gemini codec", function()
    local p, cfg = load("gemini")

    it("encodes roles, system instruction, tools and tool results", function()
        local b = p.encode("complete", TOOL_REQ, cfg).body
        assert.are.equal("user", b.contents[1].role)
        assert.are.equal("model", b.contents[2].role)
        assert.are.equal("weather", b.contents[2].parts[1].functionCall.name)
        assert.are.equal("Paris", b.contents[2].parts[1].functionCall.args.city)
        assert.are.equal("weather", b.contents[3].parts[1].functionResponse.name)
        assert.are.equal("weather", b.tools[1].functionDeclarations[1].name)
        local s = p.encode("stream", { model = "gemini-2.0-flash", system = "Be brief.", max_tokens = 5,
                                       messages = { { role = "user", content = "hi" } } }, cfg)
        assert.are.equal("/v1beta/models/gemini-2.0-flash:streamGenerateContent", s.path)
        assert.are.equal("alt=sse", s.query)
        assert.are.equal("Be brief.", s.body.systemInstruction.parts[1].text)
        assert.are.equal(5, s.body.generationConfig.maxOutputTokens)
    end)

    it("decodes function calls and blocked prompts", function()
        local body = json.decode([[{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"weather","args":{"city":"Oslo"}}}]},
            "finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":5}}]])
        local r = p.decode("complete", body, TOOL_REQ, cfg)
        assert.are.equal("weather", r.tool_calls[1].name)
        assert.are.same({ city = "Oslo" }, json.decode(r.tool_calls[1].arguments))
        assert.are.same({ input = 30, output = 5 }, r.usage)
        local blocked = p.decode("complete", json.decode([[{"promptFeedback":{"blockReason":"SAFETY"}}]]), TOOL_REQ, cfg)
        assert.are.equal("content_filter", blocked.finish_reason)
    end)

    it("ends a stream only with a finishReason", function()
        local out = events(p, cfg, 'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}]}\r\n\r\n')
        assert.is_nil(out.done)
        out = events(p, cfg, 'data: {"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}]}\r\n\r\n'
            .. 'data: {"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"MAX_TOKENS"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":2}}\r\n\r\n')
        assert.is_true(out.done)
        assert.are.equal("Hello", out.text)
        assert.are.equal("length", out.finish_reason)
    end)

    it("tells an invalid key and a daily quota apart from other 400s and 429s", function()
        local badkey = [[{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}]]
        assert.are.equal("auth", p.classify(400, {}, badkey, cfg).kind)
        assert.are.equal("invalid_request", p.classify(400, {}, [[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]], cfg).kind)
        local daily = [[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}]]
        assert.are.equal("quota_exhausted", p.classify(429, {}, daily, cfg).kind)
        assert.are.equal("rate_limited", p.classify(429, {}, [[{"error":{"code":429,"message":"slow","status":"RESOURCE_EXHAUSTED"}}]], cfg).kind)
        assert.are.equal("timeout", p.classify(504, {}, [[{"error":{"code":504,"message":"late","status":"DEADLINE_EXCEEDED"}}]], cfg).kind)
    end)

    it("reads a status without a known error status through the ladder the others use: 408 and 409 are transient", function()
        -- (it had its own ladder, which made them invalid_request, unlike
        -- weft.retry.http_error, openai and anthropic)
        for _, status in ipairs { 408, 409 } do
            assert.are.equal("transient", p.classify(status, {}, "<html>timeout</html>", cfg).kind)
            assert.are.equal(weft.retry.http_error({ status = status, headers = {}, body = "" }).kind,
                p.classify(status, {}, "", cfg).kind)
        end
        assert.are.equal("transient", p.classify(409, {}, [[{"error":{"code":409,"message":"x","status":"ABORTED"}}]], cfg).kind)
    end)

    it("tells contents over the context window from other invalid arguments", function()
        local over = [[{"error":{"code":400,"message":"The input token count (1054016) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}]]
        local c = p.classify(400, {}, over, cfg)
        assert.are.same({ "invalid_request", "context_length", "INVALID_ARGUMENT" }, { c.kind, c.reason, c.code })
        assert.is_nil(p.classify(400, {}, [[{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}]], cfg).reason)
    end)
end)

describe("rate_limits", function()
    it("is the host's for OpenAI's and Anthropic's headers, which it reads to the same values", function()
        -- (the plugins leave x-ratelimit-* and anthropic-ratelimit-* to the
        -- host: no plugin call and no tables per answer)
        assert.is_nil(load("openai").rate_limits)
        assert.is_nil(load("anthropic").rate_limits)
        -- OpenAI: remaining, Go-duration resets; retry-after-ms before Retry-After on a 429 only
        local lim = weft.limiter.new { rpm = 600, tpm = 100000 }
        lim:observe({ ["x-ratelimit-remaining-requests"] = "0", ["x-ratelimit-reset-requests"] = "1m30s",
                      ["x-ratelimit-remaining-tokens"] = "1000", ["x-ratelimit-reset-tokens"] = "6ms" }, 200)
        local st = lim:state()
        assert.is_true(st.limits.rpm.blocked_for > 89 and st.limits.rpm.blocked_for <= 90, st.limits.rpm.blocked_for)
        assert.is_true(st.limits.tpm.level < 1010, st.limits.tpm.level)
        lim = weft.limiter.new { rpm = 600 }
        assert.are.equal(1.5, lim:observe({ ["retry-after-ms"] = "1500", ["retry-after"] = "2" }, 429))
        assert.are.equal(2, weft.limiter.new { rpm = 600 }:observe({ ["retry-after"] = "2" }, 429))
        assert.is_nil(weft.limiter.new { rpm = 600 }:observe({ ["retry-after"] = "2" }, 200))
        -- Anthropic: RFC 3339 resets
        lim = weft.limiter.new { rpm = 600 }
        local soon = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 30)
        lim:observe({ ["anthropic-ratelimit-requests-remaining"] = "0", ["anthropic-ratelimit-requests-reset"] = soon }, 200)
        local b = lim:state().limits.rpm.blocked_for
        assert.is_true(b > 25 and b <= 30, b)
        assert.are.equal(7, weft.limiter.new { rpm = 600 }:observe({ ["retry-after"] = "7" }, 429))
    end)

    it("reads Gemini's RetryInfo from a 429 body", function()
        local p, cfg = load("gemini")
        local body = [[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}]]
        assert.are.same({ retry_after = 17 }, p.rate_limits(429, {}, body, cfg))
        assert.is_nil(p.rate_limits(200, {}, "", cfg))
    end)
end)

describe("openai_compatible", function()
    it("inherits the openai codec and needs a base URL", function()
        local p, cfg = load("openai_compatible")
        assert.are.equal("openai", load("openai").name)
        assert.is_false(p.base_url)
        assert.is_false(p.secret)
        assert.are.equal("/v1/chat/completions", p.encode("complete", TOOL_REQ, cfg).path)
        local alt = plugins.configure(p, { chat_path = "/api/chat", stream_usage = false })
        local enc = p.encode("stream", TOOL_REQ, alt)
        assert.are.equal("/api/chat", enc.path)
        assert.is_nil(enc.body.stream_options)
    end)

    it("classifies a compatible server's context-length answer", function()
        local p, cfg = load("openai_compatible")
        local c = p.classify(400, {}, [[{"object":"error","message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens in the messages, Please reduce the length of the messages.","type":"BadRequestError","param":null,"code":400}]], cfg)
        assert.are.same({ "invalid_request", "context_length" }, { c.kind, c.reason })
    end)
end)

-- The whole pipeline: weft.model against weft mock with small context
-- windows. The error value a call raises carries the reason classify gave.
describe("context-length answers through weft.model", function()
    local mockmod = weft.mock
    local keys = mockmod.DEFAULT_KEYS
    local MODELS = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash",
                     compat = "llama-3-8b" }
    local mock

    before_each(function()
        local windows = {}
        for _, m in pairs(MODELS) do windows[m] = 3 end
        mock = mockmod.start { port = 0, context = windows }
        require("weft.model").reset()
        local providers = {}
        for name in pairs(MODELS) do
            local d = name == "compat" and "openai" or name
            providers[name] = { plugin = name == "compat" and "openai_compatible" or nil, base_url = mock.url,
                                secret = weft.secrets.value("ctx-spec-" .. name, keys[d]),
                                retry = { base = 0.001, cap = 0.005, seed = 7 }, breaker = false }
        end
        weft.configure { providers = providers }
    end)
    after_each(function() mock:close() end)

    it("fails with kind invalid_request and reason context_length, without retrying", function()
        for name, m in pairs(MODELS) do
            local ok, err = pcall(function()
                return weft.model(name .. "/" .. m):complete("a prompt longer than three tokens, surely")
            end)
            assert.is_false(ok, name)
            assert.are.equal("invalid_request", err.kind, name)
            assert.are.equal(400, err.status, name)
            assert.are.equal("context_length", err.reason, name)
        end
        -- one request each: not retried
        assert.are.equal(4, mock:stats().requests)
        assert.are.equal(4, mock:stats().by_fault.context_length)
    end)

    it("fails a stream the same way before any event", function()
        local ok, err = pcall(function()
            return weft.model("anthropic/" .. MODELS.anthropic):stream("a prompt longer than three tokens, surely",
                function() end)
        end)
        assert.is_false(ok)
        assert.are.same({ "invalid_request", "context_length" }, { err.kind, err.reason })
    end)
end)
