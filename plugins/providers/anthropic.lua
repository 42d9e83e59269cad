--- Provider: Anthropic (Messages API).
---
--- A pure codec (plugin API 2). Wire format: POST /v1/messages with
--- `anthropic-version`, {model, max_tokens (required), system, messages
--- (content blocks), temperature, top_p, stop_sequences, tools}; the answer's
--- content blocks (text, tool_use), stop_reason and usage {input_tokens,
--- output_tokens}; streams of named events (message_start,
--- content_block_start/delta/stop, message_delta, message_stop, ping,
--- error) where `message_stop` is the terminator; errors {"type":"error",
--- "error":{type, message}}. Anthropic has no embeddings endpoint: embed is
--- refused with kind invalid_request before anything is sent. A prompt over
--- the model's context window (400 "prompt is too long: M tokens > N
--- maximum") is classified invalid_request with reason "context_length".
---
--- Message Batches (weft.batch): POST /v1/messages/batches {requests =
--- [{custom_id, params}]}, polled with GET /v1/messages/batches/{id}
--- (processing_status in_progress, canceling, ended); results as JSONL from
--- GET /v1/messages/batches/{id}/results ({custom_id, result = {type =
--- succeeded | errored | canceled | expired, ...}}); POST .../cancel. Half
--- price.
local codec = weft.codec
local str, tab = codec.str, codec.tab

-- Anthropic's error types -> weft's kinds
local KINDS = {
    invalid_request_error = "invalid_request", authentication_error = "auth", permission_error = "auth",
    not_found_error = "invalid_request", request_too_large = "invalid_request",
    rate_limit_error = "rate_limited", api_error = "transient", overloaded_error = "transient",
    timeout_error = "timeout", billing_error = "quota_exhausted",
}

