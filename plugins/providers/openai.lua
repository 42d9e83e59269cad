--- Provider: OpenAI (Chat Completions, Embeddings).
---
--- A pure codec (plugin API 2): it turns weft's normalized requests into
--- OpenAI's wire format and OpenAI's answers, errors and stream chunks back
--- into weft's forms. No I/O, no secret values: the host sends, and puts
--- the key where `auth` says.
---
--- Wire format: POST /v1/chat/completions {model, messages, max_tokens,
--- temperature, top_p, stop, tools, tool_choice, stream, stream_options};
--- the answer's choices[1].message and usage {prompt_tokens,
--- completion_tokens}; a stream of `data: {chunk}` lines ended by
--- `data: [DONE]`; errors {"error": {message, type, code}}; POST
--- /v1/embeddings {model, input} -> data[i].embedding.
---
--- Batches (weft.batch): the requests as a JSONL file ({custom_id, method,
--- url, body}) uploaded to POST /v1/files (purpose "batch"), then POST
--- /v1/batches {input_file_id, endpoint, completion_window = "24h"}; polled
--- with GET /v1/batches/{id}; results in the output file (2xx answers) and
--- the error file (the rest, and {error = {code = "batch_expired" |
--- "batch_cancelled"}} for requests that did not run), read with GET
--- /v1/files/{id}/content; POST /v1/batches/{id}/cancel. Half price.
---
--- A prompt over the model's context window (400, code
--- context_length_exceeded, "This model's maximum context length is N
--- tokens...") is classified invalid_request with reason "context_length",
--- so a policy can shorten the prompt or move to a larger model.
local json = weft.json
local null = json.null
local codec = weft.codec
local str, tab, usage = codec.str, codec.tab, codec.usage

-- A prompt over the context window: OpenAI names it with its code; servers
-- speaking its dialect (vLLM, DeepSeek, ...) often only in the message.
local function context_length(e)
    if str(e.code) == "context_length_exceeded" then return true end
    local m = str(e.message)
    return m ~= nil and m:find("maximum context length", 1, true) ~= nil
end

-- Schema validator: a path the host would send (README, "Security model").
local function absolute(v)
    if v:sub(1, 1) == "/" then return true end
    return nil, "must be a path starting with /, got \"" .. v .. "\""
end

-- The batch's status -> weft's state of a job.
local BATCH_STATES = { validating = "running", in_progress = "running", finalizing = "running",
                       cancelling = "cancelling", completed = "ended", expired = "ended", cancelled = "ended",
                       failed = "failed" }
-- Codes of batch requests that did not run -> kinds.
local BATCH_ERRORS = { batch_expired = "timeout", batch_cancelled = "cancelled", request_timeout = "timeout" }

local function kind_of(status, e)
    local code, etype = str(e.code), str(e.type)
    if code == "insufficient_quota" or etype == "insufficient_quota" then return "quota_exhausted" end
    if code == "invalid_api_key" then return "auth" end
    if code == "context_length_exceeded" then return "invalid_request" end
    if status then return codec.status_kind(status) end
    -- an error inside a 200 stream
    if etype == "invalid_request_error" then return "invalid_request" end
    return "transient"
end

