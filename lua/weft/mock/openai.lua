--- weft.mock.openai: the OpenAI dialect of the mock (chat completions,
--- streaming with `data: [DONE]`, embeddings, models; Files and Batches in
--- weft.mock.openai_batch), its error bodies
--- `{"error":{"message","type","param","code"}}` and its rate-limit headers
--- (`x-ratelimit-*`, resets as Go durations such as "6m0s"). Tool calls
--- (see weft.mock): `message.tool_calls` with finish_reason "tool_calls",
--- streamed as OpenAI's `delta.tool_calls` pieces.
local json = require "weft.json"
local common = require "weft.mock.common"
local batch = require "weft.mock.openai_batch"

local type, ipairs, pairs, tostring, floor, ceil, max, format = type, ipairs, pairs, tostring, math.floor,
    math.ceil, math.max, string.format

local M = {}

--- The models GET /v1/models lists, and the names `strict_models` knows.
local MODELS = { "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-4.1-nano", "o3-mini", "o4-mini",
                 "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002" }
M.MODELS = MODELS

--- The endpoint names fault rules can match (`endpoint = "chat"`); the
--- requests of a batch job are "batch_item".
M.ENDPOINTS = { "chat", "embeddings", "models", "model", "files_upload", "files_list", "file", "file_delete",
                "file_content", "batches_create", "batches_list", "batch", "batch_cancel", "batch_item" }

function M.route(req)
    local p, m = req.path, req.method
    if p == "/v1/chat/completions" and m == "POST" then return "chat" end
    if p == "/v1/embeddings" and m == "POST" then return "embeddings" end
    if p == "/v1/models" and m == "GET" then return "models" end
    local id = p:match("^/v1/models/([^/]+)$")
    if id and m == "GET" then return "model", id end
    local ep, bid = batch.route(req)
    if ep then return ep, nil, bid end
    return nil
end

M.RAW_BODY = batch.RAW_BODY

function M.key_of(req)
    local a = req.headers["authorization"]
    if type(a) ~= "string" then return nil end
    return a:match("^[Bb]earer%s+(.+)$")
end

local function err_body(message, etype, code, param)
    return json.encode { error = { message = message, type = etype, param = param or json.null,
                                   code = code or json.null } }
end

local function response(status, body, extra)
    local h = { ["content-type"] = "application/json", ["x-request-id"] = common.id("req_") }
    if extra then for k, v in pairs(extra) do h[k] = v end end
    return { status = status, headers = h, body = body }
end

function M.auth(req, expected)
    local key = M.key_of(req)
    if not key then
        return false, response(401, err_body("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.", "invalid_request_error"))
    end
    if key ~= expected then
        local shown = #key > 8 and (key:sub(1, 3) .. string.rep("*", 8) .. key:sub(-4)) or "***"
        return false, response(401, err_body("Incorrect API key provided: " .. shown .. ". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key"))
    end
    return true
end

function M.error_response(status, kind, message)
    return response(status, err_body(message, "invalid_request_error"))
end

--- A model the mock does not know (`strict_models`): OpenAI's 404
--- model_not_found.
function M.model_not_found(ctx)
    return response(404, err_body(format("The model `%s` does not exist or you do not have access to it.",
        tostring(ctx.model)), "invalid_request_error", "model_not_found"))
end

