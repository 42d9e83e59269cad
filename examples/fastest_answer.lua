-- fastest_answer.lua: ask three backends the same question at once, keep
-- the first good answer, cancel the rest, and never wait more than 2 s.
--
-- The backends are local HTTP servers started by this script (one slow, one
-- failing with 503, one fast), so it runs anywhere with no API key:
--
--   weft run examples/fastest_answer.lua ["your question"]
--
-- Every request runs in its own task on one event loop; nothing blocks.
local http, json = weft.http, weft.json

local question = arg[1] or "What is the capital of France?"

-- A tiny JSON backend answering after `delay` seconds with `status`.
local function backend(name, delay, status)
    return http.serve {
        host = "127.0.0.1", port = 0,
        handler = function(req)
            local ask = json.decode(req.body)
            weft.sleep(delay)
            if status ~= 200 then
                return { status = status, body = json.encode { error = name .. " is overloaded" } }
            end
            return {
                status = 200,
                headers = { ["content-type"] = "application/json" },
                body = json.encode { backend = name, answer = ("%s heard: %q"):format(name, ask.q) },
            }
        end,
    }
end

local backends = {
    { name = "slow", server = backend("slow", 1.5, 200) },
    { name = "flaky", server = backend("flaky", 0.05, 503) },
    { name = "fast", server = backend("fast", 0.2, 200) },
}

-- One attempt against one backend: an HTTP error status is a failure here.
local function ask(b)
    local res = http.request {
        method = "POST",
        url = ("http://127.0.0.1:%d/answer"):format(b.server.port),
        headers = { ["content-type"] = "application/json" },
        body = json.encode { q = question },
        timeout = 5,
    }
    if res.status ~= 200 then
        error(weft.error.new("transient", ("%s answered %d"):format(b.name, res.status)), 0)
    end
    return json.decode(res.body)
end

local started = weft.now()
local attempts = {}
for i, b in ipairs(backends) do
    attempts[i] = function() return ask(b) end
end

local result = weft.timeout(2, function() return weft.any(attempts) end)
print(("answer from %-5s after %.0f ms: %s"):format(result.backend,
    (weft.now() - started) * 1000, result.answer))

for _, b in ipairs(backends) do b.server:close() end
