--- weft.serve.anthropic: the Anthropic dialect of `weft serve`: Messages
--- (whole and streamed, tools) and models, read into weft's request form
--- and written back from weft's results, whatever provider served them;
--- errors as Anthropic's `{"type": "error", "error": {type, message}}`.
---
--- Content this module cannot represent in weft's form (images, documents,
--- thinking blocks) is refused with a 400 that says so.
local json = require "weft.json"
local common = require "weft.mock.common"
local codec = require "weft.codec"

local type, ipairs, tostring, format, concat = type, ipairs, tostring, string.format, table.concat
local null = json.null

local M = { name = "anthropic" }

function M.route(method, path)
    if method == "POST" and (path == "/v1/messages" or path == "/messages") then return "chat" end
    if method == "GET" then
        if path == "/v1/models" then return "models" end
        local id = path:match("^/v1/models/(.+)$")
        if id then return "model", id end
    end
    return nil
end

--- The client's key: `x-api-key`, or `Authorization: Bearer` (as OpenAI's).
local bearer = require("weft.serve.openai").key_of
function M.key_of(headers)
    local k = headers["x-api-key"]
    if type(k) == "string" and k ~= "" then return k end
    return bearer(headers)
end

local KIND = {
    invalid_request = { 400, "invalid_request_error" },
    unauthenticated = { 401, "authentication_error" },
    forbidden = { 403, "permission_error" },
    model_not_found = { 404, "not_found_error" },
    not_found = { 404, "not_found_error" },
    too_large = { 413, "request_too_large" },
    rate_limited = { 429, "rate_limit_error" },
    quota_exhausted = { 429, "rate_limit_error" },
    auth = { 502, "api_error" },
    transient = { 502, "api_error" },
    integration = { 502, "api_error" },
    timeout = { 504, "api_error" },
    circuit_open = { 529, "overloaded_error" },
    unavailable = { 503, "overloaded_error" },
    cancelled = { 503, "api_error" },
    internal = { 500, "api_error" },
}

function M.error(kind, message)
    local k = KIND[kind] or KIND.internal
    return k[1], json.encode { type = "error", error = { type = k[2], message = message } }
end

