-- serve_spec.lua: weft serve (lua/weft/serve) inside the host: virtual keys
-- (digests, secret references, models, rpm/tpm with Retry-After, day and
-- month budgets on an injected clock), the dialects' request checks, hooks,
-- reloads, the loopback rule, limits, a client that goes away cancelling
-- the upstream call, readiness, and weft._signal's SIGHUP.
local http, json = weft.http, weft.json
local serve = require "weft.serve"
local model = require "weft.model"
local errors = require "weft.error"
local ffi = require "ffi"

pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")

local KEYS = weft.mock.DEFAULT_KEYS
local n = 0

local function sha256(s) return require("weft._digest").sha256_hex(s) end

-- A gateway over a fresh mock; `gateway` and `models` are merged in.
local function start(mock, gateway, extra)
    n = n + 1
    model.reset()
    local cfg = {
        providers = {
            openai = { base_url = mock.url, secret = weft.secrets.value("serve-oa" .. n, KEYS.openai),
                       retry = { base = 0.01, max_attempts = 2 },
                       prices = { ["gpt-4o-mini"] = { input = 1e6, output = 1e6 } } }, -- 1 USD a token
            anthropic = { base_url = mock.url, secret = weft.secrets.value("serve-an" .. n, KEYS.anthropic) },
        },
        models = { fast = "openai/gpt-4o-mini", claude = "anthropic/claude-3-5-haiku-latest",
                   slow = "openai/gpt-4o" },
        gateway = gateway or {},
    }
    for k, v in pairs(extra or {}) do if k ~= "clock" then cfg[k] = v end end
    return serve.start { cfg = cfg, port = 0, watch = false, clock = extra and extra.clock }
end

local function post(gw, path, body, headers)
    local h = { ["content-type"] = "application/json" }
    for k, v in pairs(headers or {}) do h[k] = v end
    local r = http.request { method = "POST", url = gw.url .. path, headers = h,
                             body = type(body) == "string" and body or json.encode(body) }
    local ok, v = pcall(json.decode, r.body)
    r.json = ok and v or nil
    return r
end

local function chat(gw, key, mdl, extra)
    local b = { model = mdl or "fast", messages = { { role = "user", content = "hello there" } } }
    for k, v in pairs(extra or {}) do b[k] = v end
    return post(gw, "/v1/chat/completions", b, key and { authorization = "Bearer " .. key } or nil)
end

local function messages(gw, key, mdl)
    return post(gw, "/v1/messages", { model = mdl or "claude", max_tokens = 50,
        messages = { { role = "user", content = "hello there" } } }, key and { ["x-api-key"] = key } or nil)
end

