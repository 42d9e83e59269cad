-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { headers = {  }, body = [[
{"usageMetadata":{"candidatesTokenCount":9,"totalTokenCount":16,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000018","candidates":[{"index":0,"content":{"role":"model","parts":[{"text":"echo: What is the capital of France?"}]},"finishReason":"STOP"}]}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 7, output = 9 } } },
    stream = { body = [[
data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":"echo"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":":"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" What"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" is"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" the"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" capital"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" of"}]},"index":0}]}

data: {"usageMetadata":{"totalTokenCount":7,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"content":{"role":"model","parts":[{"text":" France"}]},"index":0}]}

data: {"usageMetadata":{"candidatesTokenCount":9,"totalTokenCount":16,"promptTokenCount":7},"modelVersion":"gemini-2.0-flash","responseId":"6b0995cb000019","candidates":[{"index":0,"content":{"role":"model","parts":[{"text":"?"}]},"finishReason":"STOP"}]}

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 7, output = 9 } } },
    embed = { body = [[
{"embeddings":[{"values":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]},{"values":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]}]}]], expect = { count = 2 } },
    errors = {
        { status = 400, kind = "invalid_request", headers = {  }, body = [[
{"error":{"status":"INVALID_ARGUMENT","code":400,"message":"Request contains an invalid argument."}}]] },
        { status = 401, kind = "auth", headers = {  }, body = [[
{"error":{"status":"UNAUTHENTICATED","code":401,"message":"Error 401 (injected by weft mock)."}}]] },
        { status = 403, kind = "auth", headers = {  }, body = [[
{"error":{"status":"PERMISSION_DENIED","code":403,"message":"The caller does not have permission"}}]] },
        { status = 404, kind = "invalid_request", headers = {  }, body = [[
{"error":{"status":"NOT_FOUND","code":404,"message":"models/mock is not found for API version v1beta, or is not supported for generateContent."}}]] },
        { status = 429, kind = "rate_limited", headers = {  }, body = [[
{"error":{"details":[{"violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"model":"mock","location":"global"},"quotaValue":"15"}],"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}],"@type":"type.googleapis.com/google.rpc.Help"},{"retryDelay":"1s","@type":"type.googleapis.com/google.rpc.RetryInfo"}],"status":"RESOURCE_EXHAUSTED","code":429,"message":"Resource has been exhausted (e.g. check quota)."}}]] },
        { status = 500, kind = "transient", headers = {  }, body = [[
{"error":{"status":"INTERNAL","code":500,"message":"An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}}]] },
        { status = 503, kind = "transient", headers = {  }, body = [[
{"error":{"status":"UNAVAILABLE","code":503,"message":"The model is overloaded. Please try again later."}}]] },
        { status = 400, kind = "invalid_request", reason = "context_length", headers = {  }, body = [[
{"error":{"status":"INVALID_ARGUMENT","code":400,"message":"The input token count (7) exceeds the maximum number of tokens allowed (1)."}}]] },
    },
}