local function text_of(content)
    if type(content) == "string" then return content end
    if type(content) == "table" then
        local parts = {}
        for _, p in ipairs(content) do
            if type(p) == "table" and p.type == "text" and type(p.text) == "string" then
                parts[#parts + 1] = p.text
            end
        end
        return table.concat(parts, "\n")
    end
    return ""
end

function M.validate(ctx)
    local b = ctx.body
    if ctx.endpoint == "chat" then
        if type(b.model) ~= "string" then
            return response(400, err_body("you must provide a model parameter", "invalid_request_error"))
        end
        if type(b.messages) ~= "table" or #b.messages == 0 then
            return response(400, err_body("[] is too short - 'messages'", "invalid_request_error", nil, "messages"))
        end
        for i, m in ipairs(b.messages) do
            if type(m) ~= "table" or type(m.role) ~= "string" then
                return response(400, err_body(format("Invalid value for 'messages[%d].role'.", i - 1), "invalid_request_error", nil, format("messages[%d].role", i - 1)))
            end
        end
    elseif ctx.endpoint == "embeddings" then
        if type(b.model) ~= "string" then
            return response(400, err_body("you must provide a model parameter", "invalid_request_error"))
        end
        local inp = b.input
        if type(inp) ~= "string" and type(inp) ~= "table" then
            return response(400, err_body("'input' is a required property", "invalid_request_error", nil, "input"))
        end
    end
end

function M.input_tokens(ctx)
    local b = ctx.body
    if ctx.endpoint == "chat" then
        local n = 3
        for _, m in ipairs(b.messages) do n = n + 3 + common.count_tokens(text_of(m.content)) end
        return n
    elseif ctx.endpoint == "embeddings" then
        local inp = type(b.input) == "string" and { b.input } or b.input
        local n = 0
        for _, s in ipairs(inp) do n = n + common.count_tokens(type(s) == "string" and s or "") end
        return n
    end
    return 0
end

-- A chat prompt over the model's context window: OpenAI's 400
-- context_length_exceeded (nil for other endpoints).
function M.context_response(ctx, tokens, window)
    if ctx.endpoint ~= "chat" then return nil end
    return response(400, err_body(format("This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.", window, tokens),
        "invalid_request_error", "context_length_exceeded", "messages"))
end

function M.max_tokens(ctx)
    local b = ctx.body
    local m = b.max_completion_tokens or b.max_tokens
    if ctx.endpoint == "chat" then return type(m) == "number" and m or 0 end
    return 0
end

-- x-ratelimit-* headers from the key's buckets.
local function limit_headers(ctx, h)
    local b = ctx.limits
    if not b then return h end
    h["x-ratelimit-limit-requests"] = tostring(floor(b.requests.limit))
    h["x-ratelimit-limit-tokens"] = tostring(floor(b.tokens.limit))
    h["x-ratelimit-remaining-requests"] = tostring(max(0, floor(b.requests.level)))
    h["x-ratelimit-remaining-tokens"] = tostring(max(0, floor(b.tokens.level)))
    h["x-ratelimit-reset-requests"] = common.go_duration(common.reset_in(b.requests))
    h["x-ratelimit-reset-tokens"] = common.go_duration(common.reset_in(b.tokens))
    return h
end

function M.limit_response(ctx, r)
    if r.quota then
        return response(429, err_body("You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "insufficient_quota", "insufficient_quota"), limit_headers(ctx, {}))
    end
    local b = ctx.limits
    local what = r.daily and "requests per day (RPD)" or r.what == "tokens" and "tokens per min (TPM)" or "requests per min (RPM)"
    local bk = r.daily and b.daily or b[r.what]
    local msg = format("Rate limit reached for %s in organization org-weftmock on %s: Limit %d, Used %d, Requested %d. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        tostring(ctx.model), what, floor(bk.limit), floor(bk.limit - max(0, bk.level)), 1, common.go_duration(r.wait))
    local h = limit_headers(ctx, {})
    h["retry-after"] = tostring(max(1, ceil(r.wait)))
    h["retry-after-ms"] = tostring(ceil(r.wait * 1000))
    return response(429, err_body(msg, r.what == "tokens" and "tokens" or "requests", "rate_limit_exceeded"), h)
end

local STATUS_ERRORS = {
    [400] = { "Invalid request (injected by weft mock).", "invalid_request_error" },
    [401] = { "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key" },
    [403] = { "You are not allowed to sample from this model", "invalid_request_error" },
    [404] = { "The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found" },
    [409] = { "Another request is being processed; try again.", "invalid_request_error" },
    [422] = { "Unprocessable request (injected by weft mock).", "invalid_request_error" },
    [429] = { "Rate limit reached (injected by weft mock). Please try again in 1s.", "requests", "rate_limit_exceeded" },
    [500] = { "The server had an error while processing your request. Sorry about that!", "server_error" },
    [502] = { "Bad gateway.", "server_error" },
    [503] = { "The engine is currently overloaded, please try again later.", "server_error" },
    [504] = { "Gateway timeout.", "server_error" },
}

function M.status_response(ctx, status)
    local e = STATUS_ERRORS[status] or { "Error " .. status .. " (injected by weft mock).", "server_error" }
    local h = limit_headers(ctx, {})
    if status == 429 then
        local ra = ctx.rule and ctx.rule.retry_after or 1
        h["retry-after"] = tostring(math.ceil(ra))
        h["retry-after-ms"] = tostring(math.floor(ra * 1000))
    end
    return response(status, err_body(e[1], e[2], e[3]), h)
end

local function chunk(id, created, model, choices, usage, with_usage)
    local c = { id = id, object = "chat.completion.chunk", created = created, model = model,
                system_fingerprint = "fp_weft_mock", choices = choices }
    if with_usage then c.usage = usage or json.null end
    return "data: " .. json.encode(c) .. "\n\n"
end

-- The tool the request gets a call of instead of a text answer, or nil:
-- it has tools, tool_choice is not "none", its last message is the user's,
-- and tool_choice is "required" or names a function, or the user's text
-- starts with "call " (common.tool_to_call picks the tool).
local function tool_to_call(b, last)
    local tools, choice = b.tools, b.tool_choice
    if type(tools) ~= "table" or choice == "none" or last.role ~= "user" then return nil end
    local names = {}
    for _, t in ipairs(tools) do
        local f = type(t) == "table" and (type(t["function"]) == "table" and t["function"] or t) or {}
        if type(f.name) == "string" then names[#names + 1] = f.name end
    end
    local forced = choice == "required" or nil
    local named = type(choice) == "table" and type(choice["function"]) == "table" and choice["function"].name
    if type(named) == "string" then forced = named end
    return common.tool_to_call(names, forced, text_of(last.content))
end

local function chat(ctx)
    local b, res = ctx.body, ctx.res
    local last = b.messages[#b.messages]
    local prompt = ""
    if last.role == "tool" then -- a tool's result: echo it
        prompt = text_of(last.content)
    else
        for i = #b.messages, 1, -1 do
            if b.messages[i].role == "user" then prompt = text_of(b.messages[i].content) break end
        end
    end
    local in_tokens = ctx.input_tokens or M.input_tokens(ctx)
    local tool = tool_to_call(b, last)
    local text, out_tokens, cut, pieces, finish, message, call_id
    if tool then
        text, out_tokens, pieces = common.tool_arguments(tool, prompt)
        finish, call_id = "tool_calls", common.id("call_")
        message = { role = "assistant", content = json.null, refusal = json.null,
                    tool_calls = { { id = call_id, type = "function",
                                     ["function"] = { name = tool, arguments = text } } } }
    else
        local mt = M.max_tokens(ctx)
        text, out_tokens, cut, pieces = common.answer(prompt, mt > 0 and mt or nil)
        finish = cut and "length" or "stop"
        message = { role = "assistant", content = text, refusal = json.null }
    end
    local usage = { prompt_tokens = in_tokens, completion_tokens = out_tokens,
                    total_tokens = in_tokens + out_tokens }
    local id, created = common.id("chatcmpl-"), floor(weft.time())
    local headers = limit_headers(ctx, { ["content-type"] = "application/json",
                                         ["x-request-id"] = common.id("req_"),
                                         ["openai-processing-ms"] = "1" })
    if not b.stream then
        local body = json.encode {
            id = id, object = "chat.completion", created = created, model = ctx.model,
            system_fingerprint = "fp_weft_mock",
            choices = { { index = 0, message = message, logprobs = json.null, finish_reason = finish } },
            usage = usage,
        }
        if ctx.fault == "reset_mid_body" or ctx.fault == "truncate" then
            headers["content-type"] = "application/json"
            res:start(200, headers)
            res:write(body:sub(1, floor(#body / 2)))
            res:abort()
            return nil
        end
        return { status = 200, headers = headers, body = body }
    end
    local include_usage = type(b.stream_options) == "table" and b.stream_options.include_usage == true
    headers["content-type"] = "text/event-stream; charset=utf-8"
    res:start(200, headers)
    local events = {}
    local function delta(d, fin, u)
        events[#events + 1] = chunk(id, created, ctx.model, { { index = 0, delta = d, logprobs = json.null,
                                    finish_reason = fin or json.null } }, u, include_usage)
    end
    if tool then
        -- as OpenAI streams a call: id, type and name first with empty
        -- arguments, then the arguments piece by piece at the same index
        delta { role = "assistant", content = json.null, refusal = json.null,
                tool_calls = { { index = 0, id = call_id, type = "function",
                                 ["function"] = { name = tool, arguments = "" } } } }
        for _, p in ipairs(pieces) do
            delta { tool_calls = { { index = 0, ["function"] = { arguments = p } } } }
        end
    else
        delta { role = "assistant", content = "", refusal = json.null }
        for _, p in ipairs(pieces) do delta { content = p } end
    end
    delta(json.object(), finish)
    if include_usage then
        events[#events + 1] = chunk(id, created, ctx.model, json.array(), usage, true)
    end
    events[#events + 1] = "data: [DONE]\n\n"
    local f = ctx.fault
    if f == "truncate" or f == "reset_mid_body" or f == "mid_stream_error" then
        local keep = max(1, floor(#events / 2))
        for i = #events, keep + 1, -1 do events[i] = nil end
        if not common.write_events(res, events, ctx.stream_delay) then return nil end
        if f == "mid_stream_error" then
            res:write("data: " .. err_body("The server had an error while processing your request. Sorry about that!", "server_error") .. "\n\n")
            res:finish()
        elseif f == "truncate" then
            res:finish()
        else
            res:abort()
        end
        return nil
    end
    if common.write_events(res, events, ctx.stream_delay) then res:finish() end
    return nil
end

local function embeddings(ctx)
    local b = ctx.body
    local inp = type(b.input) == "string" and { b.input } or b.input
    local words = ctx.model == "mock-words-embedding"
    local dim = type(b.dimensions) == "number" and b.dimensions or (words and 64 or 8)
    local data = {}
    for i, s in ipairs(inp) do
        local v = common.embedding(type(s) == "string" and s or json.encode(s), dim, words)
        data[i] = { object = "embedding", index = i - 1,
                    embedding = b.encoding_format == "base64" and common.float32_base64(v) or v }
    end
    local n = M.input_tokens(ctx)
    return response(200, json.encode { object = "list", data = data, model = ctx.model,
                                       usage = { prompt_tokens = n, total_tokens = n } },
                    limit_headers(ctx, {}))
end

local function model_entry(id)
    return { id = id, object = "model", created = 1700000000, owned_by = "weft-mock" }
end

function M.answer(ctx)
    local ep = ctx.endpoint
    if ep == "chat" then return chat(ctx) end
    if ep == "embeddings" then return embeddings(ctx) end
    if ep == "models" then
        local data = {}
        for i, id in ipairs(MODELS) do data[i] = model_entry(id) end
        return response(200, json.encode { object = "list", data = data })
    end
    if ep == "model" then return response(200, json.encode(model_entry(ctx.model))) end
    return batch.answer(ctx, ctx.id)
end

return M
