--- Provider: Mistral AI (La Plateforme) -- an example of a provider plugin
--- written outside weft, the way a user adds a service without
--- recompiling anything. Put the file in a plugin directory
--- (`weft run --plugins DIR`, $WEFT_PLUGIN_PATH, ~/.config/weft/plugins)
--- as providers/mistral.lua, then `weft.model("mistral/mistral-small-latest")`.
--- `weft check` validates it; edits are picked up while scripts run.
---
--- Wire format (https://docs.mistral.ai/api/): POST /v1/chat/completions
--- {model, messages, max_tokens, temperature, top_p, stop, tools,
--- tool_choice, stream, random_seed}; answers choices[1].message and usage
--- {prompt_tokens, completion_tokens}; streams `data: {chunk}` ending with
--- `data: [DONE]`, usage in the last chunk; POST /v1/embeddings {model,
--- input}; errors {"object":"error","message","type","code"} or
--- {"detail": ...} for validation errors. Key: Authorization: Bearer.
--- The plugin is a pure codec: the host sends, retries, limits and adds
--- the key; this file only translates.
local json = weft.json

local function str(v) if type(v) == "string" then return v end end

local FINISH = { stop = "stop", length = "length", model_length = "length", tool_calls = "tool_calls", error = "error" }

local function wire_messages(req)
    local out = {}
    if req.system then out[1] = { role = "system", content = req.system } end
    for _, m in ipairs(req.messages) do
        local w = { role = m.role, content = m.content or "" }
        if m.tool_call_id then w.tool_call_id, w.name = m.tool_call_id, m.name end
        if m.tool_calls then
            w.tool_calls = {}
            for i, tc in ipairs(m.tool_calls) do
                w.tool_calls[i] = { id = tc.id, type = "function", ["function"] = { name = tc.name, arguments = tc.arguments } }
            end
        end
        out[#out + 1] = w
    end
    return out
end

local function tool_calls_of(list)
    if type(list) ~= "table" or not list[1] then return nil end
    local out = {}
    for i, tc in ipairs(list) do
        local f = type(tc["function"]) == "table" and tc["function"] or {}
        local args = f.arguments
        if type(args) == "table" then args = json.encode(args) end
        out[i] = { id = str(tc.id), name = str(f.name), arguments = str(args) or "{}" }
    end
    return out
end

local function usage_of(u)
    if type(u) ~= "table" then return nil end
    return { input = tonumber(u.prompt_tokens) or 0, output = tonumber(u.completion_tokens) or 0 }
end

local function kind_for(status)
    if status == 401 or status == 403 then return "auth" end
    if status == 429 then return "rate_limited" end
    if status == 408 or status == 409 or status >= 500 then return "transient" end
    return "invalid_request"
end

return {
    api = 1,
    name = "mistral",
    kind = "provider",
    version = "0.3.0",
    base_url = "https://api.mistral.ai",
    secret = "env:MISTRAL_API_KEY",
    auth = { header = "authorization", format = "Bearer {}" },
    capabilities = { complete = true, stream = true, embed = true },
    prices = {
        ["mistral-small-latest"] = { input = 0.10, output = 0.30 },
        ["mistral-large-latest"] = { input = 2.00, output = 6.00 },
        ["mistral-embed"] = { input = 0.10, output = 0 },
    },
    schema = {
        safe_prompt = { type = "boolean", default = false },
        random_seed = { type = "number" },
    },

    encode = function(op, req, cfg)
        if op == "embed" then
            return { path = "/v1/embeddings", body = { model = req.model, input = req.input } }
        end
        local stop = req.stop
        if type(stop) == "string" then stop = { stop } end
        local body = {
            model = req.model, messages = wire_messages(req), max_tokens = req.max_tokens,
            temperature = req.temperature, top_p = req.top_p, stop = stop, tool_choice = req.tool_choice,
            random_seed = cfg.random_seed, stream = op == "stream" or nil,
        }
        if cfg.safe_prompt then body.safe_prompt = true end
        if req.tools then
            body.tools = {}
            for i, t in ipairs(req.tools) do
                body.tools[i] = t.type and t or { type = "function", ["function"] = {
                    name = t.name, description = t.description, parameters = t.parameters } }
            end
        end
        return { path = "/v1/chat/completions", body = body }
    end,

    decode = function(op, body, req, cfg)
        if op == "embed" then
            if type(body.data) ~= "table" then return nil, "no data in the embeddings answer" end
            local vectors = {}
            for i, d in ipairs(body.data) do vectors[(tonumber(d.index) or (i - 1)) + 1] = d.embedding end
            return { vectors = vectors, usage = usage_of(body.usage) }
        end
        local c = type(body.choices) == "table" and body.choices[1]
        if type(c) ~= "table" or type(c.message) ~= "table" then return nil, "no choices[1].message" end
        return { text = str(c.message.content) or "", finish_reason = FINISH[c.finish_reason] or "stop",
                 tool_calls = tool_calls_of(c.message.tool_calls), usage = usage_of(body.usage),
                 model = str(body.model), id = str(body.id) }
    end,

    classify = function(status, headers, body, cfg)
        local ok, v = pcall(json.decode, body)
        local msg
        if ok and type(v) == "table" then
            msg = str(v.message) or (type(v.error) == "table" and str(v.error.message))
            if not msg and v.detail ~= nil then msg = type(v.detail) == "string" and v.detail or json.encode(v.detail) end
        end
        return { kind = kind_for(status), message = msg or ("HTTP " .. status) }
    end,

    event = function(ev, st, req, cfg)
        if ev.data == "[DONE]" then return { done = true } end
        local ok, v = pcall(json.decode, ev.data)
        if not ok or type(v) ~= "table" then return nil end
        if type(v.error) == "table" or v.object == "error" then
            local e = type(v.error) == "table" and v.error or v
            return { error = { kind = "transient", message = str(e.message) or "error in stream" } }
        end
        local out = { usage = usage_of(v.usage), model = str(v.model) }
        local c = type(v.choices) == "table" and v.choices[1]
        if type(c) == "table" then
            if type(c.delta) == "table" then
                out.text = str(c.delta.content)
                out.tool_calls = tool_calls_of(c.delta.tool_calls)
            end
            if str(c.finish_reason) then out.finish_reason = FINISH[c.finish_reason] or c.finish_reason end
        end
        return out
    end,

    -- Recorded answers for `weft check` (shortened).
    fixtures = {
        complete = {
            body = [[{"id":"cmpl-1","object":"chat.completion","model":"mistral-small-latest","choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","tool_calls":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}]],
            expect = { text = "Paris.", finish_reason = "stop", usage = { input = 10, output = 3 } },
        },
        stream = {
            body = 'data: {"id":"c","model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
                .. 'data: {"id":"c","model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"Paris"},"finish_reason":null}]}\n\n'
                .. 'data: {"id":"c","model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3}}\n\n'
                .. "data: [DONE]\n\n",
            expect = { text = "Paris.", finish_reason = "stop", usage = { input = 10, output = 3 } },
        },
        embed = {
            body = [[{"id":"e","object":"list","data":[{"object":"embedding","embedding":[0.1,0.2],"index":0},{"object":"embedding","embedding":[0.3,0.4],"index":1}],"model":"mistral-embed","usage":{"prompt_tokens":2,"total_tokens":2}}]],
            expect = { count = 2 },
        },
        errors = {
            { status = 401, body = [[{"message":"Unauthorized","request_id":"r"}]], kind = "auth" },
            { status = 422, body = [[{"object":"error","message":{"detail":[{"type":"missing","loc":["body","model"]}]},"type":"invalid_request_error"}]], kind = "invalid_request" },
            { status = 429, body = [[{"message":"Requests rate limit exceeded"}]], kind = "rate_limited" },
            { status = 503, body = [[{"object":"error","message":"Service unavailable","type":"internal_server_error"}]], kind = "transient" },
        },
    },
}