-- Text of a content value (string or blocks) with tool blocks split out.
local function blocks_of(content, where)
    if type(content) == "string" then return { text = content } end
    if type(content) ~= "table" then return nil, where .. ".content must be a string or a list of blocks" end
    local texts, uses, results = {}, {}, {}
    for i, b in ipairs(content) do
        local w = format("%s.content.%d", where, i - 1)
        if type(b) ~= "table" then return nil, w .. " must be an object" end
        if b.type == "text" and type(b.text) == "string" then
            texts[#texts + 1] = b.text
        elseif b.type == "tool_use" and type(b.name) == "string" then
            local ok, args = pcall(codec.encode_args, b.input)
            if not ok then return nil, w .. ".input cannot be encoded" end
            uses[#uses + 1] = { id = tostring(b.id or ""), name = b.name, arguments = args }
        elseif b.type == "tool_result" and type(b.tool_use_id) == "string" then
            local t = b.content
            if type(t) == "table" then
                local parts = {}
                for _, p in ipairs(t) do
                    if type(p) == "table" and p.type == "text" and type(p.text) == "string" then parts[#parts + 1] = p.text
                    else return nil, w .. ".content: only text is supported in a tool_result by this gateway" end
                end
                t = concat(parts, "\n")
            elseif t == nil then
                t = ""
            elseif type(t) ~= "string" then
                return nil, w .. ".content must be a string or text blocks"
            end
            -- weft's tool message has no error flag: said in its text
            if b.is_error == true then t = "[tool error] " .. t end
            results[#results + 1] = { id = b.tool_use_id, text = t }
        else
            return nil, format("%s: type %s is not supported by this gateway (text, tool_use, tool_result)", w,
                tostring(b.type))
        end
    end
    return { text = #texts > 0 and concat(texts, "\n") or nil, uses = uses, results = results }
end

local function tool_choice_of(tc)
    if tc == nil or tc == null then return nil end
    if type(tc) ~= "table" then return nil, "tool_choice must be an object" end
    if tc.type == "auto" then return "auto" end
    if tc.type == "any" then return "required" end
    if tc.type == "none" then return "none" end
    if tc.type == "tool" and type(tc.name) == "string" then return { name = tc.name } end
    return nil, "tool_choice.type must be auto, any, tool (with name) or none"
end

--- A Messages request as weft's request table; nil and a message when it
--- cannot be represented.
function M.chat_request(b)
    if type(b.max_tokens) ~= "number" or b.max_tokens < 1 or b.max_tokens % 1 ~= 0 then
        return nil, "max_tokens: Field required (an integer >= 1)"
    end
    if type(b.messages) ~= "table" or #b.messages == 0 then return nil, "messages: at least one message is required" end
    local r = { max_tokens = b.max_tokens, messages = {} }
    local sys = b.system
    if type(sys) == "table" then
        local parts = {}
        for i, p in ipairs(sys) do
            if type(p) ~= "table" or p.type ~= "text" or type(p.text) ~= "string" then
                return nil, format("system.%d: only text blocks are supported", i - 1)
            end
            parts[#parts + 1] = p.text
        end
        sys = concat(parts, "\n")
    elseif sys ~= nil and sys ~= null and type(sys) ~= "string" then
        return nil, "system must be a string or a list of text blocks"
    end
    if sys ~= nil and sys ~= null and sys ~= "" then r.system = sys end
    local msgs = r.messages
    for i, m in ipairs(b.messages) do
        local where = format("messages.%d", i - 1)
        if type(m) ~= "table" or (m.role ~= "user" and m.role ~= "assistant") then
            return nil, where .. ".role must be user or assistant"
        end
        local c, why = blocks_of(m.content, where)
        if not c then return nil, why end
        if m.role == "assistant" then
            local out = { role = "assistant", content = c.text }
            if c.uses and #c.uses > 0 then out.tool_calls = c.uses
            elseif c.text == nil then out.content = "" end
            msgs[#msgs + 1] = out
        else
            for _, res in ipairs(c.results or {}) do
                msgs[#msgs + 1] = { role = "tool", tool_call_id = res.id, content = res.text }
            end
            if c.text then msgs[#msgs + 1] = { role = "user", content = c.text } end
        end
    end
    if #msgs == 0 then return nil, "messages: no content" end
    for _, k in ipairs { "temperature", "top_p" } do
        local v = b[k]
        if v ~= nil and v ~= null then
            if type(v) ~= "number" then return nil, k .. " must be a number" end
            r[k] = v
        end
    end
    if b.stop_sequences ~= nil and b.stop_sequences ~= null then
        if type(b.stop_sequences) ~= "table" then return nil, "stop_sequences must be a list of strings" end
        r.stop = b.stop_sequences
    end
    if b.tools ~= nil and b.tools ~= null then
        if type(b.tools) ~= "table" then return nil, "tools must be a list" end
        local tools = {}
        for i, t in ipairs(b.tools) do
            if type(t) ~= "table" or type(t.name) ~= "string" then return nil, format("tools.%d.name is required", i - 1) end
            if t.type ~= nil and t.type ~= "custom" then
                return nil, format("tools.%d: type %s (a server tool) is not supported by this gateway", i - 1,
                    tostring(t.type))
            end
            tools[i] = { name = t.name, description = type(t.description) == "string" and t.description or nil,
                         parameters = type(t.input_schema) == "table" and t.input_schema or nil }
        end
        if #tools > 0 then r.tools = tools end
    end
    local tc, why = tool_choice_of(b.tool_choice)
    if why then return nil, why end
    if r.tools then r.tool_choice = tc end
    return r
end

-- As weft.serve.openai.NATIVE, for the Messages API.
local NATIVE = { top_k = true, thinking = "thinking blocks", container = "containers", mcp_servers = "MCP servers",
                 metadata = false, service_tier = false }
M.NATIVE = NATIVE

--- Whether field `f`'s value `v` asks for nothing (see weft.serve.openai).
function M.is_default(f, v)
    if v == false then return true end
    if type(v) == "table" then
        if next(v) == nil then return true end
        if f == "thinking" then return v.type == "disabled" end
    end
    return false
end


M.PLUGINS = { anthropic = true }

local STOP = { stop = "end_turn", length = "max_tokens", tool_calls = "tool_use", content_filter = "refusal",
               end_turn = "end_turn", max_tokens = "max_tokens", tool_use = "tool_use", stop_sequence = "stop_sequence",
               aborted = "end_turn" }

local function content_of(r)
    local out = {}
    if r.text and r.text ~= "" then out[1] = { type = "text", text = r.text } end
    for _, c in ipairs(r.tool_calls or {}) do
        local input = codec.decode_args(c.arguments)
        out[#out + 1] = { type = "tool_use", id = c.id, name = c.name, input = input }
    end
    if #out == 0 then out[1] = { type = "text", text = "" } end
    return out
end

local function stop_of(r)
    if type(r.tool_calls) == "table" and #r.tool_calls > 0 then return "tool_use" end
    return STOP[r.finish_reason] or "end_turn"
end

function M.chat_response(r, name)
    local u = r.usage or {}
    return json.encode {
        id = "msg_" .. tostring(r.call_id), type = "message", role = "assistant", model = name,
        content = content_of(r), stop_reason = stop_of(r), stop_sequence = null,
        usage = { input_tokens = u.input or 0, output_tokens = u.output or 0 },
    }
end

--- Anthropic lists models as {data = [{type = "model", id, display_name, created_at}], has_more, first_id, last_id}.
function M.models_response(list)
    local data = {}
    for i, n in ipairs(list) do
        data[i] = { type = "model", id = n, display_name = n, created_at = "1970-01-01T00:00:00Z" }
    end
    return json.encode { data = data, has_more = false, first_id = list[1] or null, last_id = list[#list] or null }
end

function M.model_response(n)
    return json.encode { type = "model", id = n, display_name = n, created_at = "1970-01-01T00:00:00Z" }
end

local function event(name, data)
    return "event: " .. name .. "\ndata: " .. json.encode(data) .. "\n\n"
end

--- A streaming writer (see weft.serve.openai.stream).
function M.stream(name, b)
    local id = common.id("msg_")
    local s = {}
    local started, text_open = false, false
    local index = 0
    local function opening()
        if started then return "" end
        started = true
        return event("message_start", { type = "message_start", message = {
            id = id, type = "message", role = "assistant", model = name, content = json.array(),
            stop_reason = null, stop_sequence = null, usage = { input_tokens = 0, output_tokens = 0 } } })
    end
    function s.text(piece)
        local out = opening()
        if not text_open then
            text_open = true
            out = out .. event("content_block_start", { type = "content_block_start", index = index,
                content_block = { type = "text", text = "" } })
        end
        return out .. event("content_block_delta", { type = "content_block_delta", index = index,
            delta = { type = "text_delta", text = piece } })
    end
    function s.open() return opening() .. s.ping() end
    function s.ping() return "event: ping\ndata: {\"type\": \"ping\"}\n\n" end
    function s.finish(r)
        local out = { opening() }
        if text_open then
            out[#out + 1] = event("content_block_stop", { type = "content_block_stop", index = index })
            index = index + 1
        end
        for _, c in ipairs(r.tool_calls or {}) do
            out[#out + 1] = event("content_block_start", { type = "content_block_start", index = index,
                content_block = { type = "tool_use", id = c.id, name = c.name, input = json.object() } })
            out[#out + 1] = event("content_block_delta", { type = "content_block_delta", index = index,
                delta = { type = "input_json_delta", partial_json = c.arguments or "{}" } })
            out[#out + 1] = event("content_block_stop", { type = "content_block_stop", index = index })
            index = index + 1
        end
        local u = r.usage or {}
        out[#out + 1] = event("message_delta", { type = "message_delta",
            delta = { stop_reason = stop_of(r), stop_sequence = null },
            usage = { input_tokens = u.input or 0, output_tokens = u.output or 0 } })
        out[#out + 1] = event("message_stop", { type = "message_stop" })
        return concat(out)
    end
    function s.fail(kind, message)
        local k = KIND[kind] or KIND.internal
        return event("error", { type = "error", error = { type = k[2], message = message } })
    end
    return s
end

return M
