-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.
return {
    complete = { body = [[
{"id":"msg_6b0992ab000003","type":"message","role":"assistant","stop_sequence":null,"content":[{"text":"echo: What is the capital of France?","type":"text"}],"usage":{"output_tokens":9,"input_tokens":10},"stop_reason":"end_turn","model":"claude-3-5-haiku-latest"}]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 10, output = 9 } } },
    stream = { body = [[
event: message_start
data: {"message":{"id":"msg_6b0992ab000005","type":"message","role":"assistant","stop_sequence":null,"content":[],"usage":{"output_tokens":1,"input_tokens":10},"stop_reason":null,"model":"claude-3-5-haiku-latest"},"type":"message_start"}

event: content_block_start
data: {"type":"content_block_start","content_block":{"text":"","type":"text"},"index":0}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":"echo","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":":","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" What","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" is","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" the","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" capital","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" of","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":" France","type":"text_delta"},"index":0}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"text":"?","type":"text_delta"},"index":0}

event: content_block_stop
data: {"index":0,"type":"content_block_stop"}

event: message_delta
data: {"usage":{"output_tokens":9},"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null}}

event: message_stop
data: {"type":"message_stop"}

]],
        expect = { text = "echo: What is the capital of France?", finish_reason = "stop", usage = { input = 10, output = 9 } } },
    errors = {
        { status = 400, kind = "invalid_request", body = [[
{"error":{"message":"Invalid request (injected by weft mock).","type":"invalid_request_error"},"type":"error"}]] },
        { status = 401, kind = "auth", body = [[
{"error":{"message":"invalid x-api-key","type":"authentication_error"},"type":"error"}]] },
        { status = 403, kind = "auth", body = [[
{"error":{"message":"Your API key does not have permission to use the specified resource.","type":"permission_error"},"type":"error"}]] },
        { status = 404, kind = "invalid_request", body = [[
{"error":{"message":"The requested resource could not be found.","type":"not_found_error"},"type":"error"}]] },
        { status = 429, kind = "rate_limited", body = [[
{"error":{"message":"Number of requests has exceeded your rate limit (injected by weft mock).","type":"rate_limit_error"},"type":"error"}]] },
        { status = 500, kind = "transient", body = [[
{"error":{"message":"Internal server error","type":"api_error"},"type":"error"}]] },
        { status = 529, kind = "transient", body = [[
{"error":{"message":"Overloaded","type":"overloaded_error"},"type":"error"}]] },
    },
}
