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

    describe("fault rule checks", function()
        -- The message of set_faults(rules), or nil when it accepts them.
        local function refusal(rules)
            local ok, err = pcall(m.set_faults, m, rules)
            if ok then return nil end
            return tostring(err)
        end
        local function no_internals(msg)
            assert.is_nil(msg:find("mock/", 1, true), msg)
            assert.is_nil(msg:find("init.lua", 1, true), msg)
            assert.is_nil(msg:find("options.lua", 1, true), msg)
            assert.is_nil(msg:find("traceback", 1, true), msg)
            assert.is_nil(msg:find("bad argument", 1, true), msg)
        end

        it("names an unknown key and lists the accepted ones (issue 17: status = 503)", function()
            local msg = refusal { { dialect = "openai", probability = 1.0, status = 503 } }
            assert.is_string(msg)
            assert.matches('mock:set_faults: rule 1: unknown key "status"', msg, 1, true)
            assert.matches("dialect, model, endpoint, sequence, probability, latency, retry_after, "
                .. "stream_delay_ms, bytes", msg, 1, true)
            assert.matches("probability = { [503] = 1.0 }", msg, 1, true)
            no_internals(msg)
        end)

        it("checks each key's type and shows the accepted forms", function()
            local cases = {
                { { { probability = 1.0 } }, "rule 1: probability must map faults to chances from 0 to 1, e.g. probability = { [503] = 1.0 }" },
                { { { probability = { 0.5 } } }, "rule 1: probability must map faults" },
                { { { probability = { [503] = 1.5 } } }, "rule 1: probability[503] must be a chance from 0 to 1, got 1.5" },
                { { { probability = { boom = 0.5 } } }, 'rule 1: probability: "boom" is not a fault' },
                { { { probability = { [503] = 0.8, [500] = 0.5 } } }, "rule 1: probability: the chances add up to 1.3" },
                { { { sequence = 503 } }, "rule 1: sequence must be a list of faults, e.g. sequence = { 429, 500, \"ok\" }; got 503" },
                { { { sequence = { 503, 200 } } }, "rule 1: sequence item 2: 200 is not a fault; a fault is an HTTP status 400..599" },
                { { { sequence = { "explode" } } }, 'rule 1: sequence item 1: "explode" is not a fault' },
                { { { latency = "slow" } }, 'rule 1: latency must be milliseconds before answering: latency = 250, latency = { min = 100, max = 900 } or latency = { median = 300, tail = 1.5, cap = 5000 }; got "slow"' },
                { { { latency = -5 } }, "rule 1: latency must be milliseconds" },
                { { { latency = { 100, 200 } } }, "rule 1: latency: a range is written with names, latency = { min = 100, max = 200 }" },
                { { { latency = { min = 500, max = 100 } } }, "rule 1: latency: min (500) is greater than max (100)" },
                { { { latency = { min = 100 } } }, "rule 1: latency = {min, max} needs both" },
                { { { latency = { median = 300, spread = 2 } } }, 'rule 1: latency: unknown key "spread" next to median' },
                { { { latency = { median = 300, tail = 0 } } }, "rule 1: latency.tail" },
                { { { retry_after = "2" } }, 'rule 1: retry_after must be seconds >= 0 (the Retry-After of an injected 429), got "2"; e.g. retry_after = 2' },
                { { { stream_delay_ms = -1 } }, "rule 1: stream_delay_ms must be milliseconds >= 0" },
                { { { bytes = 1.5 } }, "rule 1: bytes must be a whole number of bytes >= 1" },
                { { { dialect = "azure" } }, 'rule 1: dialect must be "openai", "anthropic" or "gemini", got "azure"' },
                { { { model = 5 } }, 'rule 1: model must be a model name (a string), got 5; e.g. model = "gpt-4o"' },
                { { { endpoint = "chat_completions" } }, 'rule 1: endpoint "chat_completions" is not an endpoint of the mock; accepted: openai: "chat"' },
                { { { dialect = "anthropic", endpoint = "chat" } }, 'rule 1: endpoint "chat" is not an endpoint of the anthropic dialect; accepted: "messages"' },
                { { { dialect = "openai" }, { sequence = { 503 }, delay = 5 } }, 'rule 2: unknown key "delay"' },
                { { { sequenc = { 503 } } }, 'rule 1: unknown key "sequenc"' },
                { { { latencies = 5 } }, "(did you mean latency?)" },
                { { "openai" }, "rule 1: expected a rule (a table of named keys: dialect, model" },
                { { dialect = "openai", sequence = { 503 } }, "expected a list of fault rules, got a single rule: wrap the rule in a list" },
                { 503, "expected a list of fault rules, got 503" },
            }
            for _, c in ipairs(cases) do
                local msg = refusal(c[1])
                assert.is_string(msg, "accepted: " .. c[2])
                assert.matches(c[2], msg, 1, true)
                no_internals(msg)
            end
        end)

        it("accepts every documented form and keeps the rules in force when a set is refused", function()
            assert.is_nil(refusal {
                { dialect = "openai", model = "gpt-4o", endpoint = "chat", sequence = { 429, "reset", "ok" },
                  retry_after = 0, stream_delay_ms = 0 },
                { dialect = "anthropic", endpoint = "batch_item", probability = { [529] = 0.5, ["503"] = 0.25, hang = 0.25 } },
                { dialect = "gemini", endpoint = "streamGenerateContent", latency = { min = 0, max = 0 } },
                { latency = { median = 1, tail = 2, cap = 1 }, bytes = 1024 },
                { sequence = {}, probability = {} },
            })
            m:set_faults { { dialect = "openai", sequence = { 503, 503 } } }
            assert.is_string(refusal { { dialect = "openai", sequence = { 503 }, status = 200 } })
            assert.are.equal(503, chat().status)
        end)

        it("keeps a copy: the caller's rules are not changed, and a set starts its sequences over", function()
            local rules = { { dialect = "openai", sequence = { 502, "ok" } } }
            m:set_faults(rules)
            assert.are.equal(502, chat().status)
            assert.are.same({ { dialect = "openai", sequence = { 502, "ok" } } }, rules)
            m:set_faults(rules)
            assert.are.equal(502, chat().status)
            assert.are.equal(200, chat().status)
        end)

        it("checks the rules and every other option of start", function()
            local cases = {
                { { faults = { { probability = 1.0, status = 503 } } }, 'weft.mock.start: faults: rule 1: unknown key "status"' },
                { { limit = { rpm = 1 } }, 'weft.mock.start: unknown option "limit"; accepted: host, port, keys, limits, faults' },
                { { limit = { rpm = 1 } }, "(did you mean limits?)" },
                { { limits = { rpn = 1 } }, 'weft.mock.start: limits: unknown key "rpn"; accepted: rps, rpm, rpd, tpm, quota, window' },
                { { limits = { rpm = "60" } }, 'weft.mock.start: limits.rpm must be a positive number, got "60"' },
                { { keys = { claude = "x" } }, 'weft.mock.start: keys: unknown dialect "claude"; accepted: openai, anthropic, gemini' },
                { { keys = { openai = 5 } }, "weft.mock.start: keys.openai must be a non-empty string" },
                { { port = 70000 }, "weft.mock.start: port must be an integer from 0 to 65535" },
                { { host = 1 }, "weft.mock.start: host must be an address to bind" },
                { { seed = "x" }, "weft.mock.start: seed must be an integer" },
                { { max_log = 0 }, "weft.mock.start: max_log must be a positive integer" },
                { { strict_models = "yes" }, 'weft.mock.start: strict_models must be true or false, got "yes"' },
                { { models = "my-model" }, 'weft.mock.start: models must be a list of model names, e.g. models = { "my-model" }' },
                { { models = { "a", 5 } }, "weft.mock.start: models item 2 must be a model name" },
                { { clock = 5 }, "weft.mock.start: clock must be a function" },
                { 5, "weft.mock.start: expected a table of options, got 5" },
            }
            for _, c in ipairs(cases) do
                local ok, err = pcall(mock_mod.start, c[1])
                if ok then err:close() end
                assert.is_false(ok, "accepted: " .. c[2])
                assert.matches(c[2], tostring(err), 1, true)
                no_internals(tostring(err))
            end
        end)

        it("never shows a key's value", function()
            local ok, err = pcall(mock_mod.start, { keys = { openai = "sk-secret-value", gemini = { "sk-secret-value" } } })
            assert.is_false(ok)
            assert.matches("keys.gemini must be a non-empty string", tostring(err), 1, true)
            assert.is_nil(tostring(err):find("sk-secret-value", 1, true))
        end)
    end)

    describe("strict models", function()
        local sm
        after_each(function() if sm then sm:close() sm = nil end end)

        local function post(mock, path, headers, body)
            local r = http.request { method = "POST", url = mock.url .. path, headers = headers, body = json.encode(body) }
            return r.status, json.decode(r.body)
        end
        local OA = { authorization = "Bearer sk-weft-mock" }
        local AN = { ["x-api-key"] = "sk-ant-weft-mock", ["anthropic-version"] = "2023-06-01" }
        local GE = { ["x-goog-api-key"] = "weft-mock-key" }
        local function oa_chat(mock, model)
            return post(mock, "/v1/chat/completions", OA, { model = model, messages = { { role = "user", content = "hi" } } })
        end
        local function an_msg(mock, model)
            return post(mock, "/v1/messages", AN, { model = model, max_tokens = 5, messages = { { role = "user", content = "hi" } } })
        end
        local function ge_gen(mock, model, verb)
            local body = verb == "embedContent" and { content = { parts = { { text = "hi" } } } } or GBODY
            return post(mock, "/v1beta/models/" .. model .. ":" .. (verb or "generateContent"), GE, body)
        end

        it("answers an unknown model with each dialect's real 404", function()
            sm = mock_mod.start { port = 0, strict_models = true }
            local st, b = oa_chat(sm, "gpt-nope")
            assert.are.equal(404, st)
            assert.are.same({ message = "The model `gpt-nope` does not exist or you do not have access to it.",
                              type = "invalid_request_error", param = json.null, code = "model_not_found" }, b.error)
            st, b = post(sm, "/v1/embeddings", OA, { model = "text-embedding-nope", input = "x" })
            assert.are.equal(404, st)
            assert.are.equal("model_not_found", b.error.code)
            local r = http.request { url = sm.url .. "/v1/models/gpt-nope", headers = OA }
            assert.are.equal(404, r.status)

            st, b = an_msg(sm, "claude-nope")
            assert.are.equal(404, st)
            assert.are.same({ type = "error", error = { type = "not_found_error", message = "model: claude-nope" } }, b)

            st, b = ge_gen(sm, "gemini-nope")
            assert.are.equal(404, st)
            assert.are.equal(404, b.error.code)
            assert.are.equal("NOT_FOUND", b.error.status)
            assert.matches("^models/gemini%-nope is not found for API version v1beta, or is not supported for generateContent%.", b.error.message)
            st, b = ge_gen(sm, "gemini-nope", "embedContent")
            assert.are.equal(404, st)

            local s = sm:stats()
            assert.are.equal(6, s.by_fault.model_not_found)
            assert.are.equal("model_not_found", sm:requests()[1].fault)
        end)

        it("answers the models it knows, mock-words-embedding and the `models` option's names", function()
            sm = mock_mod.start { port = 0, strict_models = true, models = { "my-model" } }
            assert.are.equal(200, (oa_chat(sm, "gpt-4o-mini")))
            assert.are.equal(200, (oa_chat(sm, "my-model")))
            assert.are.equal(200, (post(sm, "/v1/embeddings", OA, { model = "mock-words-embedding", input = "x" })))
            assert.are.equal(200, (an_msg(sm, "claude-3-5-haiku-latest")))
            assert.are.equal(200, (an_msg(sm, "my-model")))
            assert.are.equal(200, (ge_gen(sm, "gemini-2.0-flash")))
            assert.are.equal(200, (ge_gen(sm, "text-embedding-004", "embedContent")))
        end)

        it("knows every model name the examples, plugins and specs use", function()
            local known = mock_mod.options.known_models()
            for _, name in ipairs { "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small",
                                    "text-embedding-3-large", "mock-words-embedding" } do
                assert.is_true(known.openai[name], name)
            end
            for _, name in ipairs { "claude-3-5-haiku-latest", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-20240620",
                                    "claude-sonnet-4-5", "claude-haiku-4-5" } do
                assert.is_true(known.anthropic[name], name)
            end
            for _, name in ipairs { "gemini-2.0-flash", "gemini-2.5-flash", "gemini-1.5-flash", "gemini-1.5-pro",
                                    "text-embedding-004" } do
                assert.is_true(known.gemini[name], name)
            end
        end)

        it("refuses an unknown model before any rate limit counts it", function()
            sm = mock_mod.start { port = 0, strict_models = true, limits = { rpm = 1 } }
            assert.are.equal(404, (oa_chat(sm, "gpt-nope")))
            assert.are.equal(200, (oa_chat(sm, "gpt-4o-mini")))
        end)

        it("is off by default: any model name is answered", function()
            local st, b = oa_chat(m, "gpt-nope")
            assert.are.equal(200, st)
            assert.are.equal("echo: hi", b.choices[1].message.content)
            assert.are.equal(200, (an_msg(m, "claude-nope")))
            assert.are.equal(200, (ge_gen(m, "gemini-nope")))
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

        it("answers rules it refuses with 400 {error} naming the rule and key, in JSON terms, without internals", function()
            local function post(body)
                local r = http.request { method = "POST", url = m.url .. "/_mock/faults", body = body }
                assert.matches("application/json", r.headers["content-type"], 1, true)
                return r.status, json.decode(r.body).error
            end
            local cases = {
                { '[{"dialect":"openai","probability":1.0,"status":503}]',
                  'rule 1: unknown key "status"; a rule takes dialect, model, endpoint, sequence, probability, latency, '
                  .. 'retry_after, stream_delay_ms, bytes (to answer with a status, use "sequence": [503] or "probability": {"503": 1.0})' },
                { '[{"probability":1.0}]', 'rule 1: probability must map faults to chances from 0 to 1, e.g. "probability": {"503": 1.0}' },
                { '[{"sequence":[503]},{"latency":{"min":1}}]', "rule 2: latency = {min, max} needs both" },
                { '[{"dialect":null}]', 'rule 1: dialect must be "openai", "anthropic" or "gemini", got null' },
                { '{"sequence":[503]}', "expected a list of fault rules, got a single rule: wrap the rule in a list: [{...}]" },
                { "{}", "expected a list of fault rules, got an object" },
                { "null", "expected a list of fault rules, got null" },
                { "{oops", "invalid JSON: " },
                { "", "invalid JSON: " },
            }
            for _, c in ipairs(cases) do
                local st, e = post(c[1])
                assert.are.equal(400, st, c[1])
                assert.matches(c[2], e, 1, true)
                assert.is_nil(e:find("invalid JSON: invalid JSON", 1, true), e)
                assert.is_nil(e:find("%.lua:%d"), e)
                assert.is_nil(e:find("traceback", 1, true), e)
            end
            -- none of them replaced the rules in force (none)
            assert.are.equal(200, chat().status)
            -- a status as a key is a string in JSON: accepted
            assert.are.equal(200, (post('[{"dialect":"openai","probability":{"503":1.0}}]')))
            assert.are.equal(503, chat().status)
            assert.are.equal(200, (post("[]")))
            assert.are.equal(200, chat().status)
            local r = http.request { method = "POST", url = m.url .. "/_mock/batch", body = "{oops" }
            assert.are.equal(400, r.status)
            assert.matches("^invalid JSON: ", json.decode(r.body).error)
        end)

        it("redacts a key passed in the query string", function()
            gemini("generateContent", GBODY, "?key=weft-mock-key", {})
            local log = m:requests()
            assert.are.equal("key=<redacted>", log[#log].query)
        end)
    end)
end)

describe("weft mock max_connections", function()
    local CHAT = json.encode { model = "gpt-4o-mini", messages = { { role = "user", content = PROMPT } } }

    it("lets one address hold all of them open, and closes one more at once", function()
        -- (weft.http.serve alone would take a quarter from one address: 1 of 4)
        local m = mock_mod.start { port = 0, max_connections = 4,
                                   faults = { { sequence = { "hang", "hang", "hang", "hang" } } } }
        local done, tasks = 0, {}
        for i = 1, 4 do
            tasks[i] = weft.spawn(function()
                pcall(http.request, { method = "POST", url = m.url .. "/v1/chat/completions", body = CHAT,
                                       headers = { authorization = "Bearer sk-weft-mock" }, timeout = 600 })
                done = done + 1 -- refused (or, wrongly, answered)
            end)
        end
        -- until each of the four hangs at the mock or was refused (bounded:
        -- a request that never arrives fails the spec, not the run)
        for _ = 1, 1000 do
            if m:stats().in_flight + done >= 4 then break end
            weft.sleep(0.01)
        end
        assert.are.equal(4, m:stats().in_flight)
        assert.are.equal(0, done)
        local ok, err = pcall(http.request, { url = m.url .. "/_mock/stats", timeout = 600 })
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        assert.are.equal(1, m.server:stats().rejected)
        for _, t in ipairs(tasks) do t:cancel() end
        for _, t in ipairs(tasks) do pcall(t.wait, t) end
        m:close()
    end)

    it("is checked", function()
        for _, bad in ipairs { 0, 2.5, "10", 1e7 } do
            local ok, err = pcall(mock_mod.start, { port = 0, max_connections = bad })
            assert.is_false(ok)
            assert.matches("max_connections must be an integer from 1 to 1000000", err, 1, true)
        end
    end)
end)
