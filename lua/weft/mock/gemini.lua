--- weft.mock.gemini: the Gemini (Generative Language API v1beta) dialect
--- of the mock: generateContent, streamGenerateContent?alt=sse (the stream
--- simply ends), embedContent, batchEmbedContents, countTokens, models.
--- Key in `x-goog-api-key` or `?key=`. Errors `{"error":{"code","message",
--- "status"}}`; a 429 is RESOURCE_EXHAUSTED with a google.rpc.QuotaFailure
--- and a google.rpc.RetryInfo retryDelay. Like the real service it sends no
--- rate-limit headers, answers a wrong key with 400 API_KEY_INVALID and a
--- missing key with 403 PERMISSION_DENIED. Tool calls (see weft.mock): one
--- `functionCall` part with finishReason "STOP", in one stream chunk.
local json = require "weft.json"
local common = require "weft.mock.common"

local type, ipairs, pairs, tostring, floor, ceil, max, format = type, ipairs, pairs, tostring,
    math.floor, math.ceil, math.max, string.format

local M = {}

--- The models GET /v1beta/models lists, and the names `strict_models` knows.
local MODELS = { "gemini-2.0-flash", "gemini-2.0-flash-lite", "gemini-2.5-flash", "gemini-2.5-flash-lite",
                 "gemini-2.5-pro", "gemini-1.5-flash", "gemini-1.5-pro", "text-embedding-004",
                 "gemini-embedding-001" }
M.MODELS = MODELS

--- The endpoint names fault rules can match (`endpoint = "generateContent"`).
M.ENDPOINTS = { "generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents", "countTokens",
                "models" }

function M.route(req)
    local p, m = req.path, req.method
    local model, verb = p:match("^/v1beta/models/([^/:]+):(%a+)$")
    if model and m == "POST" then
        if verb == "generateContent" or verb == "streamGenerateContent" or verb == "embedContent"
            or verb == "batchEmbedContents" or verb == "countTokens" then
            return verb, model
        end
        return nil
    end
    if p == "/v1beta/models" and m == "GET" then return "models" end
    return nil
end

local function query_key(req)
    local q = req.query
    if not q then return nil end
    for k, v in q:gmatch("([^&=]+)=([^&]*)") do
        if k == "key" then return v end
    end
end

function M.key_of(req)
    local k = req.headers["x-goog-api-key"]
    if type(k) == "string" then return k end
    return query_key(req)
end

local STATUS_NAMES = {
    [400] = "INVALID_ARGUMENT", [401] = "UNAUTHENTICATED", [403] = "PERMISSION_DENIED",
    [404] = "NOT_FOUND", [409] = "ABORTED", [429] = "RESOURCE_EXHAUSTED", [500] = "INTERNAL",
    [502] = "UNAVAILABLE", [503] = "UNAVAILABLE", [504] = "DEADLINE_EXCEEDED",
}

local function err_body(code, message, status, details)
    local e = { code = code, message = message, status = status or STATUS_NAMES[code] or "UNKNOWN" }
    if details then e.details = details end
    return json.encode { error = e }
end

local function response(status, body, extra)
    local h = { ["content-type"] = "application/json; charset=UTF-8" }
    if extra then for k, v in pairs(extra) do h[k] = v end end
    return { status = status, headers = h, body = body }
end

function M.auth(req, expected)
    local key = M.key_of(req)
    if not key then
        return false, response(403, err_body(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "PERMISSION_DENIED"))
    end
    if key ~= expected then
        return false, response(400, err_body(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", {
            { ["@type"] = "type.googleapis.com/google.rpc.ErrorInfo", reason = "API_KEY_INVALID",
              domain = "googleapis.com", metadata = { service = "generativelanguage.googleapis.com" } } }))
    end
    return true
end

function M.error_response(status, kind, message)
    return response(status, err_body(status, message))
end

