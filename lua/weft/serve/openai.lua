--- weft.serve.openai: the OpenAI dialect of `weft serve`: chat completions
--- (whole and streamed, tools), embeddings and models, read into weft's
--- request form and written back from weft's results, whatever provider
--- served them; errors as OpenAI's `{"error": {message, type, param, code}}`.
---
--- A request this module cannot represent in weft's form (several choices,
--- non-text content parts, token-array embedding input) is refused with a
--- 400 that says so, rather than sent half-understood.
local json = require "weft.json"
local common = require "weft.mock.common"

local type, ipairs, pairs, tostring, floor, format, concat = type, ipairs, pairs, tostring, math.floor,
    string.format, table.concat
local null = json.null

local M = { name = "openai" }

--- The endpoint of a request: "chat", "embeddings", "models", "model" (with
--- its id), or nil.
function M.route(method, path)
    if method == "POST" then
        if path == "/v1/chat/completions" or path == "/chat/completions" then return "chat" end
        if path == "/v1/embeddings" or path == "/embeddings" then return "embeddings" end
    elseif method == "GET" then
        if path == "/v1/models" or path == "/models" then return "models" end
        local id = path:match("^/v1/models/(.+)$")
        if id then return "model", id end
    end
    return nil
end

--- The client's key: `Authorization: Bearer KEY`.
function M.key_of(headers)
    local a = headers["authorization"]
    if type(a) ~= "string" then return nil end
    return a:match("^[Bb]earer%s+(%S+)%s*$")
end

-- OpenAI's error type and code for each weft error kind.
local KIND = {
    invalid_request = { 400, "invalid_request_error" },
    unauthenticated = { 401, "invalid_request_error", "invalid_api_key" },
    forbidden = { 403, "invalid_request_error" },
    model_not_found = { 404, "invalid_request_error", "model_not_found" },
    not_found = { 404, "invalid_request_error" },
    too_large = { 413, "invalid_request_error" },
    rate_limited = { 429, "requests", "rate_limit_exceeded" },
    quota_exhausted = { 429, "insufficient_quota", "insufficient_quota" },
    auth = { 502, "server_error", "upstream_auth" },
    transient = { 502, "server_error" },
    integration = { 502, "server_error" },
    timeout = { 504, "server_error", "timeout" },
    circuit_open = { 503, "server_error", "circuit_open" },
    unavailable = { 503, "server_error" },
    cancelled = { 503, "server_error", "cancelled" },
    internal = { 500, "server_error" },
}

--- The status and body of an error of `kind` (weft's kinds and the
--- gateway's own: unauthenticated, forbidden, model_not_found, not_found,
--- too_large, unavailable, internal).
function M.error(kind, message, param)
    local k = KIND[kind] or KIND.internal
    return k[1], json.encode { error = { message = message, type = k[2], param = param or null,
                                         code = k[3] or null } }
end

