-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { body = [[
{"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000001","candidates":[{"content":{"role":"model","parts":[{"text":"echo: What is the capital of France?"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"totalTokenCount":16,"promptTokenCount":7,"candidatesTokenCount":9}}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 7, output = 9 } } },
    stream = { body = [[
data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":"echo"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":":"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" What"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" is"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" the"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" capital"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" of"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":" France"}]},"index":0}],"usageMetadata":{"promptTokenCount":7,"totalTokenCount":7}}

data: {"modelVersion":"gemini-2.0-flash","responseId":"6b0992ab000002","candidates":[{"content":{"role":"model","parts":[{"text":"?"}]},"finishReason":"STOP","index":0}],"usageMetadata":{"totalTokenCount":16,"promptTokenCount":7,"candidatesTokenCount":9}}

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 7, output = 9 } } },
    embed = { body = [[
{"embeddings":[{"values":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]},{"values":[-0.043752,0.140135,-0.455529,-0.161455,-0.605436,0.12603,0.038404,-0.600802]}]}]], expect = { count = 2 } },
    errors = {
        { status = 400, kind = "invalid_request", body = [[
{"error":{"status":"INVALID_ARGUMENT","message":"Request contains an invalid argument.","code":400}}]] },
        { status = 401, kind = "auth", body = [[
{"error":{"status":"UNAUTHENTICATED","message":"Error 401 (injected by weft mock).","code":401}}]] },
        { status = 403, kind = "auth", body = [[
{"error":{"status":"PERMISSION_DENIED","message":"The caller does not have permission","code":403}}]] },
        { status = 404, kind = "invalid_request", body = [[
{"error":{"status":"NOT_FOUND","message":"models/mock is not found for API version v1beta, or is not supported for generateContent.","code":404}}]] },
        { status = 429, kind = "rate_limited", body = [[
{"error":{"details":[{"violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"model":"mock","location":"global"},"quotaValue":"15"}],"@type":"type.googleapis.com/google.rpc.QuotaFailure"},{"links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}],"@type":"type.googleapis.com/google.rpc.Help"},{"retryDelay":"1s","@type":"type.googleapis.com/google.rpc.RetryInfo"}],"status":"RESOURCE_EXHAUSTED","message":"Resource has been exhausted (e.g. check quota).","code":429}}]] },
        { status = 500, kind = "transient", body = [[
{"error":{"status":"INTERNAL","message":"An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting","code":500}}]] },
        { status = 503, kind = "transient", body = [[
{"error":{"status":"UNAVAILABLE","message":"The model is overloaded. Please try again later.","code":503}}]] },
    },
}
