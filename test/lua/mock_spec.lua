-- mock_spec.lua: weft mock, dialect by dialect, through weft.http.
local http, json = weft.http, weft.json
local mock_mod = weft.mock
local hint = require("weft._retry").hint -- seconds from a rate-limit header

local PROMPT = "Say hello to weft"
local ANSWER = "echo: Say hello to weft"

local function sse_events(body)
    local events = {}
    for block in (body .. "\n\n"):gmatch("(.-)\r?\n\r?\n") do
        if block ~= "" then
            local ev = { event = block:match("^event: ([^\r\n]+)") }
            ev.data = block:match("data: ([^\r\n]*)")
            events[#events + 1] = ev
        end
    end
    return events
end

describe("weft mock tokenizer", function()
    it("counts word runs and punctuation", function()
        assert.are.equal(4, mock_mod.count_tokens(PROMPT))
        assert.are.equal(6, mock_mod.count_tokens(ANSWER))
        assert.are.equal(7, mock_mod.count_tokens("it's 3.5!")) -- it ' s 3 . 5 !
        assert.are.equal(0, mock_mod.count_tokens("   "))
    end)
    it("splits into pieces that concatenate back", function()
        local p = mock_mod.pieces("  a, b  c! ")
        assert.are.equal("  a, b  c! ", table.concat(p))
        assert.are.equal(5, #p)
    end)
end)

describe("weft mock", function()
    local m

    before_each(function()
        m = mock_mod.start { port = 0, limits = { rpm = 1000, tpm = 100000 } }
    end)
    after_each(function() m:close() end)

    local function openai(body, key, path)
        return http.request { method = "POST", url = m.url .. (path or "/v1/chat/completions"),
            headers = { authorization = "Bearer " .. (key or "sk-weft-mock"), ["content-type"] = "application/json" },
            body = json.encode(body) }
    end
    local function chat(extra)
        local b = { model = "gpt-4o-mini", messages = { { role = "user", content = PROMPT } } }
        for k, v in pairs(extra or {}) do b[k] = v end
        return openai(b)
    end
    local function anthropic(body, headers)
        local h = { ["x-api-key"] = "sk-ant-weft-mock", ["anthropic-version"] = "2023-06-01" }
        for k, v in pairs(headers or {}) do h[k] = v or nil end
        return http.request { method = "POST", url = m.url .. "/v1/messages", headers = h, body = json.encode(body) }
    end
    local function claude(extra)
        local b = { model = "claude-3-5-haiku-latest", max_tokens = 100, messages = { { role = "user", content = PROMPT } } }
        for k, v in pairs(extra or {}) do b[k] = v end
        return anthropic(b)
    end
    local function gemini(verb, body, query, headers)
        local h = headers or { ["x-goog-api-key"] = "weft-mock-key" }
        return http.request { method = "POST", url = m.url .. "/v1beta/models/gemini-2.0-flash:" .. verb .. (query or ""),
                              headers = h, body = json.encode(body) }
    end
    local GBODY = { contents = { { role = "user", parts = { { text = PROMPT } } } } }

    describe("OpenAI dialect", function()
        it("answers a chat completion with exact text and usage", function()
            local r = chat()
            assert.are.equal(200, r.status)
            local v = json.decode(r.body)
            assert.are.equal("chat.completion", v.object)
            assert.are.equal(ANSWER, v.choices[1].message.content)
            assert.are.equal("assistant", v.choices[1].message.role)
            assert.are.equal("stop", v.choices[1].finish_reason)
            assert.are.same({ prompt_tokens = 10, completion_tokens = 6, total_tokens = 16 }, v.usage)
            assert.matches("^chatcmpl%-", v.id)
        end)

        it("sends the real rate-limit headers with Go-duration resets", function()
            local r = chat()
            local h = r.headers
            assert.are.equal("1000", h["x-ratelimit-limit-requests"])
            assert.are.equal("999", h["x-ratelimit-remaining-requests"])
            assert.are.equal("100000", h["x-ratelimit-limit-tokens"])
            assert.matches("^[%d.]+m?s$", h["x-ratelimit-reset-requests"])
            assert.is_string(h["x-request-id"])
        end)

        it("cuts at max_tokens with finish_reason length", function()
            local v = json.decode(chat { max_tokens = 2 }.body)
            assert.are.equal("echo:", v.choices[1].message.content)
            assert.are.equal("length", v.choices[1].finish_reason)
            assert.are.equal(2, v.usage.completion_tokens)
        end)

        it("streams chat.completion.chunk events ending with [DONE], usage when asked", function()
            local r = chat { stream = true, stream_options = { include_usage = true } }
            assert.are.equal(200, r.status)
            assert.matches("^text/event%-stream", r.headers["content-type"])
            local ev = sse_events(r.body)
            assert.are.equal("[DONE]", ev[#ev].data)
            local text, usage, finish = "", nil, nil
            for i = 1, #ev - 1 do
                local c = json.decode(ev[i].data)
                assert.are.equal("chat.completion.chunk", c.object)
                if c.choices[1] then
                    text = text .. (c.choices[1].delta.content or "")
                    if c.choices[1].finish_reason ~= json.null then finish = c.choices[1].finish_reason end
                end
                if c.usage ~= json.null then usage = c.usage end
            end
            assert.are.equal(ANSWER, text)
            assert.are.equal("stop", finish)
            assert.are.equal(6, usage.completion_tokens)
        end)

        it("answers embeddings as floats or base64 float32", function()
            local v = json.decode(openai({ model = "text-embedding-3-small", input = { "a", "b c" } }, nil, "/v1/embeddings").body)
            assert.are.equal(2, #v.data)
            assert.are.equal(8, #v.data[1].embedding)
            assert.are.equal(1, v.data[2].index)
            assert.are.equal(3, v.usage.prompt_tokens)
            local b = json.decode(openai({ model = "text-embedding-3-small", input = "a", encoding_format = "base64" }, nil, "/v1/embeddings").body)
            assert.are.equal(44, #b.data[1].embedding) -- 8 floats = 32 bytes = 44 base64 chars
        end)

        it("lists models", function()
            local r = http.request { url = m.url .. "/v1/models", headers = { authorization = "Bearer sk-weft-mock" } }
            local v = json.decode(r.body)
            assert.are.equal("list", v.object)
            assert.are.equal("model", v.data[1].object)
        end)

        it("answers a missing or wrong key with OpenAI's 401", function()
            local r = http.request { method = "POST", url = m.url .. "/v1/chat/completions", body = "{}" }
            assert.are.equal(401, r.status)
            local e = json.decode(r.body).error
            assert.are.equal("invalid_request_error", e.type)
            assert.are.equal(json.null, e.code)
            local w = openai({ model = "x", messages = {} }, "sk-wrong-key-000000")
            assert.are.equal(401, w.status)
            assert.are.equal("invalid_api_key", json.decode(w.body).error.code)
        end)

        it("answers an invalid body with 400 and the error shape", function()
            local r = http.request { method = "POST", url = m.url .. "/v1/chat/completions",
                                     headers = { authorization = "Bearer sk-weft-mock" }, body = "{oops" }
            assert.are.equal(400, r.status)
            local e = json.decode(r.body).error
            assert.is_string(e.message)
            assert.are.equal(json.null, e.param)
        end)
    end)

    describe("Anthropic dialect", function()
        it("answers a message with exact text and usage", function()
            local r = claude()
            assert.are.equal(200, r.status)
            local v = json.decode(r.body)
            assert.are.equal("message", v.type)
            assert.are.equal(ANSWER, v.content[1].text)
            assert.are.equal("end_turn", v.stop_reason)
            assert.are.same({ input_tokens = 7, output_tokens = 6 }, v.usage)
            assert.is_string(r.headers["request-id"])
            assert.are.equal("1000", r.headers["anthropic-ratelimit-requests-limit"])
            assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", r.headers["anthropic-ratelimit-requests-reset"])
        end)

        it("streams the events in order, ending with message_stop", function()
            local ev = sse_events(claude { stream = true }.body)
            local names = {}
            for i, e in ipairs(ev) do names[i] = e.event end
            assert.are.equal("message_start", names[1])
            assert.are.equal("content_block_start", names[2])
            assert.are.equal("ping", names[3])
            assert.are.equal("content_block_stop", names[#names - 2])
            assert.are.equal("message_delta", names[#names - 1])
            assert.are.equal("message_stop", names[#names])
            local text = ""
            for _, e in ipairs(ev) do
                if e.event == "content_block_delta" then text = text .. json.decode(e.data).delta.text end
            end
            assert.are.equal(ANSWER, text)
            assert.are.equal(6, json.decode(ev[#ev - 1].data).usage.output_tokens)
        end)

        it("requires x-api-key (or a bearer token) and anthropic-version", function()
            local r = anthropic({ model = "m", max_tokens = 1, messages = {} }, { ["x-api-key"] = false })
            assert.are.equal(401, r.status)
            assert.are.same({ type = "error", error = { type = "authentication_error", message = "invalid x-api-key" } }, json.decode(r.body))
            local v = anthropic({ model = "m", max_tokens = 1, messages = {} }, { ["anthropic-version"] = false })
            assert.are.equal(400, v.status)
            assert.are.equal("invalid_request_error", json.decode(v.body).error.type)
            local b = anthropic({ model = "claude", max_tokens = 5, messages = { { role = "user", content = "x" } } },
                                { ["x-api-key"] = false, authorization = "Bearer sk-ant-weft-mock" })
            assert.are.equal(200, b.status)
        end)

        it("answers 529 overloaded_error as a fault", function()
            m:set_faults { { dialect = "anthropic", sequence = { 529 } } }
            local r = claude()
            assert.are.equal(529, r.status)
            assert.are.equal("overloaded_error", json.decode(r.body).error.type)
            assert.are.equal(200, claude().status) -- the sequence is used up
        end)

        it("sends an error event mid-stream", function()
            m:set_faults { { dialect = "anthropic", sequence = { "mid_stream_error" } } }
            local ev = sse_events(claude { stream = true }.body)
            assert.are.equal("error", ev[#ev].event)
            assert.are.equal("overloaded_error", json.decode(ev[#ev].data).error.type)
        end)
    end)

    describe("Gemini dialect", function()
        it("answers generateContent with usageMetadata", function()
            local r = gemini("generateContent", GBODY)
            assert.are.equal(200, r.status)
            local v = json.decode(r.body)
            assert.are.equal(ANSWER, v.candidates[1].content.parts[1].text)
            assert.are.equal("model", v.candidates[1].content.role)
            assert.are.equal("STOP", v.candidates[1].finishReason)
            assert.are.same({ promptTokenCount = 4, candidatesTokenCount = 6, totalTokenCount = 10 }, v.usageMetadata)
            assert.is_nil(r.headers["x-ratelimit-limit-requests"])
        end)

        it("takes the key from ?key= too", function()
            assert.are.equal(200, gemini("generateContent", GBODY, "?key=weft-mock-key", {}).status)
        end)

        it("streams with alt=sse and simply ends", function()
            local ev = sse_events(gemini("streamGenerateContent", GBODY, "?alt=sse").body)
            local text = ""
            for _, e in ipairs(ev) do text = text .. json.decode(e.data).candidates[1].content.parts[1].text end
            assert.are.equal(ANSWER, text)
            assert.are.equal("STOP", json.decode(ev[#ev].data).candidates[1].finishReason)
        end)

        it("embeds one or a batch", function()
            local one = json.decode(gemini("embedContent", { content = { parts = { { text = "a" } } } }).body)
            assert.are.equal(8, #one.embedding.values)
            local batch = json.decode(gemini("batchEmbedContents", { requests = {
                { model = "models/text-embedding-004", content = { parts = { { text = "a" } } } },
                { model = "models/text-embedding-004", content = { parts = { { text = "b" } } } } } }).body)
            assert.are.equal(2, #batch.embeddings)
            assert.are.same(one.embedding.values, batch.embeddings[1].values)
        end)

        it("answers a wrong key with 400 API_KEY_INVALID and a missing key with 403", function()
            local w = gemini("generateContent", GBODY, nil, { ["x-goog-api-key"] = "nope" })
            assert.are.equal(400, w.status)
            local e = json.decode(w.body).error
            assert.are.equal("INVALID_ARGUMENT", e.status)
            assert.are.equal("API_KEY_INVALID", e.details[1].reason)
            local n = gemini("generateContent", GBODY, nil, {})
            assert.are.equal(403, n.status)
            assert.are.equal("PERMISSION_DENIED", json.decode(n.body).error.status)
        end)
    end)

    describe("rate limits", function()
        it("answers 429 with Retry-After and each dialect's body once the rpm is used", function()
            m:close()
            m = mock_mod.start { port = 0, limits = { rpm = 2 } }
            assert.are.equal(200, chat().status)
            assert.are.equal(200, chat().status)
            local r = chat()
            assert.are.equal(429, r.status)
            assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
            assert.is_true(tonumber(r.headers["retry-after-ms"]) > 0)
            local e = json.decode(r.body).error
            assert.are.equal("rate_limit_exceeded", e.code)
            assert.matches("requests per min %(RPM%)", e.message)
            assert.are.equal("0", r.headers["x-ratelimit-remaining-requests"])
            -- each key and dialect has its own buckets
            assert.are.equal(200, claude().status)
            assert.are.equal(200, claude().status)
            local a = claude()
            assert.are.equal(429, a.status)
            assert.are.equal("rate_limit_error", json.decode(a.body).error.type)
            gemini("generateContent", GBODY)
            gemini("generateContent", GBODY)
            local g = gemini("generateContent", GBODY)
            assert.are.equal(429, g.status)
            local ge = json.decode(g.body).error
            assert.are.equal("RESOURCE_EXHAUSTED", ge.status)
            local retry
            for _, d in ipairs(ge.details) do
                if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo" then retry = d.retryDelay end
            end
            assert.matches("^%d+s$", retry)
        end)

        it("counts tokens per minute", function()
            m:close()
            m = mock_mod.start { port = 0, limits = { tpm = 40 } }
            assert.are.equal(200, chat { max_tokens = 20 }.status)   -- 10 in + 20 out reserved
            local r = chat { max_tokens = 20 }
            assert.are.equal(429, r.status)
            assert.are.equal("tokens", json.decode(r.body).error.type)
        end)

        it("counts fixed windows: Retry-After is the time until the window resets", function()
            m:close()
            m = mock_mod.start { port = 0, limits = { rpm = 2, window = "fixed" } }
            local before = weft.now()
            assert.are.equal(200, chat().status)   -- the key's first request starts the grid
            local after_first = weft.now()
            assert.are.equal(200, chat().status)
            local asked = weft.now()
            local r = chat()
            local got = weft.now()
            assert.are.equal(429, r.status)
            -- the window ends 60 s after the first request was counted (a
            -- token bucket would say 30 s: one request back)
            local wait = tonumber(r.headers["retry-after-ms"]) / 1000
            assert.is_true(got + wait >= before + 60, "Retry-After points before the window's end")
            assert.is_true(asked + wait <= after_first + 60 + 0.002, "Retry-After points past the window's end")
            assert.are.equal("60", r.headers["retry-after"])
            assert.are.equal("0", r.headers["x-ratelimit-remaining-requests"])
            local reset = hint("x-ratelimit-reset-requests", r.headers["x-ratelimit-reset-requests"])
            assert.is_true(reset > 59 and reset <= 60)
            -- Anthropic's Retry-After (whole seconds) says the same
            assert.are.equal(200, claude().status)
            assert.are.equal(200, claude().status)
            local a = claude()
            assert.are.equal(429, a.status)
            assert.are.equal("60", a.headers["retry-after"])
        end)

        it("gives a fixed window's whole limit back at once when the next one begins", function()
            m:close()
            m = mock_mod.start { port = 0, limits = { rps = 3, window = "fixed" } }
            for _ = 1, 3 do assert.are.equal(200, chat().status) end
            local r = chat()
            assert.are.equal(429, r.status)
            local wait = tonumber(r.headers["retry-after-ms"]) / 1000
            assert.is_true(wait > 0 and wait <= 1)
            weft.sleep(wait) -- the window's end, as the server said
            for _ = 1, 3 do assert.are.equal(200, chat().status) end
        end)

        it("refuses an unknown window", function()
            local ok, err = pcall(mock_mod.start, { port = 0, limits = { rpm = 2, window = "sliding" } })
            assert.is_false(ok)
            assert.matches("limits.window must be", err)
        end)

        it("tells quota exhaustion apart from a short-term limit", function()
            m:close()
            m = mock_mod.start { port = 0, limits = { quota = 1 } }
            assert.are.equal(200, chat().status)
            local r = chat()
            assert.are.equal(429, r.status)
            assert.are.equal("insufficient_quota", json.decode(r.body).error.code)
            assert.is_nil(r.headers["retry-after"])
            assert.are.equal(200, gemini("generateContent", GBODY).status)
            local g = json.decode(gemini("generateContent", GBODY).body).error
            assert.are.equal("GenerateRequestsPerDayPerProjectPerModel-FreeTier", g.details[1].violations[1].quotaId)
        end)
    end)

    describe("faults", function()
        it("follows an exact sequence, then answers normally", function()
            m:set_faults { { dialect = "openai", sequence = { 429, 500, "ok" } } }
            assert.are.equal(429, chat().status)
            assert.are.equal(500, chat().status)
            assert.are.equal(200, chat().status)
            assert.are.equal(200, chat().status)
            local s = m:stats()
            assert.are.equal(1, s.by_fault["429"])
            assert.are.equal(1, s.by_fault["500"])
        end)

        it("applies only to the dialect and model named", function()
            m:set_faults { { dialect = "openai", model = "gpt-4o", sequence = { 503 } } }
            assert.are.equal(200, chat().status)            -- gpt-4o-mini
            assert.are.equal(503, chat { model = "gpt-4o" }.status)
        end)

        it("injects faults by probability, reproducibly for a seed", function()
            local function run(seed)
                m:close()
                m = mock_mod.start { port = 0, seed = seed, faults = { { probability = { [500] = 0.5 } } } }
                local out = {}
                for i = 1, 20 do out[i] = chat().status end
                return table.concat(out, ",")
            end
            local a, b = run(7), run(7)
            assert.are.equal(a, b)
            assert.matches("500", a)
            assert.matches("200", a)
        end)

        it("adds latency (a lower bound)", function()
            m:set_faults { { latency = 100 } }
            local t0 = weft.now()
            chat()
            assert.is_true(weft.now() - t0 >= 0.1)
        end)

        it("resets the connection before the answer", function()
            m:set_faults { { sequence = { "reset" } } }
            local ok, err = pcall(chat)
            assert.is_false(ok)
            assert.are.equal("transient", err.kind)
        end)

        it("resets in the middle of the body", function()
            m:set_faults { { sequence = { "reset_mid_body" } } }
            local ok, err = pcall(chat)
            assert.is_false(ok)
            assert.are.equal("transient", err.kind)
        end)

        it("hangs until the client gives up", function()
            m:set_faults { { sequence = { "hang" } } }
            local ok, err = pcall(http.request, { method = "POST", url = m.url .. "/v1/chat/completions",
                headers = { authorization = "Bearer sk-weft-mock" },
                body = json.encode { model = "m", messages = { { role = "user", content = "x" } } }, timeout = 0.2 })
            assert.is_false(ok)
            assert.are.equal("timeout", err.kind)
        end)

        it("truncates a stream before its terminator", function()
            m:set_faults { { sequence = { "truncate" } } }
            local r = chat { stream = true }
            assert.are.equal(200, r.status)
            assert.is_nil(r.body:find("[DONE]", 1, true))
        end)

        it("sends an OpenAI error chunk mid-stream", function()
            m:set_faults { { sequence = { "mid_stream_error" } } }
            local ev = sse_events(chat { stream = true }.body)
            assert.are.equal("server_error", json.decode(ev[#ev].data).error.type)
        end)

        it("sends malformed JSON with a 200", function()
            m:set_faults { { sequence = { "malformed" } } }
            local r = chat()
            assert.are.equal(200, r.status)
            assert.is_nil((json.decode(r.body)))
        end)

        it("slows a stream down between events", function()
            m:set_faults { { stream_delay_ms = 20 } }
            local t0 = weft.now()
            chat { stream = true }
            assert.is_true(weft.now() - t0 >= 0.02 * 6)
        end)

        it("sends an oversized body", function()
            m:set_faults { { sequence = { "oversized" }, bytes = 3 * 1024 * 1024 } }
            local ok, err = pcall(http.request, { method = "POST", url = m.url .. "/v1/chat/completions",
                headers = { authorization = "Bearer sk-weft-mock" }, max_body = 1024 * 1024,
                body = json.encode { model = "m", messages = { { role = "user", content = "x" } } } })
            assert.is_false(ok)
            assert.are.equal("integration", err.kind)
        end)

        it("refuses invalid fault rules", function()
            assert.has_error(function() m:set_faults { { sequence = { 200 } } } end)
            assert.has_error(function() m:set_faults { { sequence = { "explode" } } } end)
            assert.has_error(function() m:set_faults { { probability = { [500] = 0.8, [503] = 0.5 } } } end)
        end)
    end)

    describe("context windows", function()
        -- PROMPT is 4 tokens: OpenAI counts 10 (3 per message, 3 to prime
        -- the reply), Anthropic 7 (3 per message), Gemini 4
        it("answers a prompt over the model's window with the dialect's context-length error", function()
            m:set_context { ["gpt-4o-mini"] = 9, ["claude-3-5-haiku-latest"] = 6, ["gemini-2.0-flash"] = 3 }
            local r = chat()
            assert.are.equal(400, r.status)
            assert.are.same({ error = { code = "context_length_exceeded", type = "invalid_request_error", param = "messages",
                message = "This model's maximum context length is 9 tokens. However, your messages resulted in 10 tokens. Please reduce the length of the messages." } },
                json.decode(r.body))
            assert.are.equal(400, chat { stream = true }.status) -- before any event
            r = claude()
            assert.are.equal(400, r.status)
            assert.are.same({ type = "error", error = { type = "invalid_request_error", message = "prompt is too long: 7 tokens > 6 maximum" } },
                json.decode(r.body))
            r = gemini("generateContent", GBODY)
            assert.are.equal(400, r.status)
            assert.are.same({ error = { code = 400, status = "INVALID_ARGUMENT",
                message = "The input token count (4) exceeds the maximum number of tokens allowed (3)." } }, json.decode(r.body))
            assert.are.equal(400, gemini("streamGenerateContent", GBODY, "?alt=sse").status)
            assert.are.equal(5, m:stats().by_fault.context_length)
            assert.are.equal("context_length", m:requests()[5].fault)
            -- counting tokens is not asking for a reply
            assert.are.equal(200, gemini("countTokens", GBODY).status)
            -- another model has no window
            assert.are.equal(200, chat { model = "gpt-4o" }.status)
        end)

        it("answers a prompt that fits the window exactly", function()
            m:set_context { ["gpt-4o-mini"] = 10, ["claude-3-5-haiku-latest"] = 7, ["gemini-2.0-flash"] = 4 }
            assert.are.equal(200, chat().status)
            assert.are.equal(200, claude().status)
            assert.are.equal(200, gemini("generateContent", GBODY).status)
        end)

        it("refuses a prompt over the window before any rate limit counts it", function()
            local lm = mock_mod.start { port = 0, limits = { rpm = 1 }, context = { ["gpt-4o"] = 5 } }
            local function post(model)
                return http.request { method = "POST", url = lm.url .. "/v1/chat/completions",
                    headers = { authorization = "Bearer sk-weft-mock" },
                    body = json.encode { model = model, messages = { { role = "user", content = PROMPT } } } }.status
            end
            local a, b, c = post("gpt-4o"), post("gpt-4o-mini"), post("gpt-4o-mini")
            lm:close()
            assert.are.same({ 400, 200, 429 }, { a, b, c })
        end)

        it("refuses windows that are not positive integers", function()
            for _, bad in ipairs { { m = 0 }, { m = 2.5 }, { m = "9" }, { m = -1 }, { 100 } } do
                assert.has_error(function() m:set_context(bad) end)
                assert.has_error(function() mock_mod.start { port = 0, context = bad } end)
            end
            assert.has_error(function() m:set_context(5) end)
        end)
    end)

    describe("clients that give up", function()
        -- Wait (bounded) until cond() holds, in small sleeps.
        local function eventually(cond)
            for _ = 1, 500 do
                if cond() then return true end
                weft.sleep(0.01)
            end
            return cond()
        end

        it("counts a client gone during the latency as closed early", function()
            m:set_faults { { model = "gpt-4o-mini", latency = 1000 } }
            local ok, err = pcall(http.request, { method = "POST", url = m.url .. "/v1/chat/completions",
                headers = { authorization = "Bearer sk-weft-mock" }, timeout = 0.1,
                body = json.encode { model = "gpt-4o-mini", messages = { { role = "user", content = PROMPT } } } })
            assert.is_false(ok)
            assert.are.equal("timeout", err.kind)
            -- counted once the handler's sleep has ended
            assert.is_true(eventually(function() return m:stats().closed_early == 1 end))
            local s = m:stats()
            assert.are.same({ ["gpt-4o-mini"] = 1 }, s.closed_early_by_model)
            local entry = m:requests()[1]
            assert.is_true(entry.closed_early)
            assert.are.equal(0, entry.status) -- nothing was sent
            assert.is_nil(s.by_status["200"])
            local js = json.decode(http.request { url = m.url .. "/_mock/stats" }.body)
            assert.are.equal(1, js.closed_early)
            assert.are.equal(1, js.closed_early_by_model["gpt-4o-mini"])
            -- a client that waits for its answer is not counted
            m:set_faults { { latency = 10 } }
            assert.are.equal(200, chat().status)
            assert.are.equal(1, m:stats().closed_early)
            assert.is_nil(m:requests()[2].closed_early)
        end)

        it("counts a client gone in the middle of a stream, in every dialect", function()
            m:set_faults { { stream_delay_ms = 50 } }
            local stop = function() return false end -- leave after the first chunk
            local function leave(opts)
                opts.on_data = stop
                local r = http.request(opts)
                assert.is_true(r.aborted)
            end
            leave { method = "POST", url = m.url .. "/v1/chat/completions", headers = { authorization = "Bearer sk-weft-mock" },
                    body = json.encode { model = "gpt-4o-mini", stream = true, messages = { { role = "user", content = PROMPT } } } }
            leave { method = "POST", url = m.url .. "/v1/messages",
                    headers = { ["x-api-key"] = "sk-ant-weft-mock", ["anthropic-version"] = "2023-06-01" },
                    body = json.encode { model = "claude-3-5-haiku-latest", max_tokens = 100, stream = true,
                                         messages = { { role = "user", content = PROMPT } } } }
            leave { method = "POST", url = m.url .. "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                    headers = { ["x-goog-api-key"] = "weft-mock-key" }, body = json.encode(GBODY) }
            assert.is_true(eventually(function() return m:stats().closed_early == 3 end))
            assert.are.same({ ["gpt-4o-mini"] = 1, ["claude-3-5-haiku-latest"] = 1, ["gemini-2.0-flash"] = 1 },
                m:stats().closed_early_by_model)
            for _, e in ipairs(m:requests()) do assert.is_true(e.closed_early) end
        end)
    end)

    describe("admin endpoint and stats", function()
        it("sets faults, reads stats and the request log, and resets", function()
            local r = http.request { method = "POST", url = m.url .. "/_mock/faults",
                                     body = '[{"dialect":"openai","sequence":[502]}]' }
            assert.are.equal(200, r.status)
            assert.are.equal(502, chat().status)
            assert.are.equal(400, http.request { method = "POST", url = m.url .. "/_mock/faults", body = '[{"sequence":["nope"]}]' }.status)
            local s = json.decode(http.request { url = m.url .. "/_mock/stats" }.body)
            assert.are.equal(1, s.requests)
            assert.are.equal(1, s.by_status["502"])
            assert.are.equal(1, s.by_endpoint["openai chat"])
            assert.are.equal(1, s.by_model["gpt-4o-mini"])
            local log = json.decode(http.request { url = m.url .. "/_mock/requests" }.body)
            assert.are.equal(1, #log)
            assert.are.equal("<redacted>", log[1].headers.authorization)
            assert.are.equal(502, log[1].status)
            assert.is_nil(http.request { url = m.url .. "/_mock/requests" }.body:find("sk-weft-mock", 1, true))
            http.request { method = "POST", url = m.url .. "/_mock/reset" }
            assert.are.equal(0, m:stats().requests)
            assert.are.equal(200, chat().status)
        end)

        it("redacts a key passed in the query string", function()
            gemini("generateContent", GBODY, "?key=weft-mock-key", {})
            local log = m:requests()
            assert.are.equal("key=<redacted>", log[#log].query)
        end)
    end)
end)
