-- wire.lua: what a benchmark's clients put on the wire, for run.sh to
-- check that weft and its baseline send the same request (a header one
-- of them adds costs curl ~5k instructions to format, which would be
-- counted against the other).
--
--   weft run bench/wire.lua        prints its URL, then one line a request:
--   METHOD PATH len=BODY_BYTES | name: value | ...   (header names in lower
--   case and sorted; host and content-length left out, authorization
--   shown as "set": they differ by run, or are credentials)
--
-- Each request is answered with a small chat completion. Loopback only;
-- run.sh stops it.
local ANSWER = '{"id":"chatcmpl-wire","object":"chat.completion","created":1700000000,'
    .. '"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},'
    .. '"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
local SKIP = { host = true, ["content-length"] = true }

local srv = weft.http.serve {
    port = 0,
    handler = function(req)
        local fields = {}
        for name, v in pairs(req.headers) do
            if not SKIP[name] then
                if type(v) == "table" then v = table.concat(v, ", ") end
                if name == "authorization" or name:find("key", 1, true) then v = "set" end
                fields[#fields + 1] = name .. ": " .. v
            end
        end
        table.sort(fields)
        io.write(("%s %s len=%d | %s\n"):format(req.method, req.path, #(req.body or ""),
            table.concat(fields, " | ")))
        io.stdout:flush()
        return { status = 200, headers = { ["content-type"] = "application/json" }, body = ANSWER }
    end,
}
io.write(("http://127.0.0.1:%d\n"):format(srv.port))
io.stdout:flush()
