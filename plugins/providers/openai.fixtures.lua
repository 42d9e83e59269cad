-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { body = [[
{"id":"chatcmpl-6b0992ab00000e","object":"chat.completion","created":1795789483,"choices":[{"finish_reason":"stop","logprobs":null,"message":{"content":"echo: What is the capital of France?","refusal":null,"role":"assistant"},"index":0}],"usage":{"prompt_tokens":13,"completion_tokens":9,"total_tokens":22},"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 13, output = 9 } } },
    stream = { body = [[
data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":"","refusal":null,"role":"assistant"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":"echo"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":":"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" What"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" is"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" the"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" capital"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" of"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":" France"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":null,"logprobs":null,"delta":{"content":"?"},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[{"finish_reason":"stop","logprobs":null,"delta":{},"index":0}],"usage":null,"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: {"id":"chatcmpl-6b0992ab000010","object":"chat.completion.chunk","created":1795789483,"choices":[],"usage":{"prompt_tokens":13,"completion_tokens":9,"total_tokens":22},"model":"gpt-4o-mini","system_fingerprint":"fp_weft_mock"}

data: [DONE]

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 13, output = 9 } } },
    embed = { body = [[
{"model":"text-embedding-3-small","object":"list","usage":{"prompt_tokens":2,"total_tokens":2},"data":[{"object":"embedding","embedding":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802],"index":0},{"object":"embedding","embedding":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802],"index":1}]}]], expect = { count = 2 } },
    errors = {
        { status = 400, kind = "invalid_request", body = [[
{"error":{"param":null,"type":"invalid_request_error","message":"Invalid request (injected by weft mock).","code":null}}]] },
        { status = 401, kind = "auth", body = [[
{"error":{"param":null,"type":"invalid_request_error","message":"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.","code":"invalid_api_key"}}]] },
        { status = 403, kind = "auth", body = [[
{"error":{"param":null,"type":"invalid_request_error","message":"You are not allowed to sample from this model","code":null}}]] },
        { status = 404, kind = "invalid_request", body = [[
{"error":{"param":null,"type":"invalid_request_error","message":"The model does not exist or you do not have access to it.","code":"model_not_found"}}]] },
        { status = 429, kind = "rate_limited", body = [[
{"error":{"param":null,"type":"requests","message":"Rate limit reached (injected by weft mock). Please try again in 1s.","code":"rate_limit_exceeded"}}]] },
        { status = 500, kind = "transient", body = [[
{"error":{"param":null,"type":"server_error","message":"The server had an error while processing your request. Sorry about that!","code":null}}]] },
        { status = 503, kind = "transient", body = [[
{"error":{"param":null,"type":"server_error","message":"The engine is currently overloaded, please try again later.","code":null}}]] },
    },
}
