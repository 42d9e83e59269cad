--- Provider: DeepSeek -- an example of a provider plugin written for
--- plugin API 2, outside weft (mistral.lua beside it is the same kind of
--- file at API 1). Put it in a plugin directory (`weft run --plugins DIR`,
--- $WEFT_PLUGIN_PATH, ~/.config/weft/plugins) as providers/deepseek.lua,
--- then `weft.model("deepseek/deepseek-chat")`. `weft check` validates it.
---
--- API 2 gives it `weft.codec`, the helpers the shipped plugins share:
--- DeepSeek speaks OpenAI's Chat Completions dialect, so the messages,
--- tools, tool calls (whole and streamed), usage, finish reasons, status
--- ladder and error bodies are the codec's; this file keeps only what is
--- DeepSeek's own. And schema fields with a description and a validator:
--- a configuration that sets `response_format = "xml"` fails at configure
--- time naming the provider and the key, not at the first call.
---
--- Wire format (https://api-docs.deepseek.com/): POST /chat/completions
--- (also under /v1) {model, messages, max_tokens, temperature, top_p,
--- stop, tools, tool_choice, response_format, frequency_penalty, stream,
--- stream_options}; answers choices[1].message {content,
--- reasoning_content (deepseek-reasoner), tool_calls}, finish_reason (stop,
--- length, tool_calls, content_filter, insufficient_system_resource) and
--- usage {prompt_tokens, completion_tokens, prompt_cache_hit_tokens};
--- streams `data: {chunk}` ending with `data: [DONE]`; errors {"error":
--- {message, type, code}} with 400, 401, 402 (insufficient balance), 422,
--- 429, 500 and 503. No embeddings. Key: Authorization: Bearer. Prices
--- change with the hour and with cache hits: give them in the
--- configuration (`prices`) to have costs recorded.
local codec = weft.codec
local str, tab, usage = codec.str, codec.tab, codec.usage

-- OpenAI's finish reasons and DeepSeek's own: out of capacity, nothing useful came
local FINISH = codec.finish_map("openai")
FINISH.insufficient_system_resource = "error"

local function kind_of(status, e)
    if status == 402 then return "quota_exhausted" end -- "Insufficient Balance": top up, do not retry
    return codec.status_kind(status) or "transient"    -- no status: an error inside a stream
end

return {
    api = 2,
    name = "deepseek",
    kind = "provider",
    version = "0.1.0",
    base_url = "https://api.deepseek.com",
    secret = "env:DEEPSEEK_API_KEY",
    auth = { header = "authorization", format = "Bearer {}" },
    capabilities = { complete = true, stream = true, embed = false },
    schema = {
        chat_path = { type = "string", default = "/v1/chat/completions", description = "path of chat completions",
                      validate = function(v)
                          if v:sub(1, 1) == "/" then return true end
                          return nil, "must be a path starting with /, got \"" .. v .. "\""
                      end },
        response_format = { type = "string", default = "text",
                            description = "text, or json_object: the answer is one JSON object (ask for JSON in the prompt)",
                            validate = function(v)
                                if v == "text" or v == "json_object" then return true end
                                return nil, "must be \"text\" or \"json_object\", got \"" .. v .. "\""
                            end },
        frequency_penalty = { type = "number", description = "from -2 to 2: above 0 repeats itself less",
                              validate = function(v)
                                  if v >= -2 and v <= 2 then return true end
                                  return nil, "must be from -2 to 2, got " .. v
                              end },
        reasoning = { type = "boolean", default = true,
                      description = "keep deepseek-reasoner's reasoning_content as the result's `reasoning`" },
    },

    encode = function(op, req, cfg)
        local body = {
            model = req.model, messages = codec.openai_messages(req), max_tokens = req.max_tokens,
            temperature = req.temperature, top_p = req.top_p, stop = req.stop, tool_choice = req.tool_choice,
            frequency_penalty = cfg.frequency_penalty,
        }
        if req.tools then body.tools = codec.openai_tools(req.tools) end
        if cfg.response_format ~= "text" then body.response_format = { type = cfg.response_format } end
        if op == "stream" then body.stream, body.stream_options = true, { include_usage = true } end
        for k, v in pairs(req.extra or {}) do body[k] = v end
        return { path = cfg.chat_path, body = body }
    end,

    decode = function(op, body, req, cfg)
        local c = type(body.choices) == "table" and body.choices[1]
        if type(c) ~= "table" or type(c.message) ~= "table" then return nil, "no choices[1].message in the answer" end
        return {
            text = str(c.message.content) or "",
            reasoning = cfg.reasoning and str(c.message.reasoning_content) or nil,
            finish_reason = FINISH[c.finish_reason] or str(c.finish_reason) or "stop",
            tool_calls = codec.openai_tool_calls(c.message.tool_calls),
            usage = usage(tab(body.usage), "prompt_tokens", "completion_tokens"),
            model = str(body.model), id = str(body.id),
        }
    end,

    classify = function(status, headers, body, cfg)
        local e = codec.error_of(body)
        return { kind = kind_of(status, e), message = str(e.message) or ("HTTP " .. status), code = str(e.code) or str(e.type) }
    end,

    event = function(ev, st, req, cfg)
        if ev.data == "[DONE]" then return { done = true } end
        local v = codec.json_table(ev.data)
        if not v then return nil end
        if type(v.error) == "table" then
            return { error = { kind = kind_of(nil, v.error), message = str(v.error.message) or "error in stream" } }
        end
        local out = { usage = usage(v.usage, "prompt_tokens", "completion_tokens"), model = str(v.model) }
        local c = type(v.choices) == "table" and v.choices[1]
        if type(c) == "table" then
            local d = tab(c.delta)
            out.text = str(d.content)
            if type(d.tool_calls) == "table" then
                st.tools = codec.openai_tool_deltas(st.tools or {}, d.tool_calls)
                out.tool_calls = st.tools
            end
            if str(c.finish_reason) then out.finish_reason = FINISH[c.finish_reason] or c.finish_reason end
        end
        return out
    end,

    -- Answers in the forms DeepSeek documents (written by hand, shortened),
    -- for `weft check`.
    fixtures = {
        complete = {
            body = [[{"id":"d1","object":"chat.completion","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"Paris.","reasoning_content":"The capital of France is Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":12,"total_tokens":22,"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":10,"completion_tokens_details":{"reasoning_tokens":9}}}]],
            expect = { text = "Paris.", finish_reason = "stop", usage = { input = 10, output = 12 } },
        },
        stream = {
            body = 'data: {"id":"d2","object":"chat.completion.chunk","model":"deepseek-chat","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
                .. 'data: {"id":"d2","object":"chat.completion.chunk","model":"deepseek-chat","choices":[{"index":0,"delta":{"content":"Paris"},"finish_reason":null}]}\n\n'
                .. 'data: {"id":"d2","object":"chat.completion.chunk","model":"deepseek-chat","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":3,"total_tokens":13}}\n\n'
                .. "data: [DONE]\n\n",
            expect = { text = "Paris.", finish_reason = "stop", usage = { input = 10, output = 3 } },
        },
        errors = {
            { status = 400, body = [[{"error":{"message":"Invalid format","type":"invalid_request_error","code":"invalid_request_error"}}]], kind = "invalid_request" },
            { status = 401, body = [[{"error":{"message":"Authentication Fails (no such user)","type":"authentication_error","code":"invalid_request_error"}}]], kind = "auth" },
            { status = 402, body = [[{"error":{"message":"Insufficient Balance","type":"unknown_error","code":"invalid_request_error"}}]], kind = "quota_exhausted" },
            { status = 422, body = [[{"error":{"message":"Invalid parameters","type":"invalid_request_error","code":"invalid_request_error"}}]], kind = "invalid_request" },
            { status = 429, body = [[{"error":{"message":"Rate Limit Reached","type":"rate_limit_error","code":"rate_limit_exceeded"}}]], kind = "rate_limited" },
            { status = 503, body = [[{"error":{"message":"Server overloaded","type":"server_error","code":"server_error"}}]], kind = "transient" },
        },
    },
}
