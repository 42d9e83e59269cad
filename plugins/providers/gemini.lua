--- Provider: Google Gemini (Generative Language API, v1beta).
---
--- A pure codec (plugin API 1). Wire format: POST
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
local json = weft.json

local FINISH = { STOP = "stop", MAX_TOKENS = "length", SAFETY = "content_filter", RECITATION = "content_filter",
                 PROHIBITED_CONTENT = "content_filter", BLOCKLIST = "content_filter", SPII = "content_filter",
                 MALFORMED_FUNCTION_CALL = "error" }

local KINDS = {
    INVALID_ARGUMENT = "invalid_request", FAILED_PRECONDITION = "invalid_request", NOT_FOUND = "invalid_request",
    OUT_OF_RANGE = "invalid_request", UNAUTHENTICATED = "auth", PERMISSION_DENIED = "auth",
    RESOURCE_EXHAUSTED = "rate_limited", UNAVAILABLE = "transient", INTERNAL = "transient",
    ABORTED = "transient", DEADLINE_EXCEEDED = "timeout", CANCELLED = "transient",
}

local function str(v) if type(v) == "string" then return v end end

local function decode_args(s)
    if s == nil or s == "" then return json.object({}) end
    local ok, v = pcall(json.decode, s)
    if ok and type(v) == "table" then return v end
    return json.object({})
end

local function contents(req)
    local system = req.system
    local out = {}
    for _, m in ipairs(req.messages) do
        if m.role == "system" then
            system = system and (system .. "\n\n" .. m.content) or m.content
        elseif m.role == "tool" then
            out[#out + 1] = { role = "user", parts = { { functionResponse = {
                name = m.name or m.tool_call_id, response = { content = m.content } } } } }
        else
            local parts = {}
            if m.content and m.content ~= "" then parts[1] = { text = m.content } end
            for _, tc in ipairs(m.tool_calls or {}) do
                parts[#parts + 1] = { functionCall = { name = tc.name, args = decode_args(tc.arguments) } }
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
    local parts = type(c.content) == "table" and type(c.content.parts) == "table" and c.content.parts or {}
    for _, p in ipairs(parts) do
        if str(p.text) and not p.thought then text[#text + 1] = p.text end
        if type(p.functionCall) == "table" then
            tools[#tools + 1] = { id = str(p.functionCall.id), name = str(p.functionCall.name),
                                  arguments = json.encode(p.functionCall.args or json.object({})) }
        end
    end
    local fr = str(c.finishReason)
    return table.concat(text), #tools > 0 and tools or nil, fr and (FINISH[fr] or fr:lower()) or nil
end

local function usage_of(body)
    local u = type(body.usageMetadata) == "table" and body.usageMetadata
    if not u then return nil end
    return { input = tonumber(u.promptTokenCount) or 0, output = tonumber(u.candidatesTokenCount) or 0 }
end

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
    if status == 429 then return "rate_limited" end
    if status == 401 or status == 403 then return "auth" end
    if status and status >= 500 then return "transient" end
    return status and "invalid_request" or "transient"
end

return {
    api = 1,
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
        api_version = { type = "string", default = "v1beta" },
        embedding_dimensions = { type = "number" },
        embedding_task = { type = "string" }, -- taskType, e.g. RETRIEVAL_DOCUMENT
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
        if req.tool_choice then body.toolConfig = req.tool_choice end
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
            local fb = type(body.promptFeedback) == "table" and str(body.promptFeedback.blockReason)
            if fb then return { text = "", finish_reason = "content_filter", usage = usage_of(body) } end
            return nil, "no candidates[1] in the answer"
        end
        return { text = text, tool_calls = tools, finish_reason = finish or "stop", usage = usage_of(body),
                 model = str(body.modelVersion), id = str(body.responseId) }
    end,

    classify = function(status, headers, body, cfg)
        local ok, v = pcall(json.decode, body)
        local e = ok and type(v) == "table" and type(v.error) == "table" and v.error or {}
        local kind = kind_of(status, e, body)
        return { kind = kind, reason = kind == "invalid_request" and context_length(e) and "context_length" or nil,
                 message = str(e.message) or ("HTTP " .. status), code = str(e.status) }
    end,

    -- Gemini sends no rate-limit headers; a 429 says how long to wait in
    -- its body (RetryInfo.retryDelay, e.g. "17s").
    rate_limits = function(status, headers, body, cfg)
        if status ~= 429 then return nil end
        local ok, v = pcall(json.decode, body)
        local details = ok and type(v) == "table" and type(v.error) == "table" and v.error.details
        for _, d in ipairs(type(details) == "table" and details or {}) do
            if type(d) == "table" and type(d.retryDelay) == "string" then
                return { retry_after = weft.time.duration(d.retryDelay) }
            end
        end
        return { retry_after = weft.time.retry_after(headers["retry-after"]) }
    end,

    -- Each event is a whole GenerateContentResponse; the usage in each is
    -- cumulative. The stream has no terminator: a finishReason marks it done.
    event = function(ev, st, req, cfg)
        local ok, v = pcall(json.decode, ev.data)
        if not ok or type(v) ~= "table" then return nil end
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
