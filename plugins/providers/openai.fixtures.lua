-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9999", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "6ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"created":1795790283,"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"echo: What is the capital of France?","refusal":null},"logprobs":null}],"id":"chatcmpl-6b0995cb000001","system_fingerprint":"fp_weft_mock","object":"chat.completion","usage":{"prompt_tokens":13,"completion_tokens":9,"total_tokens":22},"model":"gpt-4o-mini"}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 13, output = 9 } } },
    stream = { body = [[
data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"role":"assistant","content":"","refusal":null}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":"echo"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":":"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" What"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" is"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" the"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" capital"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" of"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":" France"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":null,"logprobs":null,"delta":{"content":"?"}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[{"index":0,"finish_reason":"stop","logprobs":null,"delta":{}}],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":null,"model":"gpt-4o-mini"}

data: {"created":1795790283,"choices":[],"id":"chatcmpl-6b0995cb000003","system_fingerprint":"fp_weft_mock","object":"chat.completion.chunk","usage":{"prompt_tokens":13,"completion_tokens":9,"total_tokens":22},"model":"gpt-4o-mini"}

data: [DONE]

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 13, output = 9 } } },
    embed = { body = [[
{"data":[{"index":0,"object":"embedding","embedding":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]},{"index":1,"object":"embedding","embedding":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]}],"object":"list","usage":{"total_tokens":2,"prompt_tokens":2},"model":"text-embedding-3-small"}]], expect = { count = 2 } },
    errors = {
        { status = 400, kind = "invalid_request", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9996", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "23ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":null,"type":"invalid_request_error","message":"Invalid request (injected by weft mock).","param":null}}]] },
        { status = 401, kind = "auth", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9995", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "29ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":"invalid_api_key","type":"invalid_request_error","message":"Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.","param":null}}]] },
        { status = 403, kind = "auth", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9994", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "34ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":null,"type":"invalid_request_error","message":"You are not allowed to sample from this model","param":null}}]] },
        { status = 404, kind = "invalid_request", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9993", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "40ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":"model_not_found","type":"invalid_request_error","message":"The model does not exist or you do not have access to it.","param":null}}]] },
        { status = 429, kind = "rate_limited", headers = { ["retry-after"] = "1", ["retry-after-ms"] = "1000", ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9992", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "46ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":"rate_limit_exceeded","type":"requests","message":"Rate limit reached (injected by weft mock). Please try again in 1s.","param":null}}]] },
        { status = 500, kind = "transient", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9991", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "52ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":null,"type":"server_error","message":"The server had an error while processing your request. Sorry about that!","param":null}}]] },
        { status = 503, kind = "transient", headers = { ["x-ratelimit-limit-requests"] = "10000", ["x-ratelimit-limit-tokens"] = "10000000", ["x-ratelimit-remaining-requests"] = "9990", ["x-ratelimit-remaining-tokens"] = "9999987", ["x-ratelimit-reset-requests"] = "58ms", ["x-ratelimit-reset-tokens"] = "0ms" }, body = [[
{"error":{"code":null,"type":"server_error","message":"The engine is currently overloaded, please try again later.","param":null}}]] },
        { status = 400, kind = "invalid_request", reason = "context_length", headers = {  }, body = [[
{"error":{"param":"messages","code":"context_length_exceeded","message":"This model's maximum context length is 1 tokens. However, your messages resulted in 13 tokens. Please reduce the length of the messages.","type":"invalid_request_error"}}]] },
    },
}