return {
    api = 2,
    name = "openai",
    kind = "provider",
    version = "1.0.0",
    base_url = "https://api.openai.com",
    secret = "env:OPENAI_API_KEY",
    auth = { header = "authorization", format = "Bearer {}" },
    capabilities = { complete = true, stream = true, embed = true },
    -- per 1M tokens, USD (list prices; override with `prices` in the configuration)
    prices = {
        ["gpt-4o-mini"] = { input = 0.15, output = 0.60 },
        ["gpt-4o"] = { input = 2.50, output = 10.00 },
        ["gpt-4.1-mini"] = { input = 0.40, output = 1.60 },
        ["text-embedding-3-small"] = { input = 0.02, output = 0 },
    },
    schema = {
        chat_path = { type = "string", default = "/v1/chat/completions", description = "path of Chat Completions",
                      validate = absolute },
        embeddings_path = { type = "string", default = "/v1/embeddings", description = "path of Embeddings",
                            validate = absolute },
        organization = { type = "string", description = "sent as openai-organization" },
        project = { type = "string", description = "sent as openai-project" },
        stream_usage = { type = "boolean", default = true,
                         description = "ask for the usage chunk at the end of a stream (stream_options.include_usage)" },
        max_tokens_field = { type = "string", default = "max_tokens",
                             description = "the body field max_tokens goes to (or max_completion_tokens)" },
        embedding_dimensions = { type = "number", description = "dimensions of the embeddings (text-embedding-3)",
                                 validate = function(v)
                                     if v >= 1 and v % 1 == 0 then return true end
                                     return nil, "must be a whole number of at least 1, got " .. v
                                 end },
    },

    encode = function(op, req, cfg)
        local headers -- (none to add: no table)
        if cfg.organization or cfg.project or req.id then
            headers = { ["openai-organization"] = cfg.organization, ["openai-project"] = cfg.project,
                        ["x-client-request-id"] = req.id }
        end
        if op == "embed" then
            return { path = cfg.embeddings_path, headers = headers,
                     body = { model = req.model, input = req.input, dimensions = cfg.embedding_dimensions } }
        end
        local body = {
            model = req.model, messages = codec.openai_messages(req), temperature = req.temperature, top_p = req.top_p,
            stop = req.stop, tool_choice = req.tool_choice and codec.tool_choice(req.tool_choice, "openai"),
        }
        if req.max_tokens then body[cfg.max_tokens_field] = req.max_tokens end
        if req.tools then body.tools = codec.openai_tools(req.tools) end
        if op == "stream" then
            body.stream = true
            if cfg.stream_usage then body.stream_options = { include_usage = true } end
        end
        if req.extra then
            for k, v in pairs(req.extra) do body[k] = v end
        end
        return { path = cfg.chat_path, headers = headers, body = body }
    end,

    decode = function(op, body, req, cfg)
        if op == "embed" then
            if type(body.data) ~= "table" then return nil, "no data array in the embeddings answer" end
            local vectors = {}
            for i, d in ipairs(body.data) do
                local idx = (tonumber(d.index) or (i - 1)) + 1
                if type(d.embedding) ~= "table" then return nil, "data[" .. i .. "].embedding is not an array" end
                vectors[idx] = d.embedding
            end
            return { vectors = vectors, model = str(body.model), usage = usage(tab(body.usage), "prompt_tokens") }
        end
        local choice = type(body.choices) == "table" and body.choices[1]
        if type(choice) ~= "table" or type(choice.message) ~= "table" then
            return nil, "no choices[1].message in the answer"
        end
        return {
            text = str(choice.message.content) or "",
            finish_reason = codec.finish_reason("openai", choice.finish_reason) or "stop",
            tool_calls = codec.openai_tool_calls(choice.message.tool_calls),
            usage = usage(tab(body.usage), "prompt_tokens", "completion_tokens"),
            model = str(body.model), id = str(body.id),
        }
    end,

    batch = {
        discount = 0.5,
        ops = { complete = true, embed = true },
        line = function(custom_id, op, enc, cfg)
            return { custom_id = custom_id, method = enc.method, url = enc.path, body = enc.body }
        end,
        -- the upload first; `submitted` then creates the batch over the file
        submit = function(job, cfg)
            return { path = "/v1/files",
                     input = { as = "file", field = "file", filename = "weft-batch.jsonl", form = { purpose = "batch" } } }
        end,
        submitted = function(job, answer, cfg)
            if type(answer.id) ~= "string" then return nil, "the answer has no id" end
            if not job.input_file_id then
                job.input_file_id = answer.id
                local meta
                if type(job.metadata) == "table" then
                    meta = {}
                    for k, v in pairs(job.metadata) do meta[tostring(k)] = tostring(v) end
                end
                return { job = job, next = { path = "/v1/batches", body = { input_file_id = answer.id, endpoint = job.path,
                                                                          completion_window = "24h", metadata = meta } } }
            end
            job.id = answer.id
            return { job = job }
        end,
        poll = function(job, cfg) return { method = "GET", path = "/v1/batches/" .. job.id } end,
        status = function(job, b, cfg)
            job.output_file_id, job.error_file_id = str(b.output_file_id), str(b.error_file_id)
            local rc = tab(b.request_counts)
            local msg
            if type(b.errors) == "table" and type(b.errors.data) == "table" then
                local parts = {}
                for i, e in ipairs(b.errors.data) do
                    if i > 3 then break end
                    parts[#parts + 1] = (e.line and e.line ~= null and ("line " .. tostring(e.line) .. ": ") or "")
                        .. (str(e.message) or str(e.code) or "?")
                end
                msg = table.concat(parts, "; ")
            end
            if not str(b.status) then return { job = job, state = "failed", message = "the batch has no status" } end
            -- a status this plugin does not know yet: still running (the wait's timeout bounds it)
            return { job = job, state = BATCH_STATES[b.status] or "running", status = str(b.status), message = msg,
                     counts = { total = rc.total, succeeded = rc.completed, failed = rc.failed } }
        end,
        results = function(job, cfg)
            local out = {}
            for _, id in ipairs { job.output_file_id or false, job.error_file_id or false } do
                if id then out[#out + 1] = { method = "GET", path = "/v1/files/" .. id .. "/content" } end
            end
            return out
        end,
        -- {id, custom_id, response = {status_code, body}, error}
        result = function(line, job, cfg)
            local r = line.response
            if type(r) == "table" and tonumber(r.status_code) then
                return { custom_id = line.custom_id, status = tonumber(r.status_code), body = r.body }
            end
            local e = tab(line.error)
            local code = str(e.code)
            return { custom_id = line.custom_id,
                     error = { kind = BATCH_ERRORS[code] or "transient", reason = code,
                               message = str(e.message) or code or "no response for this request" } }
        end,
        cancel = function(job, cfg) return { path = "/v1/batches/" .. job.id .. "/cancel" } end,
    },

    classify = function(status, headers, body, cfg)
        local e = codec.error_of(body)
        local kind = kind_of(status, e)
        return { kind = kind, reason = kind == "invalid_request" and context_length(e) and "context_length" or nil,
                 message = str(e.message) or ("HTTP " .. status), code = str(e.code) }
    end,

    -- No rate_limits: the host reads x-ratelimit-{remaining,reset}-
    -- {requests,tokens} (resets are Go durations such as "6m0s") and, on a
    -- 429, retry-after-ms / retry-after itself (weft.limiter's observe).

    -- One server-sent event of a stream: `data: {chunk}` or `data: [DONE]`.
    event = function(ev, st, req, cfg)
        if ev.data == "[DONE]" then return { done = true } end
        local v = json.decode(ev.data)
        if type(v) ~= "table" then return nil end
        if type(v.error) == "table" then
            return { error = { kind = kind_of(nil, v.error), message = str(v.error.message) or "error in stream" } }
        end
        local out = { usage = usage(v.usage, "prompt_tokens", "completion_tokens") }
        local c = type(v.choices) == "table" and v.choices[1]
        if type(c) == "table" then
            local d = tab(c.delta)
            out.text = str(d.content)
            if type(d.tool_calls) == "table" then
                -- deltas of tool calls: the first piece has id and name, later ones add arguments
                st.tools = codec.openai_tool_deltas(st.tools or {}, d.tool_calls)
                out.tool_calls = st.tools
            end
            out.finish_reason = codec.finish_reason("openai", c.finish_reason)
        end
        out.model = str(v.model)
        return out
    end,
}
