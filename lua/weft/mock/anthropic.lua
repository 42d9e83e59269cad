--- weft.mock.anthropic: the Anthropic dialect of the mock (POST /v1/messages,
--- non-streaming and SSE ending with `message_stop`; Message Batches in
--- weft.mock.anthropic_batch), requiring `x-api-key`
--- (or `Authorization: Bearer`) and `anthropic-version`; error bodies `{"type":"error","error":{"type",
--- "message"}}`; `anthropic-ratelimit-*` headers with RFC 3339 resets and a
--- `request-id`. Tool calls (see weft.mock): one `tool_use` block with
--- stop_reason "tool_use", streamed as `input_json_delta` pieces.
local json = require "weft.json"
local common = require "weft.mock.common"
local batch = require "weft.mock.anthropic_batch"

local type, ipairs, pairs, tostring, floor, ceil, max, format = type, ipairs, pairs, tostring,
    math.floor, math.ceil, math.max, string.format

local M = {}

--- The names `strict_models` knows (the mock has no models endpoint for
--- this dialect).
M.MODELS = { "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "claude-3-5-sonnet-latest",
             "claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20240620", "claude-3-7-sonnet-latest",
             "claude-3-haiku-20240307", "claude-sonnet-4-0", "claude-sonnet-4-5", "claude-haiku-4-5",
             "claude-opus-4-0", "claude-opus-4-1" }

--- The endpoint names fault rules can match (`endpoint = "messages"`); the
--- requests of a batch job are "batch_item".
M.ENDPOINTS = { "messages", "count_tokens", "batches_create", "batches_list", "batch", "batch_delete",
                "batch_results", "batch_cancel", "batch_item" }

function M.route(req)
    if req.path == "/v1/messages" and req.method == "POST" then return "messages" end
    if req.path == "/v1/messages/count_tokens" and req.method == "POST" then return "count_tokens" end
    local ep, id = batch.route(req)
    if ep then return ep, nil, id end
    return nil
end

M.RAW_BODY = batch.RAW_BODY

local MESSAGES = { messages = true, count_tokens = true }

-- The key comes in `x-api-key`; newer official SDKs send it as
-- `Authorization: Bearer` instead, which the service accepts too.
function M.key_of(req)
    local k = req.headers["x-api-key"]
    if type(k) == "string" then return k end
    local a = req.headers["authorization"]
    return type(a) == "string" and a:match("^[Bb]earer%s+(.+)$") or nil
end

local function err_body(etype, message)
    return json.encode { type = "error", error = { type = etype, message = message } }
end

local function response(status, body, extra)
    local h = { ["content-type"] = "application/json", ["request-id"] = common.id("req_") }
    if extra then for k, v in pairs(extra) do h[k] = v end end
    return { status = status, headers = h, body = body }
end

function M.auth(req, expected)
    local key = M.key_of(req)
    if not key or key ~= expected then
        return false, response(401, err_body("authentication_error", "invalid x-api-key"))
    end
    if type(req.headers["anthropic-version"]) ~= "string" then
        return false, response(400, err_body("invalid_request_error", "anthropic-version: header is required"))
    end
    return true
end

function M.error_response(status, kind, message)
    return response(status, err_body("invalid_request_error", message))
end

--- A model the mock does not know (`strict_models`): Anthropic's 404
--- not_found_error "model: NAME".
function M.model_not_found(ctx)
    return response(404, err_body("not_found_error", "model: " .. tostring(ctx.model)))
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