local function messages(req)
    local system, msgs = codec.split_system(req)
    local out = {}
    for _, m in ipairs(msgs) do
        if m.role == "tool" then
            -- a tool result is a user turn holding a tool_result block
            out[#out + 1] = { role = "user", content = { { type = "tool_result", tool_use_id = m.tool_call_id,
                                                          content = m.content } } }
        elseif m.tool_calls then
            local blocks = {}
            if m.content and m.content ~= "" then blocks[1] = { type = "text", text = m.content } end
            for _, tc in ipairs(m.tool_calls) do
                blocks[#blocks + 1] = { type = "tool_use", id = tc.id, name = tc.name, input = codec.decode_args(tc.arguments) }
            end
            out[#out + 1] = { role = "assistant", content = blocks }
        else
            out[#out + 1] = { role = m.role, content = m.content }
        end
    end
    return out, system
end

local function wire_tools(tools)
    local out = {}
    for i, t in ipairs(tools) do
        local f = t["function"] or t -- OpenAI-style {type=function, function={...}} accepted too
        out[i] = { name = f.name, description = f.description, input_schema = f.parameters or f.input_schema }
    end
    return out
end

-- A prompt over the context window: "prompt is too long: M tokens > N
-- maximum", or, when max_tokens does not fit beside it, "input length and
-- `max_tokens` exceed context limit: M + K > N, ...".
local function context_length(e)
    local m = str(e.message)
    return m ~= nil and (m:find("^prompt is too long") ~= nil or m:find("exceed context limit", 1, true) ~= nil)
end

-- The status decides for HTTP errors; the error type for errors inside a
-- stream (status nil) and for what the status cannot tell apart.
local function kind_of(status, e)
    local t = str(e.type)
    if t == "billing_error" or (str(e.message) and e.message:find("credit balance", 1, true)) then
        return "quota_exhausted"
    end
    if not status then return t and KINDS[t] or "transient" end
    return codec.status_kind(status)
end

return {
    api = 2,
    name = "anthropic",
    kind = "provider",
    version = "1.0.0",
    base_url = "https://api.anthropic.com",
    secret = "env:ANTHROPIC_API_KEY",
    auth = { header = "x-api-key", format = "{}" },
    capabilities = { complete = true, stream = true, embed = false },
    prices = {
        ["claude-3-5-haiku-latest"] = { input = 0.80, output = 4.00 },
        ["claude-sonnet-4-5"] = { input = 3.00, output = 15.00 },
        ["claude-haiku-4-5"] = { input = 1.00, output = 5.00 },
    },
    schema = {
        version = { type = "string", default = "2023-06-01", description = "the anthropic-version header" },
        default_max_tokens = { type = "number", default = 1024,
                               description = "max_tokens of a request without one (the API requires it)",
                               validate = function(v)
                                   if v >= 1 and v % 1 == 0 then return true end
                                   return nil, "must be a whole number of at least 1, got " .. v
                               end },
        beta = { type = "string", description = "the anthropic-beta header (comma-separated features)" },
    },

    encode = function(op, req, cfg)
        local headers = { ["anthropic-version"] = cfg.version }
        if cfg.beta then headers["anthropic-beta"] = cfg.beta end
        local msgs, system = messages(req)
        local stop = req.stop
        if type(stop) == "string" then stop = { stop } end
        local body = {
            model = req.model, max_tokens = req.max_tokens or cfg.default_max_tokens, system = system,
            messages = msgs, temperature = req.temperature, top_p = req.top_p, stop_sequences = stop,
            tool_choice = req.tool_choice and codec.tool_choice(req.tool_choice, "anthropic"),
        }
        if req.tools then body.tools = wire_tools(req.tools) end
        if op == "stream" then body.stream = true end
        for k, v in pairs(req.extra or {}) do body[k] = v end
        return { path = "/v1/messages", headers = headers, body = body }
    end,

    decode = function(op, body, req, cfg)
        if type(body.content) ~= "table" then return nil, "no content array in the answer" end
        local text, tools = {}, {}
        for _, b in ipairs(body.content) do
            if b.type == "text" then
                text[#text + 1] = str(b.text) or ""
            elseif b.type == "tool_use" then
                tools[#tools + 1] = { id = str(b.id), name = str(b.name), arguments = codec.encode_args(b.input) }
            end
        end
        return {
            text = table.concat(text),
            finish_reason = codec.finish_reason("anthropic", body.stop_reason) or "stop",
            tool_calls = #tools > 0 and tools or nil,
            usage = codec.usage(tab(body.usage), "input_tokens", "output_tokens"),
            model = str(body.model), id = str(body.id),
        }
    end,

    batch = {
        discount = 0.5,
        ops = { complete = true },
        line = function(custom_id, op, enc, cfg) return { custom_id = custom_id, params = enc.body } end,
        submit = function(job, cfg)
            return { path = "/v1/messages/batches", headers = { ["anthropic-version"] = cfg.version },
                     input = { as = "array", key = "requests" } }
        end,
        submitted = function(job, answer, cfg)
            if type(answer.id) ~= "string" then return nil, "the answer has no id" end
            job.id = answer.id
            return { job = job }
        end,
        poll = function(job, cfg)
            return { method = "GET", path = "/v1/messages/batches/" .. job.id, headers = { ["anthropic-version"] = cfg.version } }
        end,
        status = function(job, b, cfg)
            local rc = tab(b.request_counts)
            local function n(k) return tonumber(rc[k]) or 0 end
            local s = str(b.processing_status)
            local state = s == "ended" and "ended" or s == "canceling" and "cancelling" or "running"
            return { job = job, state = state, status = s,
                     counts = { total = n("processing") + n("succeeded") + n("errored") + n("canceled") + n("expired"),
                                succeeded = n("succeeded"), failed = n("errored") + n("canceled") + n("expired") } }
        end,
        results = function(job, cfg)
            return { { method = "GET", path = "/v1/messages/batches/" .. job.id .. "/results",
                       headers = { ["anthropic-version"] = cfg.version } } }
        end,
        result = function(line, job, cfg)
            local r = tab(line.result)
            local t = str(r.type)
            if t == "succeeded" then return { custom_id = line.custom_id, body = r.message } end
            if t == "errored" then
                local e = type(r.error) == "table" and type(r.error.error) == "table" and r.error.error or {}
                local kind = kind_of(nil, e)
                return { custom_id = line.custom_id,
                         error = { kind = kind, message = str(e.message) or "errored",
                                   reason = kind == "invalid_request" and context_length(e) and "context_length" or str(e.type) } }
            end
            if t == "canceled" then
                return { custom_id = line.custom_id, error = { kind = "cancelled", reason = "batch_cancelled",
                                                               message = "the batch was cancelled before this request ran" } }
            end
            if t == "expired" then
                return { custom_id = line.custom_id, error = { kind = "timeout", reason = "batch_expired",
                                                               message = "the batch expired before this request ran" } }
            end
            return { custom_id = line.custom_id, error = { kind = "integration", reason = "unknown_result",
                                                           message = "a result of unknown type " .. tostring(t) } }
        end,
        cancel = function(job, cfg)
            return { path = "/v1/messages/batches/" .. job.id .. "/cancel", headers = { ["anthropic-version"] = cfg.version } }
        end,
    },

    classify = function(status, headers, body, cfg)
        local e = codec.error_of(body)
        local kind = kind_of(status, e)
        return { kind = kind, reason = kind == "invalid_request" and context_length(e) and "context_length" or nil,
                 message = str(e.message) or ("HTTP " .. status), code = str(e.type) }
    end,

    -- No rate_limits: the host reads anthropic-ratelimit-{requests,tokens}-
    -- {remaining,reset} (resets are RFC 3339 times) and, on a 429,
    -- retry-after itself (weft.limiter's observe).

    event = function(ev, st, req, cfg)
        local t = ev.event
        if t == "ping" then return nil end
        if t == "message_stop" then return { done = true } end
        local v = codec.json_table(ev.data)
        if not v then return nil end
        if t == "error" or v.type == "error" then
            local e = tab(v.error)
            return { error = { kind = kind_of(nil, e), message = str(e.message) or "error in stream" } }
        end
        if t == "message_start" and type(v.message) == "table" then
            local u = codec.usage(tab(v.message.usage), "input_tokens", "output_tokens")
            st.input, st.output = u.input, u.output
            return { usage = u, model = str(v.message.model) }
        end
        if t == "content_block_start" and type(v.content_block) == "table" and v.content_block.type == "tool_use" then
            st.tools = st.tools or {}
            st.blocks = st.blocks or {}
            local tc = { id = str(v.content_block.id), name = str(v.content_block.name), arguments = "" }
            st.tools[#st.tools + 1] = tc
            st.blocks[v.index] = tc
            return { tool_calls = st.tools }
        end
        if t == "content_block_delta" and type(v.delta) == "table" then
            if v.delta.type == "text_delta" then return { text = str(v.delta.text) } end
            if v.delta.type == "input_json_delta" and st.blocks and st.blocks[v.index] then
                local tc = st.blocks[v.index]
                tc.arguments = tc.arguments .. (str(v.delta.partial_json) or "")
                return { tool_calls = st.tools }
            end
            return nil
        end
        if t == "message_delta" then
            local out = {}
            if type(v.usage) == "table" then
                st.output = tonumber(v.usage.output_tokens) or st.output
                if tonumber(v.usage.input_tokens) then st.input = tonumber(v.usage.input_tokens) end
                out.usage = { input = st.input or 0, output = st.output or 0 }
            end
            if type(v.delta) == "table" then out.finish_reason = codec.finish_reason("anthropic", v.delta.stop_reason) end
            return out
        end
        return nil
    end,
}