--- A model the mock does not know (`strict_models`): Gemini's 404
--- NOT_FOUND naming the method.
function M.model_not_found(ctx)
    return response(404, err_body(404, format("models/%s is not found for API version v1beta, or is not supported for %s. Call ListModels to see the list of available models and their supported methods.",
        tostring(ctx.model), tostring(ctx.endpoint)), "NOT_FOUND"))
end

local function text_of(content)
    if type(content) ~= "table" or type(content.parts) ~= "table" then return "" end
    local parts = {}
    for _, p in ipairs(content.parts) do
        if type(p) == "table" and type(p.text) == "string" then parts[#parts + 1] = p.text end
    end
    return table.concat(parts, "\n")
end

-- The text of a content's functionResponse parts (joined by newlines): a
-- response's `content` when it is a string (weft's gemini plugin sends
-- {content = ...}), else the response as JSON; nil when it has none.
local function function_responses(content)
    if type(content) ~= "table" or type(content.parts) ~= "table" then return nil end
    local parts
    for _, p in ipairs(content.parts) do
        local fr = type(p) == "table" and p.functionResponse
        if type(fr) == "table" then
            local r = fr.response
            parts = parts or {}
            parts[#parts + 1] = type(r) == "table" and type(r.content) == "string" and r.content
                or json.encode(r == nil and json.object() or r)
        end
    end
    return parts and table.concat(parts, "\n")
end

function M.validate(ctx)
    local b, ep = ctx.body, ctx.endpoint
    if ep == "generateContent" or ep == "streamGenerateContent" or ep == "countTokens" then
        if type(b.contents) ~= "table" or #b.contents == 0 then
            return response(400, err_body(400, "* GenerateContentRequest.contents: contents is not specified\n"))
        end
    elseif ep == "embedContent" then
        if type(b.content) ~= "table" then
            return response(400, err_body(400, "* EmbedContentRequest.content: content is not specified\n"))
        end
    elseif ep == "batchEmbedContents" then
        if type(b.requests) ~= "table" or #b.requests == 0 then
            return response(400, err_body(400, "* BatchEmbedContentsRequest.requests: requests is not specified\n"))
        end
    end
end

function M.input_tokens(ctx)
    local b, ep = ctx.body, ctx.endpoint
    local n = 0
    if ep == "embedContent" then return common.count_tokens(text_of(b.content)) end
    if ep == "batchEmbedContents" then
        for _, r in ipairs(b.requests) do n = n + common.count_tokens(text_of(r.content)) end
        return n
    end
    if type(b.contents) == "table" then
        if b.systemInstruction then n = n + common.count_tokens(text_of(b.systemInstruction)) end
        for _, c in ipairs(b.contents) do
            n = n + common.count_tokens(text_of(c)) + common.count_tokens(function_responses(c) or "")
        end
    end
    return n
end

local function max_out(b)
    local g = b.generationConfig
    return type(g) == "table" and type(g.maxOutputTokens) == "number" and g.maxOutputTokens or nil
end

-- Contents over the model's context window: Gemini's 400 INVALID_ARGUMENT
-- (nil for endpoints other than generateContent and its stream).
function M.context_response(ctx, tokens, window)
    if ctx.endpoint ~= "generateContent" and ctx.endpoint ~= "streamGenerateContent" then return nil end
    return response(400, err_body(400, format("The input token count (%d) exceeds the maximum number of tokens allowed (%d).", tokens, window), "INVALID_ARGUMENT"))
end

function M.max_tokens(ctx)
    return max_out(ctx.body) or 0
end

local function exhausted(wait, quota_id, metric, value)
    local details = {
        { ["@type"] = "type.googleapis.com/google.rpc.QuotaFailure",
          violations = { { quotaMetric = metric, quotaId = quota_id,
                           quotaDimensions = { location = "global", model = "mock" },
                           quotaValue = tostring(value) } } },
        { ["@type"] = "type.googleapis.com/google.rpc.Help",
          links = { { description = "Learn more about Gemini API quotas",
                      url = "https://ai.google.dev/gemini-api/docs/rate-limits" } } },
    }
    if wait then
        details[#details + 1] = { ["@type"] = "type.googleapis.com/google.rpc.RetryInfo",
                                  retryDelay = format("%ds", max(1, ceil(wait))) }
    end
    return details
end

function M.limit_response(ctx, r)
    local b = ctx.limits
    if r.quota or r.daily then
        local lim = r.daily and b.daily.limit or 0
        return response(429, err_body(429, "You exceeded your current quota, please check your plan and billing details.", "RESOURCE_EXHAUSTED",
            exhausted(r.daily and r.wait or nil, "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                      "generativelanguage.googleapis.com/generate_content_free_tier_requests", floor(lim))))
    end
    local tokens = r.what == "tokens"
    local bk = tokens and b.tokens or b.requests
    return response(429, err_body(429, format("You exceeded your current quota, please check your plan and billing details. Please retry in %.1fs.", r.wait), "RESOURCE_EXHAUSTED",
        exhausted(r.wait, tokens and "GenerateContentInputTokensPerModelPerMinute-FreeTier" or "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                  tokens and "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
                      or "generativelanguage.googleapis.com/generate_content_free_tier_requests", floor(bk.limit))))
end

local STATUS_MESSAGES = {
    [400] = "Request contains an invalid argument.",
    [403] = "The caller does not have permission",
    [404] = "models/mock is not found for API version v1beta, or is not supported for generateContent.",
    [429] = "Resource has been exhausted (e.g. check quota).",
    [500] = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    [503] = "The model is overloaded. Please try again later.",
    [504] = "Deadline expired before operation could complete.",
}

function M.status_response(ctx, status)
    local details = nil
    if status == 429 then
        details = exhausted(ctx.rule and ctx.rule.retry_after or 1, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "generativelanguage.googleapis.com/generate_content_free_tier_requests", 15)
    end
    return response(status, err_body(status, STATUS_MESSAGES[status] or ("Error " .. status .. " (injected by weft mock)."), nil, details))
end

local function candidate(text, finish, call)
    local part = call and { functionCall = call } or { text = text }
    local c = { content = { parts = { part }, role = "model" }, index = 0 }
    if finish then c.finishReason = finish end
    return c
end

-- The function the request gets a call of instead of a text answer, or
-- nil: it has functionDeclarations, toolConfig.functionCallingConfig.mode
-- is not "NONE", its last content is the user's and holds no
-- functionResponse, and the mode is "ANY" (choosing among
-- allowedFunctionNames when given), or the user's text starts with "call "
-- (common.tool_to_call picks the function).
local function tool_to_call(b, last, prompt)
    if type(b.tools) ~= "table" or type(last) ~= "table" or (last.role ~= nil and last.role ~= "user") then
        return nil
    end
    local cfg = type(b.toolConfig) == "table" and type(b.toolConfig.functionCallingConfig) == "table"
        and b.toolConfig.functionCallingConfig or {}
    if cfg.mode == "NONE" then return nil end
    local names = {}
    for _, t in ipairs(b.tools) do
        local decls = type(t) == "table" and (t.functionDeclarations or t.function_declarations)
        if type(decls) == "table" then
            for _, d in ipairs(decls) do
                if type(d) == "table" and type(d.name) == "string" then names[#names + 1] = d.name end
            end
        end
    end
    local forced = cfg.mode == "ANY" or nil
    if forced and type(cfg.allowedFunctionNames) == "table" and #cfg.allowedFunctionNames > 0 then
        names = {}
        for _, n in ipairs(cfg.allowedFunctionNames) do
            if type(n) == "string" then names[#names + 1] = n end
        end
    end
    return common.tool_to_call(names, forced, prompt)
end

local function generate(ctx)
    local b, res = ctx.body, ctx.res
    local prompt, results = "", nil
    for i = #b.contents, 1, -1 do
        local c = b.contents[i]
        if type(c) == "table" and (c.role == nil or c.role == "user") then
            -- a function's response: echo it
            results = function_responses(c)
            prompt = results or text_of(c)
            break
        end
    end
    local in_tokens = ctx.input_tokens or M.input_tokens(ctx)
    local tool = not results and tool_to_call(b, b.contents[#b.contents], prompt)
    local text, out_tokens, cut, pieces, call
    if tool then
        -- Gemini sends a call whole, in one part (and one stream chunk)
        text, out_tokens = common.tool_arguments(tool, prompt)
        call = { name = tool, args = { text = prompt } }
        pieces = { text }
    else
        text, out_tokens, cut, pieces = common.answer(prompt, max_out(b))
    end
    local finish = cut and "MAX_TOKENS" or "STOP"
    local usage = { promptTokenCount = in_tokens, candidatesTokenCount = out_tokens,
                    totalTokenCount = in_tokens + out_tokens }
    local rid = common.id("")
    if ctx.endpoint == "generateContent" then
        local body = json.encode { candidates = { candidate(text, finish, call) }, usageMetadata = usage,
                                   modelVersion = ctx.model, responseId = rid }
        if ctx.fault == "reset_mid_body" or ctx.fault == "truncate" then
            res:start(200, { ["content-type"] = "application/json; charset=UTF-8" })
            res:write(body:sub(1, floor(#body / 2)))
            res:abort()
            return nil
        end
        return response(200, body)
    end
    -- streamGenerateContent: SSE with alt=sse, else one JSON array
    local sse = ctx.req.query and ctx.req.query:find("alt=sse", 1, true)
    local chunks = {}
    for i, p in ipairs(pieces) do
        local last = i == #pieces
        chunks[i] = { candidates = { candidate(p, last and finish or nil, call) },
                      usageMetadata = last and usage or { promptTokenCount = in_tokens, totalTokenCount = in_tokens },
                      modelVersion = ctx.model, responseId = rid }
    end
    if not sse then
        return response(200, json.encode(json.array(chunks)))
    end
    res:start(200, { ["content-type"] = "text/event-stream" })
    local events = {}
    for i, c in ipairs(chunks) do events[i] = "data: " .. json.encode(c) .. "\r\n\r\n" end
    local f = ctx.fault
    if f == "truncate" or f == "reset_mid_body" or f == "mid_stream_error" then
        local keep = max(1, floor(#events / 2))
        for i = #events, keep + 1, -1 do events[i] = nil end
        if not common.write_events(res, events, ctx.stream_delay) then return nil end
        if f == "mid_stream_error" then
            res:write("data: " .. err_body(500, STATUS_MESSAGES[500]) .. "\r\n\r\n")
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
    local ep, b = ctx.endpoint, ctx.body
    if ep == "generateContent" or ep == "streamGenerateContent" then return generate(ctx) end
    if ep == "embedContent" then
        local dim = type(b.outputDimensionality) == "number" and b.outputDimensionality or 8
        return response(200, json.encode { embedding = { values = common.embedding(text_of(b.content), dim) } })
    end
    if ep == "batchEmbedContents" then
        local out = {}
        for i, r in ipairs(b.requests) do
            local dim = type(r.outputDimensionality) == "number" and r.outputDimensionality or 8
            out[i] = { values = common.embedding(text_of(r.content), dim) }
        end
        return response(200, json.encode { embeddings = out })
    end
    if ep == "countTokens" then
        return response(200, json.encode { totalTokens = M.input_tokens(ctx) })
    end
    if ep == "models" then
        local data = {}
        for i, id in ipairs(MODELS) do
            data[i] = { name = "models/" .. id, displayName = id, version = "001",
                        supportedGenerationMethods = { "generateContent", "countTokens" } }
        end
        return response(200, json.encode { models = data })
    end
end

return M