-- The text of the tool_result blocks of a message's content (joined by
-- newlines), nil when it has none.
local function tool_results(content)
    if type(content) ~= "table" then return nil end
    local parts
    for _, p in ipairs(content) do
        if type(p) == "table" and p.type == "tool_result" then
            parts = parts or {}
            parts[#parts + 1] = text_of(p.content)
        end
    end
    return parts and table.concat(parts, "\n")
end

function M.validate(ctx)
    if not MESSAGES[ctx.endpoint] then return nil end
    local b = ctx.body
    if type(b.model) ~= "string" then
        return response(400, err_body("invalid_request_error", "model: Field required"))
    end
    if type(b.messages) ~= "table" or #b.messages == 0 then
        return response(400, err_body("invalid_request_error", "messages: Field required"))
    end
    if ctx.endpoint == "messages" and type(b.max_tokens) ~= "number" then
        return response(400, err_body("invalid_request_error", "max_tokens: Field required"))
    end
end

function M.input_tokens(ctx)
    if not MESSAGES[ctx.endpoint] then return 0 end
    local b = ctx.body
    local n = 0
    if b.system then n = n + 3 + common.count_tokens(text_of(b.system)) end
    for _, m in ipairs(b.messages) do
        n = n + 3 + common.count_tokens(text_of(m.content)) + common.count_tokens(tool_results(m.content) or "")
    end
    return n
end

-- A prompt over the model's context window: Anthropic's 400 "prompt is too
-- long" (nil for other endpoints).
function M.context_response(ctx, tokens, window)
    if ctx.endpoint ~= "messages" then return nil end
    return response(400, err_body("invalid_request_error", format("prompt is too long: %d tokens > %d maximum", tokens, window)))
end

function M.max_tokens(ctx)
    if ctx.endpoint ~= "messages" then return 0 end
    return type(ctx.body.max_tokens) == "number" and ctx.body.max_tokens or 0
end

local function limit_headers(ctx, h)
    local b = ctx.limits
    if not b then return h end
    local t = weft.time()
    local function put(prefix, bk)
        h["anthropic-ratelimit-" .. prefix .. "-limit"] = tostring(floor(bk.limit))
        h["anthropic-ratelimit-" .. prefix .. "-remaining"] = tostring(max(0, floor(bk.level)))
        h["anthropic-ratelimit-" .. prefix .. "-reset"] =
            common.rfc3339(t + ceil(common.reset_in(bk)))
    end
    put("requests", b.requests)
    put("tokens", b.tokens)
    put("input-tokens", b.tokens)
    put("output-tokens", b.tokens)
    return h
end

function M.limit_response(ctx, r)
    if r.quota then
        return response(400, err_body("invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."), limit_headers(ctx, {}))
    end
    local h = limit_headers(ctx, {})
    h["retry-after"] = tostring(max(1, ceil(r.wait)))
    local what = r.daily and "requests per day" or r.what == "tokens" and "input tokens per minute" or "requests per minute"
    return response(429, err_body("rate_limit_error", format("This request would exceed the rate limit for your organization of %s. Please reduce the prompt length or the maximum tokens requested, or try again later.", what)), h)
end

local STATUS_ERRORS = {
    [400] = { "invalid_request_error", "Invalid request (injected by weft mock)." },
    [401] = { "authentication_error", "invalid x-api-key" },
    [403] = { "permission_error", "Your API key does not have permission to use the specified resource." },
    [404] = { "not_found_error", "The requested resource could not be found." },
    [413] = { "request_too_large", "Request exceeds the maximum allowed number of bytes." },
    [429] = { "rate_limit_error", "Number of requests has exceeded your rate limit (injected by weft mock)." },
    [500] = { "api_error", "Internal server error" },
    [529] = { "overloaded_error", "Overloaded" },
}

function M.status_response(ctx, status)
    local e = STATUS_ERRORS[status] or { "api_error", "Error " .. status .. " (injected by weft mock)." }
    local h = limit_headers(ctx, {})
    if status == 429 then h["retry-after"] = tostring(math.ceil(ctx.rule and ctx.rule.retry_after or 1)) end
    return response(status, err_body(e[1], e[2]), h)
end

local function event(name, data)
    return "event: " .. name .. "\ndata: " .. json.encode(data) .. "\n\n"
end

-- The tool the request gets a call of instead of a text answer, or nil:
-- it has tools, tool_choice is not {type = "none"}, its last message is the
-- user's and holds no tool_result, and tool_choice is {type = "any"} or
-- {type = "tool", name = ...}, or the user's text starts with "call "
-- (common.tool_to_call picks the tool).
local function tool_to_call(b, last, prompt)
    local tools, choice = b.tools, type(b.tool_choice) == "table" and b.tool_choice or {}
    if type(tools) ~= "table" or choice.type == "none" or type(last) ~= "table" or last.role ~= "user" then
        return nil
    end
    local names = {}
    for _, t in ipairs(tools) do
        if type(t) == "table" and type(t.name) == "string" then names[#names + 1] = t.name end
    end
    local forced = choice.type == "any" or nil
    if choice.type == "tool" and type(choice.name) == "string" then forced = choice.name end
    return common.tool_to_call(names, forced, prompt)
end

local function messages(ctx)
    local b, res = ctx.body, ctx.res
    local prompt, results = "", nil
    for i = #b.messages, 1, -1 do
        local m = b.messages[i]
        if m.role == "user" then
            -- a tool's result: echo it
            results = tool_results(m.content)
            prompt = results or text_of(m.content)
            break
        end
    end
    local in_tokens = ctx.input_tokens or M.input_tokens(ctx)
    local last = b.messages[#b.messages]
    local tool = not results and tool_to_call(b, last, prompt)
    local text, out_tokens, cut, pieces, stop, content, call_id
    if tool then
        text, out_tokens, pieces = common.tool_arguments(tool, prompt)
        stop, call_id = "tool_use", common.id("toolu_")
        content = { { type = "tool_use", id = call_id, name = tool, input = { text = prompt } } }
    else
        text, out_tokens, cut, pieces = common.answer(prompt, b.max_tokens)
        stop = cut and "max_tokens" or "end_turn"
        content = { { type = "text", text = text } }
    end
    local id = common.id("msg_")
    local headers = limit_headers(ctx, { ["content-type"] = "application/json",
                                         ["request-id"] = common.id("req_") })
    if not b.stream then
        local body = json.encode {
            id = id, type = "message", role = "assistant", model = ctx.model,
            content = content,
            stop_reason = stop, stop_sequence = json.null,
            usage = { input_tokens = in_tokens, output_tokens = out_tokens },
        }
        if ctx.fault == "reset_mid_body" or ctx.fault == "truncate" then
            res:start(200, headers)
            res:write(body:sub(1, floor(#body / 2)))
            res:abort()
            return nil
        end
        return { status = 200, headers = headers, body = body }
    end
    headers["content-type"] = "text/event-stream; charset=utf-8"
    res:start(200, headers)
    local events = {
        event("message_start", { type = "message_start", message = {
            id = id, type = "message", role = "assistant", model = ctx.model, content = json.array(),
            stop_reason = json.null, stop_sequence = json.null,
            usage = { input_tokens = in_tokens, output_tokens = 1 } } }),
        event("content_block_start", { type = "content_block_start", index = 0,
                                       content_block = tool and { type = "tool_use", id = call_id, name = tool,
                                                                  input = json.object() }
                                           or { type = "text", text = "" } }),
        event("ping", { type = "ping" }),
    }
    for _, p in ipairs(pieces) do
        local d = tool and { type = "input_json_delta", partial_json = p } or { type = "text_delta", text = p }
        events[#events + 1] = event("content_block_delta", { type = "content_block_delta", index = 0, delta = d })
    end
    events[#events + 1] = event("content_block_stop", { type = "content_block_stop", index = 0 })
    events[#events + 1] = event("message_delta", { type = "message_delta",
                                                   delta = { stop_reason = stop, stop_sequence = json.null },
                                                   usage = { output_tokens = out_tokens } })
    events[#events + 1] = event("message_stop", { type = "message_stop" })
    local f = ctx.fault
    if f == "truncate" or f == "reset_mid_body" or f == "mid_stream_error" then
        local keep = max(1, floor(#events / 2))
        for i = #events, keep + 1, -1 do events[i] = nil end
        if not common.write_events(res, events, ctx.stream_delay) then return nil end
        if f == "mid_stream_error" then
            res:write(event("error", { type = "error", error = { type = "overloaded_error", message = "Overloaded" } }))
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

function M.answer(ctx)
    if ctx.endpoint == "messages" then return messages(ctx) end
    if ctx.endpoint == "count_tokens" then
        return response(200, json.encode { input_tokens = M.input_tokens(ctx) })
    end
    return batch.answer(ctx, ctx.id)
end

return M