-- The text of a message's content: a string, or a list of text parts.
local function text_of(content, where)
    if type(content) == "string" then return content end
    if content == nil or content == null then return nil end
    if type(content) ~= "table" then return nil, where .. ".content must be a string or a list of parts" end
    local parts = {}
    for i, p in ipairs(content) do
        if type(p) ~= "table" or p.type ~= "text" or type(p.text) ~= "string" then
            return nil, format("%s.content[%d]: only text parts are supported by this gateway", where, i - 1)
        end
        parts[#parts + 1] = p.text
    end
    return concat(parts, "\n")
end

local ROLES = { system = true, developer = "system", user = true, assistant = true, tool = true }

local function tools_of(list)
    if list == nil or list == null then return nil end
    if type(list) ~= "table" then return nil, "tools must be a list" end
    local out = {}
    for i, t in ipairs(list) do
        local f = type(t) == "table" and t["function"]
        if type(f) ~= "table" or type(f.name) ~= "string" or (t.type ~= nil and t.type ~= "function") then
            return nil, format("tools[%d] must be {type = \"function\", function = {name, ...}}", i - 1)
        end
        out[i] = { name = f.name, description = type(f.description) == "string" and f.description or nil,
                   parameters = type(f.parameters) == "table" and f.parameters or nil }
    end
    if #out == 0 then return nil end
    return out
end

-- OpenAI's tool_choice in weft's provider-neutral form: "auto", "none",
-- "required" or {name = NAME}.
local function tool_choice_of(tc)
    if tc == nil or tc == null then return nil end
    if tc == "auto" or tc == "none" or tc == "required" then return tc end
    if type(tc) == "table" and type(tc["function"]) == "table" and type(tc["function"].name) == "string" then
        return { name = tc["function"].name }
    end
    return nil, "tool_choice must be \"auto\", \"none\", \"required\" or {type = \"function\", function = {name}}"
end

--- A chat completion request as weft's request table; nil and a message
--- (with the offending parameter) when it cannot be represented.
function M.chat_request(b)
    if type(b.messages) ~= "table" or #b.messages == 0 then return nil, "messages must be a non-empty list", "messages" end
    if b.n ~= nil and b.n ~= null and b.n ~= 1 then return nil, "n > 1 is not supported by this gateway", "n" end
    local msgs = {}
    for i, m in ipairs(b.messages) do
        local where = format("messages[%d]", i - 1)
        if type(m) ~= "table" then return nil, where .. " must be an object", where end
        local role = ROLES[m.role]
        if not role then return nil, where .. ".role must be system, developer, user, assistant or tool", where .. ".role" end
        local text, why = text_of(m.content, where)
        if why then return nil, why, where .. ".content" end
        local out = { role = role == true and m.role or role, content = text }
        if m.role == "assistant" and type(m.tool_calls) == "table" and #m.tool_calls > 0 then
            local calls = {}
            for j, c in ipairs(m.tool_calls) do
                local f = type(c) == "table" and c["function"]
                if type(f) ~= "table" or type(f.name) ~= "string" then
                    return nil, format("%s.tool_calls[%d] needs function.name", where, j - 1), where .. ".tool_calls"
                end
                calls[j] = { id = tostring(c.id or ""), name = f.name,
                             arguments = type(f.arguments) == "string" and f.arguments or "{}" }
            end
            out.tool_calls = calls
        elseif text == nil then
            return nil, where .. ".content is required", where .. ".content"
        end
        if m.role == "tool" then
            if type(m.tool_call_id) ~= "string" then return nil, where .. ".tool_call_id is required", where end
            out.tool_call_id = m.tool_call_id
        end
        if type(m.name) == "string" then out.name = m.name end
        msgs[i] = out
    end
    local r = { messages = msgs }
    local mt = b.max_completion_tokens
    if mt == nil or mt == null then mt = b.max_tokens end
    if mt ~= nil and mt ~= null then
        if type(mt) ~= "number" or mt < 1 or mt ~= floor(mt) then
            return nil, "max_tokens must be an integer >= 1", "max_tokens"
        end
        r.max_tokens = mt
    end
    for _, k in ipairs { "temperature", "top_p" } do
        local v = b[k]
        if v ~= nil and v ~= null then
            if type(v) ~= "number" then return nil, k .. " must be a number", k end
            r[k] = v
        end
    end
    if b.stop ~= nil and b.stop ~= null then
        if type(b.stop) ~= "string" and type(b.stop) ~= "table" then return nil, "stop must be a string or a list", "stop" end
        r.stop = b.stop
    end
    local tools, why = tools_of(b.tools)
    if why then return nil, why, "tools" end
    r.tools = tools
    local tc
    tc, why = tool_choice_of(b.tool_choice)
    if why then return nil, why, "tool_choice" end
    if tools then r.tool_choice = tc end
    return r
end

-- Fields of a chat request that weft's request form has no place for:
-- `true`, they change the answer, so they are sent as provider body fields
-- when an OpenAI-dialect provider serves the model and refused otherwise;
-- `false`, bookkeeping, never passed on (`store` would keep the
-- conversation in the gateway's account, `service_tier` bill it above the
-- configured prices); a string, refused always: what they ask for comes
-- back in parts of the answer weft's result does not carry.
local NATIVE = { response_format = true, seed = true, presence_penalty = true, frequency_penalty = true,
                 logit_bias = true, parallel_tool_calls = true, reasoning_effort = true, prediction = true,
                 logprobs = "log probabilities", top_logprobs = "log probabilities", modalities = "audio output",
                 audio = "audio output", functions = "legacy function calling (use tools)",
                 function_call = "legacy function calling (use tool_choice)",
                 web_search_options = "web search annotations",
                 user = false, service_tier = false, store = false, metadata = false }
M.NATIVE = NATIVE

--- Whether field `f`'s value `v` asks for nothing (so it is no request):
--- false, 0, an empty table, the text response format, text-only output.
local ZERO = { presence_penalty = true, frequency_penalty = true, top_logprobs = true }
function M.is_default(f, v)
    if v == false then return f ~= "parallel_tool_calls" end -- (false there asks for one call at a time)
    if v == 0 then return ZERO[f] == true end -- (seed 0 is a seed)
    if type(v) == "table" then
        if next(v) == nil then return true end
        if f == "response_format" then return v.type == "text" end
        if f == "modalities" then return #v == 1 and v[1] == "text" end
    end
    return false
end

--- The provider plugins that speak this dialect natively.
M.PLUGINS = { openai = true, openai_compatible = true }

--- Embedding input as a list of strings.
function M.embed_input(b)
    if b.dimensions ~= nil and b.dimensions ~= null then
        return nil, "dimensions: not supported by this gateway (a provider's embedding_dimensions sets it)"
    end
    local inp = b.input
    if type(inp) == "string" then return { inp } end
    if type(inp) ~= "table" or #inp == 0 then return nil, "input must be a string or a non-empty list of strings", "input" end
    for i, s in ipairs(inp) do
        if type(s) ~= "string" then
            return nil, format("input[%d]: only strings are supported by this gateway (not token arrays)", i - 1), "input"
        end
    end
    return inp
end

local FINISH = { stop = "stop", length = "length", tool_calls = "tool_calls", content_filter = "content_filter",
                 max_tokens = "length", end_turn = "stop", tool_use = "tool_calls", aborted = "stop" }

local wire_tool_calls = require("weft.codec").openai_wire_tool_calls

local function usage_of(r)
    local u = r.usage or {}
    local i, o = u.input or 0, u.output or 0
    return { prompt_tokens = i, completion_tokens = o, total_tokens = i + o }
end

-- A text answer's body, written as a string: the answers are the bulk of a
-- gateway's work, and the table form costs a dozen tables a request.
local TEXT_ANSWER = '{"id":"chatcmpl-%s","object":"chat.completion","created":%d,"model":%s,'
    .. '"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"logprobs":null,'
    .. '"finish_reason":"%s"}],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}'
local encode = json.encode

--- The body of a whole chat completion for result `r` of model `name`.
function M.chat_response(r, name)
    local u = r.usage
    if type(r.text) == "string" and (r.tool_calls == nil or #r.tool_calls == 0) and type(u) == "table"
        and type(u.input) == "number" and type(u.output) == "number" then
        return format(TEXT_ANSWER, tostring(r.call_id), floor(weft.time()), encode(name), encode(r.text),
            FINISH[r.finish_reason] or "stop", u.input, u.output, u.input + u.output)
    end
    local msg = { role = "assistant", content = r.text or null, refusal = null }
    local has_tools = type(r.tool_calls) == "table" and #r.tool_calls > 0
    if has_tools then
        msg.tool_calls = wire_tool_calls(r.tool_calls)
        if r.text == "" then msg.content = null end
    end
    return json.encode {
        id = "chatcmpl-" .. tostring(r.call_id), object = "chat.completion", created = floor(weft.time()),
        model = name,
        choices = { { index = 0, message = msg, logprobs = null,
                      finish_reason = has_tools and "tool_calls" or FINISH[r.finish_reason] or "stop" } },
        usage = usage_of(r),
    }
end

--- The body of an embeddings answer.
function M.embed_response(r, name, b)
    local b64 = b.encoding_format == "base64"
    local data = {}
    for i, v in ipairs(r.vectors or {}) do
        data[i] = { object = "embedding", index = i - 1, embedding = b64 and common.float32_base64(v) or v }
    end
    local u = r.usage or {}
    return json.encode { object = "list", data = data, model = name,
                         usage = { prompt_tokens = u.input or 0, total_tokens = u.input or 0 } }
end

--- The models list body for names `list` (sorted).
function M.models_response(list)
    local data = {}
    for i, n in ipairs(list) do data[i] = { id = n, object = "model", created = 0, owned_by = "weft" } end
    return json.encode { object = "list", data = data }
end

function M.model_response(n)
    return json.encode { id = n, object = "model", created = 0, owned_by = "weft" }
end

--- A streaming writer: `start()` is the head's content type; `text(piece)`,
--- `finish(result)` and `fail(kind, message)` give the SSE frames to write.
function M.stream(name, b)
    local id = "chatcmpl-" .. common.id("")
    local created = floor(weft.time())
    local include_usage = type(b.stream_options) == "table" and b.stream_options.include_usage == true
    local s = {}
    local function chunk(delta, finish, usage)
        local c = { id = id, object = "chat.completion.chunk", created = created, model = name,
                    choices = delta and { { index = 0, delta = delta, logprobs = null, finish_reason = finish or null } }
                        or json.array() }
        if include_usage then c.usage = usage or null end
        return "data: " .. json.encode(c) .. "\n\n"
    end
    local started = false
    local function opening()
        if started then return "" end
        started = true
        return chunk { role = "assistant", content = "" }
    end
    function s.text(piece)
        return opening() .. chunk { content = piece }
    end
    --- the head's first event before any text (a slow first token), and a
    --- comment line that keeps idle connections open meanwhile
    function s.open() return opening() end
    function s.ping() return ": waiting for the first token\n\n" end
    function s.finish(r)
        local out = { opening() }
        local has_tools = type(r.tool_calls) == "table" and #r.tool_calls > 0
        if has_tools then
            for i, c in ipairs(r.tool_calls) do
                out[#out + 1] = chunk { tool_calls = { { index = i - 1, id = c.id, type = "function",
                    ["function"] = { name = c.name, arguments = c.arguments or "{}" } } } }
            end
        end
        out[#out + 1] = chunk(json.object(), has_tools and "tool_calls" or FINISH[r.finish_reason] or "stop")
        if include_usage then out[#out + 1] = chunk(nil, nil, usage_of(r)) end
        out[#out + 1] = "data: [DONE]\n\n"
        return concat(out)
    end
    function s.fail(kind, message)
        local _, body = M.error(kind, message)
        return "data: " .. body .. "\n\n"
    end
    return s
end

return M
