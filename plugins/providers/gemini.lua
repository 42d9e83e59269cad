--- Provider: Google Gemini (Generative Language API, v1beta).
---
--- A pure codec (plugin API 2). Wire format: POST
--- /v1beta/models/{model}:generateContent {contents (role user|model,
--- parts), systemInstruction, generationConfig {maxOutputTokens,
--- temperature, topP, stopSequences}, tools {functionDeclarations}}; the
--- answer's candidates[1].content.parts, finishReason and usageMetadata
--- {promptTokenCount, candidatesTokenCount}; streams from
--- :streamGenerateContent?alt=sse, one whole response per event, which end
--- by simply ending: a stream is complete when a finishReason was seen;
--- :batchEmbedContents -> embeddings[i].values; errors {"error": {code,
--- message, status, details}}. Contents over the model's context window
--- (400 INVALID_ARGUMENT "The input token count (M) exceeds the maximum
--- number of tokens allowed (N).") are classified invalid_request with
--- reason "context_length".
local codec = weft.codec
local str, tab = codec.str, codec.tab

local KINDS = {
    INVALID_ARGUMENT = "invalid_request", FAILED_PRECONDITION = "invalid_request", NOT_FOUND = "invalid_request",
    OUT_OF_RANGE = "invalid_request", UNAUTHENTICATED = "auth", PERMISSION_DENIED = "auth",
    RESOURCE_EXHAUSTED = "rate_limited", UNAVAILABLE = "transient", INTERNAL = "transient",
    ABORTED = "transient", DEADLINE_EXCEEDED = "timeout", CANCELLED = "transient",
}

local function contents(req)
    local system, msgs = codec.split_system(req)
    local out = {}
    for _, m in ipairs(msgs) do
        if m.role == "tool" then
            out[#out + 1] = { role = "user", parts = { { functionResponse = {
                name = m.name or m.tool_call_id, response = { content = m.content } } } } }
        else
            local parts = {}
            if m.content and m.content ~= "" then parts[1] = { text = m.content } end
            for _, tc in ipairs(m.tool_calls or {}) do
                parts[#parts + 1] = { functionCall = { name = tc.name, args = codec.decode_args(tc.arguments) } }
            end
            out[#out + 1] = { role = m.role == "assistant" and "model" or "user", parts = parts }
        end
    end
    return out, system
end

local function wire_tools(tools)
    local decls = {}
    for i, t in ipairs(tools) do
        local f = t["function"] or t
        decls[i] = { name = f.name, description = f.description, parameters = f.parameters }
    end
    return { { functionDeclarations = decls } }
end

-- text, tool calls and finish reason of candidates[1]
local function candidate(body)
    local c = type(body.candidates) == "table" and body.candidates[1]
    if type(c) ~= "table" then return nil end
    local text, tools = {}, {}
    local parts = tab(tab(c.content).parts)
    for _, p in ipairs(parts) do
        if str(p.text) and not p.thought then text[#text + 1] = p.text end
        if type(p.functionCall) == "table" then
            tools[#tools + 1] = { id = str(p.functionCall.id), name = str(p.functionCall.name),
                                  arguments = codec.encode_args(p.functionCall.args) }
        end
    end
    return table.concat(text), #tools > 0 and tools or nil, codec.finish_reason("gemini", c.finishReason)
end

local function usage_of(body) return codec.usage(body.usageMetadata, "promptTokenCount", "candidatesTokenCount") end

-- Contents over the context window: INVALID_ARGUMENT "The input token count
-- (M) exceeds the maximum number of tokens allowed (N)."
local function context_length(e)
    local m = str(e.message)
    return m ~= nil and m:find("input token count", 1, true) ~= nil
        and m:find("exceeds the maximum number of tokens", 1, true) ~= nil
end

local function kind_of(status, e, body)
    local st = str(e.status)
    if type(e.details) == "table" then
        for _, d in ipairs(e.details) do
            if type(d) == "table" and d.reason == "API_KEY_INVALID" then return "auth" end
        end
    end
    if st == "RESOURCE_EXHAUSTED" and body and body:find("PerDay", 1, true) then return "quota_exhausted" end
    if st and KINDS[st] then return KINDS[st] end
    return codec.status_kind(status) or "transient"
end

return {
    api = 2,
    name = "gemini",
    kind = "provider",
    version = "1.0.0",
    base_url = "https://generativelanguage.googleapis.com",
    secret = "env:GEMINI_API_KEY",
    auth = { header = "x-goog-api-key", format = "{}" },
    capabilities = { complete = true, stream = true, embed = true },
    prices = {
        ["gemini-2.0-flash"] = { input = 0.10, output = 0.40 },
        ["gemini-2.5-flash"] = { input = 0.30, output = 2.50 },
        ["text-embedding-004"] = { input = 0, output = 0 },
    },
    schema = {
        api_version = { type = "string", default = "v1beta", description = "the API's version in paths (v1beta, v1)",
                        validate = function(v)
                            if v:match("^v%d[%w]*$") then return true end
                            return nil, "must be a version such as v1beta or v1, got \"" .. v .. "\""
                        end },
        embedding_dimensions = { type = "number", description = "outputDimensionality of the embeddings" },
        embedding_task = { type = "string", description = "taskType of the embeddings, e.g. RETRIEVAL_DOCUMENT" },
    },

    encode = function(op, req, cfg)
        local base = "/" .. cfg.api_version .. "/models/" .. req.model
        if op == "embed" then
            local reqs = {}
            for i, t in ipairs(req.input) do
                reqs[i] = { model = "models/" .. req.model, content = { parts = { { text = t } } },
                            outputDimensionality = cfg.embedding_dimensions, taskType = cfg.embedding_task }
            end
            return { path = base .. ":batchEmbedContents", body = { requests = reqs } }
        end
        local msgs, system = contents(req)
        local stop = req.stop
        if type(stop) == "string" then stop = { stop } end
        local gen = { maxOutputTokens = req.max_tokens, temperature = req.temperature, topP = req.top_p,
                      stopSequences = stop }
        local body = { contents = msgs, generationConfig = next(gen) and gen or nil }
        if system then body.systemInstruction = { parts = { { text = system } } } end
        if req.tools then body.tools = wire_tools(req.tools) end
        if req.tool_choice then body.toolConfig = codec.tool_choice(req.tool_choice, "gemini") end
        for k, v in pairs(req.extra or {}) do body[k] = v end
        if op == "stream" then
            return { path = base .. ":streamGenerateContent", query = "alt=sse", body = body }
        end
        return { path = base .. ":generateContent", body = body }
    end,

    decode = function(op, body, req, cfg)
        if op == "embed" then
            if type(body.embeddings) ~= "table" then return nil, "no embeddings array in the answer" end
            local vectors = {}
            for i, e in ipairs(body.embeddings) do
                if type(e) ~= "table" or type(e.values) ~= "table" then
                    return nil, "embeddings[" .. i .. "].values is not an array"
                end
                vectors[i] = e.values
            end
            -- batchEmbedContents reports no usage: the host keeps its estimate
            return { vectors = vectors }
        end
        local text, tools, finish = candidate(body)
        if not text then
            if str(tab(body.promptFeedback).blockReason) then
                return { text = "", finish_reason = "content_filter", usage = usage_of(body) }
            end
            return nil, "no candidates[1] in the answer"
        end
        return { text = text, tool_calls = tools, finish_reason = finish or "stop", usage = usage_of(body),
                 model = str(body.modelVersion), id = str(body.responseId) }
    end,

    classify = function(status, headers, body, cfg)
        local e = codec.error_of(body)
        local kind = kind_of(status, e, body)
        return { kind = kind, reason = kind == "invalid_request" and context_length(e) and "context_length" or nil,
                 message = str(e.message) or ("HTTP " .. status), code = str(e.status) }
    end,

    -- Gemini sends no rate-limit headers; a 429 says how long to wait in
    -- its body (RetryInfo.retryDelay, e.g. "17s").
    rate_limits = function(status, headers, body, cfg)
        if status ~= 429 then return nil end
        return { retry_after = codec.retry_info(body) or weft.time.retry_after(headers["retry-after"]) }
    end,

    -- Each event is a whole GenerateContentResponse; the usage in each is
    -- cumulative. The stream has no terminator: a finishReason marks it done.
    event = function(ev, st, req, cfg)
        local v = codec.json_table(ev.data)
        if not v then return nil end
        if type(v.error) == "table" then
            return { error = { kind = kind_of(nil, v.error, ev.data), message = str(v.error.message) or "error in stream" } }
        end
        local text, tools, finish = candidate(v)
        local out = { text = text ~= "" and text or nil, tool_calls = tools, usage = usage_of(v),
                      model = str(v.modelVersion) }
        if finish then
            out.finish_reason = finish
            out.done = true
        end
        return out
    end,
}