describe("weft serve", function()
    local mock, gw
    before_each(function() mock = weft.mock.start { port = 0 } end)
    after_each(function()
        if gw then gw:close() gw = nil end
        mock:close()
        model.reset()
    end)

    describe("virtual keys", function()
        it("admits a key by its digest or its secret reference, refuses others in each dialect", function()
            gw = start(mock, { keys = {
                a = { sha256 = sha256("key-a-0123456789") },
                b = { secret = weft.secrets.value("serve-key-b", "key-b-0123456789") },
            } })
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            assert.equals(200, chat(gw, "key-b-0123456789").status)
            local r = chat(gw, "key-c-0123456789")
            assert.equals(401, r.status)
            assert.equals("unauthenticated", r.headers["x-weft-error-kind"])
            assert.equals("invalid_api_key", r.json.error.code)
            assert.is_nil(r.body:find("key-c", 1, true))
            r = chat(gw, nil)
            assert.equals(401, r.status)
            r = messages(gw, "nope-0123456789")
            assert.equals(401, r.status)
            assert.equals("authentication_error", r.json.error.type)
            assert.equals(200, messages(gw, "key-a-0123456789").status)
        end)

        it("limits a key to its models: OpenAI answers 404, Anthropic 403, and lists only them", function()
            gw = start(mock, { keys = { a = { sha256 = sha256("key-a-0123456789"), models = { "fast" } } } })
            assert.equals(200, chat(gw, "key-a-0123456789", "fast").status)
            local r = chat(gw, "key-a-0123456789", "claude")
            assert.equals(404, r.status)
            assert.equals("model_not_found", r.json.error.code)
            r = messages(gw, "key-a-0123456789", "claude")
            assert.equals(403, r.status)
            assert.equals("permission_error", r.json.error.type)
            local l = http.request { url = gw.url .. "/v1/models", headers = { authorization = "Bearer key-a-0123456789" } }
            local ids = {}
            for _, m in ipairs(json.decode(l.body).data) do ids[#ids + 1] = m.id end
            assert.same({ "fast" }, ids)
        end)

        it("answers a key over its rpm with 429 and a Retry-After, before sending", function()
            gw = start(mock, { keys = { a = { sha256 = sha256("key-a-0123456789"), rpm = 2 } } })
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            local sent = #mock:requests()
            local r = chat(gw, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.equals("rate_limited", r.headers["x-weft-error-kind"])
            assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
            assert.equals("rate_limit_exceeded", r.json.error.code)
            assert.equals(sent, #mock:requests())
            r = messages(gw, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.equals("rate_limit_error", r.json.error.type)
        end)

        it("refuses a request over a key's tpm burst with 429", function()
            gw = start(mock, { keys = { a = { sha256 = sha256("key-a-0123456789"), tpm = 100 } } })
            local r = chat(gw, "key-a-0123456789", "fast", { max_tokens = 500 })
            assert.equals(429, r.status)
            assert.equals(200, chat(gw, "key-a-0123456789", "fast", { max_tokens = 10 }).status)
        end)

        it("enforces day and month budgets in USD, rolling over with the UTC day and month", function()
            local now = os.time { year = 2026, month = 3, day = 30, hour = 12 }
            local clock = function() return now end
            gw = start(mock, { keys = { a = { sha256 = sha256("key-a-0123456789"), budget = { day = 5, month = 30 } } } },
                { clock = clock })
            -- a call costs 12 USD here (8 tokens in, 4 out, 1 USD a token)
            local r = chat(gw, "key-a-0123456789")
            assert.equals(200, r.status)
            assert.equals(12, r.json.usage.total_tokens)
            local sent = #mock:requests()
            r = chat(gw, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.equals("quota_exhausted", r.headers["x-weft-error-kind"])
            assert.equals("insufficient_quota", r.json.error.code)
            assert.matches("day budget", r.json.error.message)
            assert.equals(sent, #mock:requests())
            r = messages(gw, "key-a-0123456789", "fast")
            assert.equals(429, r.status)
            assert.equals("rate_limit_error", r.json.error.type)
            now = now + 86400 -- the 31st: 12 more (24 this month)
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            now = now + 86400 -- April 1st: a new month
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            now = now + 86400
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            now = now + 86400 -- 24 spent in April, under 30: allowed, then 36
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            now = now + 86400
            r = chat(gw, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.matches("month budget", r.json.error.message)
            assert.equals(0, weft.metrics.value("weft_gateway_budget_remaining_usd", { key = "a", period = "month" }))
        end)

        it("counts what a call used when an after hook refuses the answer or the client goes away", function()
            local now = os.time { year = 2026, month = 5, day = 10, hour = 12 }
            gw = start(mock, { keys = { a = { sha256 = sha256("key-a-0123456789"), budget = { day = 20 }, tpm = 100000 } } },
                { clock = function() return now end })
            gw.hooks = { after = function() errors.raise("invalid_request", "refused by the output guardrail") end }
            local cost0 = weft.metrics.value("weft_gateway_cost_usd_total", { key = "a" }) or 0
            local r = chat(gw, "key-a-0123456789") -- 12 USD, refused after
            assert.equals(400, r.status)
            assert.near(12, weft.metrics.value("weft_gateway_cost_usd_total", { key = "a" }) - cost0, 1e-6)
            r = chat(gw, "key-a-0123456789") -- 24 USD
            assert.equals(400, r.status)
            r = chat(gw, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.equals("quota_exhausted", r.headers["x-weft-error-kind"])
            -- a client that leaves a stream after its first piece: what the provider read is counted
            gw.hooks = nil
            now = now + 86400
            mock:set_faults { { model = "gpt-4o-mini", stream_delay_ms = 200 } }
            local before = weft.metrics.value("weft_gateway_cost_usd_total", { key = "a" })
            pcall(http.request, { method = "POST", url = gw.url .. "/v1/chat/completions",
                headers = { authorization = "Bearer key-a-0123456789" },
                body = json.encode { model = "fast", stream = true,
                    messages = { { role = "user", content = "one two three four five six seven" } } },
                on_data = function() return false end })
            local after
            for _ = 1, 100 do
                after = weft.metrics.value("weft_gateway_cost_usd_total", { key = "a" })
                if after > before then break end
                weft.sleep(0.02)
            end
            assert.is_true(after > before)
            assert.is_true((weft.metrics.value("weft_gateway_client_gone_total", { key = "a" }) or 0) >= 1)
        end)

        it("checks key definitions", function()
            local function bad(keys, pattern)
                local ok, e = pcall(start, mock, { keys = keys })
                assert.is_false(ok)
                assert.matches(pattern, tostring(e))
            end
            bad({ a = {} }, "needs secret")
            bad({ a = { sha256 = "abc" } }, "64 hex digits")
            bad({ a = { sha256 = sha256("x"), rpm = -1 } }, "rpm: expected a number > 0")
            bad({ a = { sha256 = sha256("x"), budget = { week = 1 } } }, "unknown period")
            bad({ a = { sha256 = sha256("x"), colour = 1 } }, "unknown field")
            bad({ a = { sha256 = sha256("x") }, b = { sha256 = sha256("x") } }, "the same key as")
            bad({ a = { secret = "env:WEFT_SERVE_SPEC_UNSET_VARIABLE" } }, "gateway.keys.a.secret")
        end)

        it("refuses a non-loopback address without keys", function()
            local ok, e = pcall(function()
                model.reset()
                return serve.start { cfg = { models = {}, gateway = { host = "0.0.0.0" } }, port = 0, watch = false }
            end)
            assert.is_false(ok)
            assert.matches("no keys configured", tostring(e))
        end)
    end)

    describe("requests", function()
        it("refuses what cannot be represented with the dialect's 400", function()
            gw = start(mock)
            local r = chat(gw, nil, "fast", { n = 2 })
            assert.equals(400, r.status)
            assert.matches("n > 1", r.json.error.message)
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user",
                content = { { type = "image_url", image_url = { url = "x" } } } } } })
            assert.equals(400, r.status)
            assert.matches("only text parts", r.json.error.message)
            r = post(gw, "/v1/chat/completions", "{not json")
            assert.equals(400, r.status)
            r = post(gw, "/v1/messages", { model = "claude", messages = { { role = "user", content = "x" } } })
            assert.equals(400, r.status)
            assert.matches("max_tokens", r.json.error.message)
            r = post(gw, "/v1/embeddings", { model = "fast", input = { { 1, 2, 3 } } })
            assert.equals(400, r.status)
            assert.matches("token arrays", r.json.error.message)
            r = http.request { url = gw.url .. "/v2/nothing" }
            assert.equals(404, r.status)
        end)

        it("passes fields weft has no place for to a provider of the client's dialect, refuses them elsewhere", function()
            gw = start(mock, {}, { models = { fast = "openai/gpt-4o-mini", claude = "anthropic/claude-3-5-haiku-latest",
                pol = { policy = "fallback", targets = { "fast", "claude" } } } })
            local r = chat(gw, nil, "fast", { response_format = { type = "json_object" }, seed = 7, user = "u1" })
            assert.equals(200, r.status)
            local sent = json.decode(mock:requests()[#mock:requests()].body)
            assert.same({ type = "json_object" }, sent.response_format)
            assert.equals(7, sent.seed)
            r = chat(gw, nil, "claude", { response_format = { type = "json_object" } })
            assert.equals(400, r.status)
            assert.matches("response_format: not supported for the model `claude`", r.json.error.message)
            r = chat(gw, nil, "pol", { seed = 1 })
            assert.equals(400, r.status)
            assert.is_nil(sent.user) -- bookkeeping: never passed on
            r = chat(gw, nil, "fast", { store = true, service_tier = "priority" })
            assert.equals(200, r.status)
            sent = json.decode(mock:requests()[#mock:requests()].body)
            assert.is_nil(sent.store)
            assert.is_nil(sent.service_tier)
            r = chat(gw, nil, "claude", { user = "u1" })
            assert.equals(200, r.status)
            r = chat(gw, nil, "fast", { logprobs = true }) -- the answer could not carry them
            assert.equals(400, r.status)
            assert.matches("log probabilities are not supported", r.json.error.message)
            assert.equals(200, chat(gw, nil, "fast", { logprobs = false }).status)
            -- values that ask for nothing are no request, wherever the model is served
            assert.equals(200, chat(gw, nil, "pol", { presence_penalty = 0, logit_bias = {},
                response_format = { type = "text" }, logprobs = false }).status)
            -- false is a request where it asks for something
            assert.equals(400, chat(gw, nil, "pol", { parallel_tool_calls = false }).status)
            assert.equals(200, chat(gw, nil, "fast", { parallel_tool_calls = false }).status)
            assert.is_false(json.decode(mock:requests()[#mock:requests()].body).parallel_tool_calls)
            assert.equals(400, chat(gw, nil, "pol", { seed = 0 }).status)
            r = post(gw, "/v1/messages", { model = "fast", max_tokens = 20, top_k = 5,
                messages = { { role = "user", content = "x" } } })
            assert.equals(400, r.status)
            assert.matches("top_k", r.json.error.message)
        end)

        it("ends a stream with an error event when a policy starts it over after text was sent", function()
            mock:set_faults { { model = "gpt-4o", sequence = { "mid_stream_error" } } }
            gw = start(mock, {}, { models = { pol = { policy = "fallback", targets = { "slow", "claude" },
                stream_failure = "restart" }, slow = "openai/gpt-4o", claude = "anthropic/claude-3-5-haiku-latest" } })
            local chunks = {}
            local r = http.request { method = "POST", url = gw.url .. "/v1/chat/completions",
                body = json.encode { model = "pol", stream = true,
                                     messages = { { role = "user", content = "one two three four five six" } } },
                on_data = function(c) chunks[#chunks + 1] = c end }
            local body = table.concat(chunks)
            assert.equals(200, r.status)
            assert.matches('"content":"echo"', body)
            assert.matches("started it over on another target", body)
            assert.is_nil(body:find("[DONE]", 1, true))
        end)

        it("answers a request without a model, or not an object, with the dialect's 400", function()
            gw = start(mock)
            local r = post(gw, "/v1/chat/completions", { messages = { { role = "user", content = "x" } } })
            assert.equals(400, r.status)
            assert.equals("invalid_request_error", r.json.error.type)
            r = post(gw, "/v1/messages", { model = json.null, max_tokens = 5, messages = { { role = "user", content = "x" } } })
            assert.equals(400, r.status)
            assert.equals("error", r.json.type)
            r = post(gw, "/v1/chat/completions", "[1, 2]")
            assert.equals(400, r.status)
            r = post(gw, "/v1/embeddings", { model = "fast", input = "x", dimensions = 3 })
            assert.equals(400, r.status)
            assert.matches("dimensions", r.json.error.message)
            r = post(gw, "/v1/messages", { model = "claude", max_tokens = 5, messages = { { role = "user", content = "x" } },
                tools = { { type = "web_search_20250305", name = "web_search" } } })
            assert.equals(400, r.status)
            assert.matches("server tool", r.json.error.message)
        end)

        it("tells the client what failed upstream without the provider's own words", function()
            mock:set_faults { { model = "gpt-4o", probability = { [503] = 1.0 } } }
            gw = start(mock)
            local r = chat(gw, nil, "slow")
            assert.equals(502, r.status)
            assert.equals("transient", r.headers["x-weft-error-kind"])
            assert.equals("the provider openai failed (HTTP 503) after 2 attempts", r.json.error.message)
            assert.is_nil(r.body:find("127.0.0.1", 1, true))
        end)

        it("sends a slow stream's head before its first token, then its error as an event", function()
            mock:set_faults { { model = "gpt-4o", latency = 800 } }
            gw = start(mock, { stream_head_after = 0.1 })
            local chunks = {}
            local r = http.request { method = "POST", url = gw.url .. "/v1/chat/completions",
                body = json.encode { model = "slow", stream = true, messages = { { role = "user", content = "hi there" } } },
                on_data = function(c) chunks[#chunks + 1] = c end }
            local body = table.concat(chunks)
            assert.equals(200, r.status)
            -- the head and the opening came on their own, before any text (the
            -- mock answers only after 0.8 s)
            assert.matches('"role":"assistant"', chunks[1])
            assert.is_nil(chunks[1]:find('"content":" hi"', 1, true))
            assert.matches('"role":"assistant"', body)
            assert.matches('"content":" hi"', body)
            assert.matches("data: %[DONE%]", body)
            -- Anthropic: message_start and a ping first
            chunks = {}
            r = http.request { method = "POST", url = gw.url .. "/v1/messages",
                body = json.encode { model = "slow", stream = true, max_tokens = 50,
                                     messages = { { role = "user", content = "hi there" } } },
                on_data = function(c) chunks[#chunks + 1] = c end }
            body = table.concat(chunks)
            assert.matches("^event: message_start.-event: ping.-event: content_block_start", body)
            assert.equals(1, select(2, body:gsub("event: message_start", "")))
            -- a failure after the head: the dialect's error event
            mock:set_faults { { model = "gpt-4o", latency = 500, probability = { [500] = 1.0 } } }
            chunks = {}
            r = http.request { method = "POST", url = gw.url .. "/v1/chat/completions",
                body = json.encode { model = "slow", stream = true, messages = { { role = "user", content = "x" } } },
                on_data = function(c) chunks[#chunks + 1] = c end }
            body = table.concat(chunks)
            assert.equals(200, r.status)
            assert.matches('data: {"error":', body)
            assert.is_nil(body:find("[DONE]", 1, true))
        end)

        it("answers a call over gateway.timeout with 504, an open breaker with 503 and its Retry-After", function()
            mock:set_faults { { model = "gpt-4o", latency = 3000 } }
            gw = start(mock, { timeout = 0.2 })
            local r = chat(gw, nil, "slow")
            assert.equals(504, r.status)
            assert.equals("timeout", r.headers["x-weft-error-kind"])
            r = messages(gw, nil, "slow")
            assert.equals(504, r.status)
            assert.equals("api_error", r.json.error.type)
            gw:close()
            mock:set_faults { { model = "gpt-4o", probability = { [500] = 1.0 } } }
            gw = start(mock, {}, { providers = {
                openai = { base_url = mock.url, secret = weft.secrets.value("serve-br" .. n, KEYS.openai),
                           retry = { max_attempts = 1 },
                           breaker = { threshold = 0.5, min_calls = 2, cooldown = 30 } } } })
            for _ = 1, 4 do
                r = chat(gw, nil, "slow")
                if r.headers["x-weft-error-kind"] == "circuit_open" then break end
            end
            assert.equals(503, r.status)
            assert.equals("circuit_open", r.headers["x-weft-error-kind"])
            assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
            assert.equals(503, http.request { url = gw.url .. "/readyz" }.status) -- its only provider is down
            r = messages(gw, nil, "slow")
            assert.equals(529, r.status)
            assert.equals("overloaded_error", r.json.error.type)
        end)

        it("answers a body over max_body_size with 413", function()
            gw = start(mock, { max_body_size = 1000 })
            local r = chat(gw, nil, "fast", { messages = { { role = "user", content = string.rep("x", 2000) } } })
            assert.equals(413, r.status)
        end)

        it("serves provider/model names only when allowed", function()
            gw = start(mock)
            assert.equals(404, chat(gw, nil, "openai/gpt-4o-mini").status)
            gw:close()
            gw = start(mock, { allow_provider_models = true })
            assert.equals(200, chat(gw, nil, "openai/gpt-4o-mini").status)
            -- a shipped plugin that is not configured would go to its vendor with the environment's key
            local r = chat(gw, nil, "gemini/gemini-2.0-flash")
            assert.equals(404, r.status)
            assert.equals("model_not_found", r.json.error.code)
        end)

        it("cancels the upstream call when the client goes away", function()
            mock:set_faults { { model = "gpt-4o", latency = 3000 } }
            gw = start(mock)
            local before = weft.metrics.value("weft_gateway_client_gone_total", { key = "-" }) or 0
            local ok, e = pcall(http.request, { method = "POST", url = gw.url .. "/v1/chat/completions", timeout = 0.3,
                body = json.encode { model = "slow", messages = { { role = "user", content = "x" } } } })
            assert.is_false(ok)
            assert.equals("timeout", e.kind)
            local entry
            for _ = 1, 100 do
                local log = mock:requests()
                entry = log[#log]
                if entry and entry.closed_early then break end
                weft.sleep(0.05)
            end
            assert.is_truthy(entry and entry.closed_early)
            for _ = 1, 100 do
                if (weft.metrics.value("weft_gateway_client_gone_total", { key = "-" }) or 0) > before then break end
                weft.sleep(0.02)
            end
            assert.is_true(weft.metrics.value("weft_gateway_client_gone_total", { key = "-" }) > before)
            assert.equals(0, gw.active)
        end)

        it("is ready with a configuration, not while draining", function()
            gw = start(mock)
            assert.equals(200, http.request { url = gw.url .. "/readyz" }.status)
            assert.equals(200, http.request { url = gw.url .. "/healthz" }.status)
            gw.draining = true
            assert.equals(503, http.request { url = gw.url .. "/readyz" }.status)
        end)
    end)

    describe("hooks", function()
        it("before may rewrite, route or refuse; after may change the result", function()
            gw = start(mock)
            gw.hooks = {
                before = function(ctx)
                    local text = ctx.request.messages[1].content
                    assert(ctx.headers.authorization == nil, "the hook saw the client's credentials")
                    if text:find("forbidden") then errors.raise("invalid_request", "blocked by the gateway's policy") end
                    if text:find("boom") then error("a bug in the hook") end
                    if text:find("slow down") then errors.raise("rate_limited", "one request a minute per user") end
                    if text:find("sleepy") then weft.sleep(5) end
                    if ctx.headers["x-route"] then ctx.model = ctx.headers["x-route"] end
                    ctx.request.messages[1].content = text .. " (checked)"
                end,
                after = function(ctx, r) r.text = r.text:upper() end,
            }
            gw.state.hook_timeout = 0.2
            local r = chat(gw, nil, "fast")
            assert.equals(200, r.status)
            assert.equals("ECHO: HELLO THERE (CHECKED)", r.json.choices[1].message.content)
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user", content = "forbidden" } } })
            assert.equals(400, r.status)
            assert.equals("blocked by the gateway's policy", r.json.error.message)
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user", content = "slow down" } } })
            assert.equals(429, r.status)
            assert.equals("one request a minute per user", r.json.error.message)
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user", content = "boom" } } })
            assert.equals(500, r.status)
            assert.equals("internal", r.headers["x-weft-error-kind"])
            assert.is_nil(r.body:find("a bug in the hook", 1, true))
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user", content = "sleepy" } } })
            assert.equals(503, r.status)
            assert.matches("did not finish", r.json.error.message)
            r = post(gw, "/v1/chat/completions", { model = "fast", messages = { { role = "user", content = "hi" } } },
                { ["x-route"] = "claude" })
            assert.equals(200, r.status)
            assert.equals("anthropic", r.headers["x-weft-provider"])
        end)
    end)

    describe("reload", function()
        it("routes new requests to a changed alias; a configuration that does not load leaves the old one", function()
            local path = os.tmpname()
            local function write(target, broken)
                local f = assert(io.open(path, "w"))
                f:write(("return { providers = { openai = { base_url = %q, secret = 'env:WEFT_SERVE_SPEC_OA' },\n"
                    .. "anthropic = { base_url = %q, secret = 'env:WEFT_SERVE_SPEC_AN' } },\n"
                    .. "models = { main = %q }, gateway = { %s } }\n"):format(mock.url, mock.url, target,
                    broken and "colour = 1" or ""))
                f:close()
            end
            pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")
            ffi.C.setenv("WEFT_SERVE_SPEC_OA", KEYS.openai, 1)
            ffi.C.setenv("WEFT_SERVE_SPEC_AN", KEYS.anthropic, 1)
            write("openai/gpt-4o-mini")
            model.reset()
            gw = serve.start { config = path, port = 0, watch = false }
            assert.equals("openai", chat(gw, nil, "main").headers["x-weft-provider"])
            write("anthropic/claude-3-5-haiku-latest")
            assert.is_true(gw:reload())
            assert.equals("anthropic", chat(gw, nil, "main").headers["x-weft-provider"])
            write("openai/gpt-4o-mini", true)
            local ok, why = gw:reload()
            assert.is_false(ok)
            assert.matches("gateway.colour", why)
            assert.equals("anthropic", chat(gw, nil, "main").headers["x-weft-provider"])
            -- refused after the models were read: weft's configuration is left as it was too
            local f = assert(io.open(path, "w"))
            f:write(("return { providers = { openai = { base_url = %q, secret = 'env:WEFT_SERVE_SPEC_OA' } },\n"
                .. "models = { main = 'openai/gpt-4o-mini' }, gateway = { models = { 'main', 'nope' } } }\n"):format(mock.url))
            f:close()
            ok, why = gw:reload()
            assert.is_false(ok)
            assert.matches("'nope'", why)
            assert.equals("anthropic", chat(gw, nil, "main").headers["x-weft-provider"])
            os.remove(path)
        end)
    end)

    describe("with the configuration's redis", function()
        local rs
        setup(function()
            rs = require "redis_server" ()
            rs.start()
        end)
        teardown(function()
            rs.stop()
            rs.remove()
        end)

        it("two gateways share a key's rpm and its budget", function()
            local keys = { a = { sha256 = sha256("key-a-0123456789"), rpm = 2, budget = { day = 5 } },
                           b = { sha256 = sha256("key-b-0123456789"), rpm = 3 } }
            local redis = { url = rs.url, password = "env:WEFT_CANARY_KEY" }
            gw = start(mock, { keys = keys }, { redis = redis })
            local gw2 = serve.start { cfg = { providers = model.config().providers,
                models = { fast = "openai/gpt-4o-mini" }, redis = redis, gateway = { keys = keys } },
                port = 0, watch = false }
            -- b: 3 a minute between both
            assert.equals(200, chat(gw, "key-b-0123456789").status)
            assert.equals(200, chat(gw2, "key-b-0123456789").status)
            assert.equals(200, chat(gw, "key-b-0123456789").status)
            local r = chat(gw2, "key-b-0123456789")
            assert.equals(429, r.status)
            assert.is_true(tonumber(r.headers["retry-after"]) >= 1)
            -- a: the 12 USD spent through gw is seen by gw2
            assert.equals(200, chat(gw, "key-a-0123456789").status)
            gw.state.keys:flush() -- (the spend is written in a task of its own)
            local spent = weft.redis.connect({ url = rs.url, password = "env:WEFT_CANARY_KEY" }):call("KEYS", "*gwkey:a*spend*")
            assert.equals(2, #spent)
            r = chat(gw2, "key-a-0123456789")
            assert.equals(429, r.status)
            assert.equals("quota_exhausted", r.headers["x-weft-error-kind"])
            gw2:close()
        end)
    end)

    describe("weft._signal", function()
        it("gives a SIGHUP to the task waiting for it", function()
            local s = require("weft._signal").new("hup")
            local t = weft.spawn(function() return s:wait() end)
            weft.sleep(0)
            ffi.C.kill(ffi.C.getpid(), 1)
            assert.equals("SIGHUP", t:wait(5))
            s:close()
            assert.is_false(pcall(s.wait, s))
        end)
    end)
end)
