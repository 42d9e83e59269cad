-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999926", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999926", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9999", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999926", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"role":"assistant","usage":{"output_tokens":9,"input_tokens":10},"id":"msg_6b0995cb00000d","stop_sequence":null,"stop_reason":"end_turn","model":"claude-3-5-haiku-latest","type":"message","content":[{"type":"text","text":"echo: What is the capital of France?"}]}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 10, output = 9 } } },
    stream = { body = [[
event: message_start
data: {"type":"message_start","message":{"role":"assistant","usage":{"output_tokens":1,"input_tokens":10},"id":"msg_6b0995cb00000f","stop_sequence":null,"stop_reason":null,"model":"claude-3-5-haiku-latest","type":"message","content":[]}}

event: content_block_start
data: {"index":0,"type":"content_block_start","content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"echo"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":":"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" What"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" is"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" the"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" capital"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" of"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":" France"}}

event: content_block_delta
data: {"index":0,"type":"content_block_delta","delta":{"type":"text_delta","text":"?"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"usage":{"output_tokens":9},"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null}}

event: message_stop
data: {"type":"message_stop"}

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 10, output = 9 } } },
    errors = {
        { status = 400, kind = "invalid_request", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999906", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999906", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9997", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999906", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"invalid_request_error","message":"Invalid request (injected by weft mock)."}}]] },
        { status = 401, kind = "auth", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999859", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999859", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9996", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999859", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}]] },
        { status = 403, kind = "auth", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999816", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999816", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9995", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999816", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}]] },
        { status = 404, kind = "invalid_request", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999789", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999789", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9994", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999789", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"not_found_error","message":"The requested resource could not be found."}}]] },
        { status = 429, kind = "rate_limited", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999760", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999760", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9993", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999760", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z", ["retry-after"] = "1" }, body = [[
{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit (injected by weft mock)."}}]] },
        { status = 500, kind = "transient", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999713", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999713", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9992", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999713", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"api_error","message":"Internal server error"}}]] },
        { status = 529, kind = "transient", headers = { ["anthropic-ratelimit-input-tokens-limit"] = "10000000", ["anthropic-ratelimit-input-tokens-remaining"] = "9999664", ["anthropic-ratelimit-input-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-output-tokens-limit"] = "10000000", ["anthropic-ratelimit-output-tokens-remaining"] = "9999664", ["anthropic-ratelimit-output-tokens-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-requests-limit"] = "10000", ["anthropic-ratelimit-requests-remaining"] = "9991", ["anthropic-ratelimit-requests-reset"] = "2026-11-27T14:38:04Z", ["anthropic-ratelimit-tokens-limit"] = "10000000", ["anthropic-ratelimit-tokens-remaining"] = "9999664", ["anthropic-ratelimit-tokens-reset"] = "2026-11-27T14:38:04Z" }, body = [[
{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}]] },
        { status = 400, kind = "invalid_request", reason = "context_length", headers = {  }, body = [[
{"error":{"message":"prompt is too long: 10 tokens > 1 maximum","type":"invalid_request_error"},"type":"error"}]] },
    },
}
