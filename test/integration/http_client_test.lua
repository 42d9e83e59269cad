-- http_client_test.lua: weft.http.request against a real fault-injecting
-- server in another process (test/integration/faultserver.c).
local t = require "support"
local http, json = weft.http, weft.json
local check, raised = t.check, t.raised

local fs = t.faultserver()
local base = fs.url

-- 1. Plain requests: status, body, headers lower-cased, repeated kept.
do
    local r = http.request { url = base .. "/ok" }
    check(r.status == 200, "GET /ok is 200", r.status)
    check(type(r.body) == "string" and #r.body > 0, "GET /ok has a body")
    local h = http.request { url = base .. "/headers" }
    check(h.headers["x-mixed-case"] ~= nil, "header names are lower-cased",
        json.encode(h.headers, { sort_keys = true }))
    local cookies = h.headers["set-cookie"]
    check(type(cookies) == "table" and #cookies == 2, "repeated headers are kept as an array",
        json.encode(h.headers, { sort_keys = true }))
    local nf = http.request { url = base .. "/status/404" }
    check(nf.status == 404, "404 is a response, not an error", nf.status)
    local e = http.request { url = base .. "/status/503" }
    check(e.status == 503, "503 is a response, not an error", e.status)
end

-- 2. Request body and headers reach the server intact.
do
    local body = json.encode { model = "m", messages = { { role = "user", content = "héllo/\0x" } } }
    local r = http.request {
        method = "POST", url = base .. "/echo?a=1&b=2",
        headers = { ["content-type"] = "application/json", ["x-multi"] = { "one", "two" } },
        body = body,
    }
    check(r.status == 200, "POST /echo is 200", r.status)
    local echo = json.decode(r.body)
    check(echo and echo.body == body, "request body arrives byte for byte", r.body)
    check(echo and echo.method == "POST", "method arrives", echo and echo.method)
    check(echo and echo.query == "a=1&b=2", "query string arrives", echo and echo.query)
end

-- 2b. Pooled curl handles carry nothing over from the previous request:
-- every method in turn on the same handle reaches the server as itself.
do
    local seq = { { "GET" }, { "HEAD" }, { "POST", "x" }, { "GET" }, { "PUT", "y" },
                  { "DELETE" }, { "HEAD" }, { "PATCH", "z" }, { "GET" } }
    local got = {}
    for _, m in ipairs(seq) do
        local r = http.request { method = m[1], url = base .. "/echo", body = m[2] }
        if m[1] == "HEAD" then
            got[#got + 1] = (r.status == 200 and r.body == "") and "HEAD" or "HEAD?"
        else
            local e = json.decode(r.body)
            got[#got + 1] = e.method .. (e.body ~= "" and (":" .. e.body) or "")
        end
    end
    check(table.concat(got, " ") == "GET HEAD POST:x GET PUT:y DELETE HEAD PATCH:z GET",
        "each method arrives as itself on reused handles", table.concat(got, " "))
end

-- 3. 1,000 concurrent requests from 1,000 tasks all complete.
do
    local n, ok = 1000, 0
    local tasks = {}
    for i = 1, n do
        tasks[i] = weft.spawn(function()
            local r = http.request { url = base .. "/ok" }
            if r.status == 200 then ok = ok + 1 end
        end)
    end
    for i = 1, n do tasks[i]:wait() end
    check(ok == n, "1,000 concurrent requests from 1,000 tasks all complete", ok)
end

-- 4. Transport failures raise error values with a kind and a clear message.
do
    local port = t.closed_port()
    local err = raised(http.request, { url = "http://127.0.0.1:" .. port .. "/" })
    check(err and err.kind == "transient", "connection refused is transient", err)
    check(err and tostring(err.message):find("refused"), "message says refused", err)

    err = raised(http.request, { url = base .. "/reset" })
    check(err and err.kind == "transient", "reset mid-body is transient", err)
    check(err and (tostring(err.message):find("reset") or tostring(err.message):find("closed")),
        "message says reset/closed", err)

    err = raised(http.request, { url = base .. "/close" })
    check(err and err.kind == "transient", "connection closed without response is transient", err)

    local t0 = weft.now()
    err = raised(http.request, { url = base .. "/hang", timeout = 0.3 })
    local waited = weft.now() - t0
    check(err and err.kind == "timeout", "a server that never answers times out", err)
    check(waited >= 0.29, "the timeout waited at least its duration", waited)

    t0 = weft.now()
    err = raised(http.request, { url = base .. "/drip?bytes=100&ms=5000", idle_timeout = 0.3 })
    waited = weft.now() - t0
    check(err and err.kind == "timeout", "idle timeout fires when the body stops", err)
    check(waited >= 0.29, "the idle timeout waited at least its duration", waited)

    err = raised(http.request, { url = base .. "/big?bytes=2000000", max_body = 1000000 })
    check(err and err.kind == "integration", "oversized body (Content-Length) is refused", err)
    check(err and tostring(err.message):find("max_body"), "message names max_body", err)
    err = raised(http.request, { url = base .. "/big-chunked?bytes=2000000", max_body = 1000000 })
    check(err and err.kind == "integration", "oversized chunked body is refused", err)
    err = raised(http.request, { url = base .. "/big?bytes=" .. (64 * 1024 * 1024 + 1) })
    check(err and err.kind == "integration", "the default cap is 64 MiB", err)
    local big = http.request { url = base .. "/big?bytes=3000000" }
    check(big.status == 200 and #big.body == 3000000, "3 MB body under the default cap arrives whole",
        #big.body)

    err = raised(http.request, { url = "not a url" })
    check(err and err.kind == "invalid_request", "invalid URL is invalid_request", err)
    err = raised(http.request, { url = "ftp://127.0.0.1/x" })
    check(err and err.kind == "invalid_request", "non-HTTP scheme is invalid_request", err)
    err = raised(http.request, { url = "http://no-such-host.invalid/" })
    check(err and err.kind == "transient" and tostring(err.message):find("DNS"),
        "unresolvable host is a transient DNS error", err)
end

-- 5. Wrong argument types from Lua: clear errors, nothing crashes.
do
    local cases = {
        { nil, "expected a table" },
        { "http://x", "expected a table" },
        { {}, "url" },
        { { url = 42 }, "url" },
        { { url = base, headers = "x" }, "headers" },
        { { url = base, headers = { ["x-a"] = 1 } }, "header" },
        { { url = base, headers = { ["x-a"] = "v\r\nx-injected: 1" } }, "header" },
        { { url = base, body = {} }, "body" },
        { { url = base, timeout = "soon" }, "timeout" },
        { { url = base, timeout = -1 }, "timeout" },
        { { url = base, on_data = "f" }, "on_data" },
        { { url = base, method = "GET /x" }, "method" },
        { { url = base, timout = 5 }, "unknown option 'timout'" },
        { { url = base, stream = true }, "unknown option 'stream'" },
        { { url = base, max_body = 0 }, "max_body" },
        { { url = base .. "/x y" }, "invalid URL" },
    }
    for i, c in ipairs(cases) do
        local err = raised(http.request, c[1])
        check(err ~= nil and tostring(err):find(c[2], 1, true) ~= nil,
            ("bad argument %d gives a clear error mentioning %q"):format(i, c[2]), err)
    end
end

-- 6. Streaming: on_data sees chunks as they arrive; false stops the transfer.
do
    local chunks = {}
    local r = http.request {
        url = base .. "/stream?n=5&ms=50",
        on_data = function(chunk) chunks[#chunks + 1] = chunk end,
    }
    local all = table.concat(chunks)
    check(r.status == 200, "streamed response has its status", r.status)
    check(all == "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\n"
        or all == "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n",
        "on_data receives the whole body in order", all)
    check(#chunks >= 2, "chunks are delivered as they arrive, not at the end", #chunks)

    local seen = 0
    local t0 = weft.now()
    local r2 = http.request {
        url = base .. "/stream?n=100&ms=50",
        on_data = function() seen = seen + 1; return false end,
    }
    check(r2.aborted == true and seen == 1, "returning false from on_data stops the stream", seen)

    local err = raised(http.request, {
        url = base .. "/stream?n=3&ms=10",
        on_data = function() error("consumer failed") end,
    })
    check(err and tostring(err):find("consumer failed"), "an error in on_data is raised to the caller", err)
end

-- 7. Cancelling a task in the middle of a request frees the transfer.
do
    local task = weft.spawn(function() return http.request { url = base .. "/hang" } end)
    weft.sleep(0.1)
    task:cancel()
    local err = raised(task.wait, task)
    check(err and err.kind == "cancelled", "cancelled request raises kind cancelled", err)
    local stats = require("weft._http_client").stats
    check(stats().in_flight == 0, "the cancelled transfer is freed", stats().in_flight)
    local r = http.request { url = base .. "/ok" }
    check(r.status == 200, "the client keeps working after a cancel", r.status)

    local err2 = raised(weft.timeout, 0.2, function() return http.request { url = base .. "/hang" } end)
    check(err2 and err2.kind == "timeout", "weft.timeout around a request raises timeout", err2)
    check(stats().in_flight == 0, "a timed-out transfer is freed", stats().in_flight)
end

-- 8. Connections are reused: 20 sequential requests use few connections.
do
    local before = json.decode(http.request { url = base .. "/echo" }.body)
    for _ = 1, 20 do http.request { url = base .. "/ok" } end
    local after = json.decode(http.request { url = base .. "/echo" }.body)
    if before and before.connections and after and after.connections then
        check(after.connections - before.connections <= 1,
            "sequential requests reuse the connection", after.connections - before.connections)
    end
end

fs.close()
t.done()
