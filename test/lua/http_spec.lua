-- http_spec.lua: weft.http.serve and weft.http.request together, in one
-- process (the two sides are tasks on the same loop).
local http, json = weft.http, weft.json

local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

describe("weft.http.serve", function()
    local srv, base, seen, gone

    -- Wait (bounded) until cond() holds, in small sleeps; returns cond().
    local function eventually(cond)
        for _ = 1, 500 do
            if cond() then return true end
            weft.sleep(0.01)
        end
        return cond()
    end

    before_each(function()
        seen, gone = {}, {}
        srv = http.serve {
            port = 0,
            max_body_size = 1000,
            handler = function(req, res)
                seen[#seen + 1] = req
                if req.path == "/sleep" then
                    weft.sleep(0.05)
                    return { status = 200, body = "slept" }
                elseif req.path == "/sse" then
                    res:start(200, { ["content-type"] = "text/event-stream" })
                    for i = 1, 3 do
                        assert.is_true(res:write("data: " .. i .. "\n\n"))
                        weft.sleep(0.02)
                    end
                    res:finish()
                    return
                elseif req.path == "/big-stream" then
                    res:start(200, {})
                    local chunk = string.rep("z", 64 * 1024)
                    for _ = 1, 64 do res:write(chunk) end -- 4 MiB through the watermark
                    res:finish()
                    return
                elseif req.path == "/call-out" then
                    -- a handler may itself make requests
                    local r = http.request { url = base .. "/sleep" }
                    return { status = 200, body = "inner:" .. r.body }
                elseif req.path == "/bad" then
                    return { status = "nope" }
                elseif req.path == "/late" then
                    -- what the handler knows of its client after a sleep,
                    -- before writing anything
                    weft.sleep(0.3)
                    gone[#gone + 1] = res:gone()
                    return { status = 200, body = "late" }
                elseif req.path == "/multi" then
                    return { status = 201, headers = { ["set-cookie"] = { "a=1", "b=2" }, ["x-one"] = "1" } }
                elseif req.path == "/many" then
                    -- more names than the client tells apart without a
                    -- table lookup (48), each sent three times
                    local h = {}
                    for i = 1, 60 do h["x-h-" .. i] = { i .. "a", i .. "b", i .. "c" } end
                    return { status = 200, headers = h }
                end
                return {
                    status = 200,
                    headers = { ["content-type"] = "application/json" },
                    body = json.encode { method = req.method, path = req.path, query = req.query,
                                         body = req.body, version = req.http_version },
                }
            end,
        }
        base = "http://127.0.0.1:" .. srv.port
    end)

    after_each(function() srv:close() end)

    it("binds an ephemeral port on 127.0.0.1", function()
        assert.is_true(srv.port > 0)
        assert.are.equal("127.0.0.1", srv.host)
    end)

    it("passes method, path, query and body to the handler", function()
        local r = http.request { method = "PUT", url = base .. "/p/q?x=1&y=2", body = "hello" }
        assert.are.equal(200, r.status)
        local v = json.decode(r.body)
        assert.are.same({ method = "PUT", path = "/p/q", query = "x=1&y=2", body = "hello", version = "1.1" }, v)
        assert.are.equal("hello", seen[1].body)
        assert.are.equal("5", seen[1].headers["content-length"])
        assert.matches("^127%.0%.0%.1:%d+$", seen[1].remote_addr)
    end)

    it("runs each request in its own task (concurrent sleeps overlap)", function()
        local t0 = weft.now()
        local fns = {}
        for i = 1, 20 do fns[i] = function() return http.request { url = base .. "/sleep" }.body end end
        local r = weft.all(fns)
        assert.are.equal(20, #r)
        assert.are.equal("slept", r[20])
        assert.is_true(weft.now() - t0 >= 0.05)
    end)

    it("lets a handler make requests itself", function()
        assert.are.equal("inner:slept", http.request { url = base .. "/call-out" }.body)
    end)

    it("streams a response that the client reads as it arrives", function()
        local chunks = {}
        local r = http.request { url = base .. "/sse", on_data = function(c) chunks[#chunks + 1] = c end }
        assert.are.equal(200, r.status)
        assert.are.equal("text/event-stream", r.headers["content-type"])
        assert.are.equal("chunked", r.headers["transfer-encoding"])
        assert.are.equal("data: 1\n\ndata: 2\n\ndata: 3\n\n", table.concat(chunks))
        assert.is_true(#chunks >= 2)
    end)

    it("pushes a large stream through the write watermark", function()
        local r = http.request { url = base .. "/big-stream" }
        assert.are.equal(4 * 1024 * 1024, #r.body)
    end)

    it("sends repeated headers and the status the handler chose", function()
        local r = http.request { url = base .. "/multi" }
        assert.are.equal(201, r.status)
        assert.are.same({ "a=1", "b=2" }, r.headers["set-cookie"])
        assert.are.equal("1", r.headers["x-one"])
        r = http.request { url = base .. "/many" }
        for i = 1, 60 do assert.are.same({ i .. "a", i .. "b", i .. "c" }, r.headers["x-h-" .. i]) end
        -- a request with a body and no method is a POST, and counted as one
        local value = weft.metrics.value
        local posts = value("weft_http_requests_total", { method = "POST", outcome = "2xx" }) or 0
        local gets = value("weft_http_requests_total", { method = "GET", outcome = "2xx" }) or 0
        http.request { url = base .. "/multi", body = "x" }
        assert.are.equal("POST", seen[#seen].method)
        assert.are.equal(posts + 1, value("weft_http_requests_total", { method = "POST", outcome = "2xx" }))
        assert.are.equal(gets, value("weft_http_requests_total", { method = "GET", outcome = "2xx" }) or 0)
    end)

    it("answers 500 for an invalid handler result", function()
        assert.are.equal(500, http.request { url = base .. "/bad" }.status)
    end)

    it("answers 413 for a body over max_body_size", function()
        local r = http.request { method = "POST", url = base .. "/", body = string.rep("b", 2000) }
        assert.are.equal(413, r.status)
    end)

    it("answers HEAD without a body", function()
        local r = http.request { method = "HEAD", url = base .. "/" }
        assert.are.equal(200, r.status)
        assert.are.equal("", r.body)
    end)

    it("tells a handler whose client went away during its sleep (res:gone)", function()
        local err = raised(http.request, { url = base .. "/late", timeout = 0.05 })
        assert.are.equal("timeout", err.kind)
        -- the client closed its connection while the handler slept: the
        -- server saw it then, so the handler knows it before writing
        assert.is_true(eventually(function() return #gone == 1 end))
        assert.is_true(gone[1])
        assert.are.equal(0, srv:stats().connections)
        -- a client that waits is there after the same sleep
        assert.are.equal("late", http.request { url = base .. "/late" }.body)
        assert.is_false(gone[2])
    end)

    it("reuses the connection for sequential requests", function()
        for _ = 1, 5 do http.request { url = base .. "/" } end
        assert.are.equal(1, srv:stats().accepted)
    end)

    it("stops accepting after close", function()
        local port = srv.port
        srv:close()
        weft.sleep(0.01)
        local err = raised(http.request, { url = "http://127.0.0.1:" .. port .. "/", timeout = 2 })
        assert.are.equal("transient", err.kind)
    end)

    it("names the URL in a transfer error, without its userinfo", function()
        local port = srv.port
        srv:close()
        weft.sleep(0.01)
        local url = "http://alice:hunter2@127.0.0.1:" .. port .. "/p?q=1"
        local err = raised(http.request, { url = url, timeout = 2 })
        assert.are.equal("http://127.0.0.1:" .. port .. "/p?q=1", err.url)
        assert.is_nil(tostring(err):find("hunter2", 1, true))
        -- an upper-case scheme; an '@' after the authority is not userinfo
        local base = "127.0.0.1:" .. port
        err = raised(http.request, { url = "HTTPS://a:b@" .. base .. "/x", timeout = 2 })
        assert.are.equal("HTTPS://" .. base .. "/x", err.url)
        err = raised(http.request, { url = "http://" .. base .. "/p@x?a=b@c#f@g", timeout = 2 })
        assert.are.equal("http://" .. base .. "/p@x?a=b@c#f@g", err.url)
        -- with an auth.query credential: the URL as given (fragment kept),
        -- never the parameter weft added
        local key = weft.secrets.value("spec:url-query-key", "sk-url-query-canary-0123")
        err = raised(http.request, { url = "http://u:p@" .. base .. "/q?x=1#frag", timeout = 2,
                                      auth = { secret = key, query = "key" } })
        assert.are.equal("http://" .. base .. "/q?x=1#frag", err.url)
        assert.is_nil(tostring(err):find("canary", 1, true))
    end)

    it("refuses a URL without an http(s) scheme as invalid_request", function()
        for _, u in ipairs { "ftp://127.0.0.1/", "127.0.0.1/x", "file:///etc/passwd" } do
            assert.are.equal("invalid_request", raised(http.request, { url = u, timeout = 2 }).kind)
        end
    end)
end)

describe("weft.http.serve misuse", function()
    it("needs a handler", function()
        assert.matches("handler", raised(http.serve, { port = 0 }))
    end)
    it("checks the port", function()
        assert.matches("port", raised(http.serve, { port = 70000, handler = print }))
        assert.matches("port", raised(http.serve, { port = "x", handler = print }))
    end)
    it("reports a port in use as an error value", function()
        local a = http.serve { port = 0, handler = function() return {} end }
        local err = raised(http.serve, { port = a.port, handler = function() return {} end })
        assert.are.equal("invalid_request", err.kind)
        assert.matches("in use", err.message)
        a:close()
    end)
end)

-- The plugin boundary in the HTTP client (weft._http_client directly: the
-- options origin/path/query/redact are the host's, not weft.http's).
local C = require "weft._http_client"
local S = require "weft._secrets"

-- start + the wait loop of weft.http.request: response | nil, err.
local function raw(opts)
    local x, err = C.start(opts)
    if not x then return nil, err end
    while true do
        local ev, a = x:wait()
        if ev == "done" then return a end
        if ev == nil and a ~= nil then return nil, a end
    end
end

local function secret(name, value, ttl)
    local h = S.handle(name)
    assert(h:_set(value, ttl))
    return h
end

-- test/integration/faultserver.c in its own process; it exits when the
-- pipe to its stdin closes.
local function faultserver()
    local helpers = assert(os.getenv("WEFT_TEST_HELPERS"), "WEFT_TEST_HELPERS is not set (run through ctest)")
    local out = os.tmpname()
    local pipe = assert(io.popen(helpers .. "/faultserver > " .. out, "w"))
    local port
    for _ = 1, 500 do
        local f = io.open(out, "r")
        local line = f and f:read("*l")
        if f then f:close() end
        port = line and tonumber(line:match("^PORT (%d+)"))
        if port then break end
        weft.sleep(0.02)
    end
    assert(port, "faultserver did not start")
    return { url = "http://127.0.0.1:" .. port, close = function() pipe:close(); os.remove(out) end }
end

describe("weft._http_client on a configured origin", function()
    local srv, thief, base, seen, stolen
    local KEY = "sk-spec-0123456789abcdef"
    local key

    before_each(function()
        seen, stolen = {}, {}
        key = secret("spec:origin-key", KEY)
        srv = http.serve {
            port = 0,
            handler = function(req)
                seen[#seen + 1] = req
                local echo = req.headers["x-api-key"] or ""
                if req.path == "/escaped" then
                    -- the credential spelt with \u escapes only: no raw
                    -- byte of it for a redaction of the text to see
                    return { status = 200, body = '{"echo":"' .. echo:gsub(".", function(c)
                        return ("\\u%04x"):format(c:byte())
                    end) .. '","n":[1,{}],"e":[]}' }
                elseif req.path == "/not-json" then
                    return { status = 200, body = "{oops " .. echo }
                elseif req.path == "/fail" then
                    return { status = 500, body = '{"error":"x"}' }
                elseif req.path == "/rate" then
                    return { status = 200, body = '{"ok":true}', headers = {
                        ["x-echo"] = echo, ["x-dup"] = { "a", "b" },
                        ["x-ratelimit-remaining-requests"] = { "100", "1" },   -- the first counts
                        ["x-ratelimit-remaining-tokens"] = "2000",
                        ["anthropic-ratelimit-tokens-remaining"] = "5",        -- OpenAI's first
                        ["x-ratelimit-remaining-input-tokens"] = "lots",       -- no number: none,
                        ["anthropic-ratelimit-input-tokens-remaining"] = "9",  -- not this one
                        ["anthropic-ratelimit-output-tokens-remaining"] = " 7 ",
                        ["x-ratelimit-reset-requests"] = "soon",               -- unreadable: then
                        ["anthropic-ratelimit-requests-reset"] = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 60),
                        ["x-ratelimit-reset-tokens"] = "1m30.5s",
                    } }
                end
                return { status = 200, headers = { ["x-echo"] = echo },
                         body = json.encode { path = req.path, query = req.query, echo = echo } }
            end,
        }
        thief = http.serve { port = 0, handler = function(req) stolen[#stolen + 1] = req; return {} end }
        base = "http://127.0.0.1:" .. srv.port
    end)

    after_each(function()
        srv:close()
        thief:close()
    end)

    it("sends bodies whole either side of the size it copies (64 KiB) rather than holds", function()
        for _, n in ipairs { 0, 1, 64 * 1024, 64 * 1024 + 1, 300 * 1024 } do
            local body = string.rep("b", n - 1) .. (n > 0 and "!" or "")
            local r = assert(raw { origin = base, path = "/x", body = body })
            assert.are.equal(200, r.status, n)
            assert.are.equal(body, seen[#seen].body, n)
            collectgarbage() -- (a held body outlives a collection while in flight; a copy need not)
        end
    end)

    it("builds the URL on the origin's path, with path and query", function()
        local r = assert(raw { origin = base .. "/prefix/", path = "/v1/x", query = "a=1&b=2" })
        assert.are.equal(200, r.status)
        assert.are.equal("/prefix/v1/x", seen[1].path)
        assert.are.equal("a=1&b=2", seen[1].query)
        assert.are.equal(1, r.sends)
        r = assert(raw { origin = base, path = "/v1/models/claude@2024:rawPredict" })
        assert.are.equal("/v1/models/claude@2024:rawPredict", seen[2].path)
    end)

    it("refuses a path or query that is not one, sends nothing, never names the credential", function()
        local bad = {
            "@127.0.0.1:" .. thief.port .. "/steal", "v1/x", "", "/a#b", "/a b", "/a\r\nx-evil: 1",
            "/../x", "/v1/%2e%2e/admin", "/a\\b", "/a?b=1",
        }
        for _, p in ipairs(bad) do
            local r, err = raw { origin = base, path = p, auth = { secret = key, format = "Bearer {}" } }
            assert.is_nil(r, p)
            assert.are.equal("integration", err.kind, p)
            assert.are.equal("origin", err.reason, p)
            assert.is_nil(tostring(err):find(KEY, 1, true))
        end
        local r, err = raw { origin = base, path = "/x", query = "a=1#frag" }
        assert.is_nil(r)
        assert.are.equal("origin", err.reason)
        assert.matches("query", err.message)
        r, err = raw { origin = "http://user:pw@127.0.0.1:" .. srv.port, path = "/x" }
        assert.are.equal("origin", err.reason)
        assert.matches("user info", err.message)
        assert.are.same({}, seen)
        assert.are.same({}, stolen)
    end)

    it("keeps a path that only looks like an authority on the origin", function()
        local r = assert(raw { origin = base, path = "//127.0.0.1:" .. thief.port .. "/steal",
                               auth = { secret = key, header = "x-api-key" } })
        assert.are.same({}, stolen)
        assert.are.equal(1, #seen)
        assert.are.equal(200, r.status)
    end)

    it("refuses url together with origin, and path without origin", function()
        local ok, err = pcall(C.start, { url = base .. "/x", origin = base, path = "/x" })
        assert.is_false(ok)
        assert.matches("not both", tostring(err))
        ok, err = pcall(C.start, { url = base .. "/x", path = "/x" })
        assert.is_false(ok)
        assert.matches("origin", tostring(err))
    end)

    it("appends auth.query to the origin URL, encoded", function()
        local odd = secret("spec:odd", "s3cr/t v+l&x=1")
        local r = assert(raw { origin = base, path = "/q", query = "a=1", auth = { secret = odd, query = "key" } })
        assert.are.equal(200, r.status)
        assert.are.equal("a=1&key=s3cr%2Ft%20v%2Bl%26x%3D1", seen[1].query)
        r = assert(raw { origin = base, path = "/q", auth = { secret = odd, query = "key" } })
        assert.are.equal("key=s3cr%2Ft%20v%2Bl%26x%3D1", seen[2].query)
        -- a plain URL too, with its fragment dropped rather than hiding the parameter
        r = assert(raw { url = base .. "/q?x=1#frag", auth = { secret = odd, query = "key" } })
        assert.are.equal("x=1&key=s3cr%2Ft%20v%2Bl%26x%3D1", seen[3].query)
    end)

    it("refuses a credential header that the caller gives too", function()
        local cases = {
            { headers = { Authorization = "Bearer plugin" }, auth = { secret = key, format = "Bearer {}" } },
            { headers = { AUTHORIZATION = "x" }, auth = { secret = key } },
            { headers = { ["X-Api-Key"] = "plugin" }, auth = { secret = key, header = "x-api-key" } },
            { headers = { authorization = "x" }, auth = { basic = { user = "u", password = key } } },
            { auth = { { secret = key, header = "x-api-key" }, { secret = key, header = "X-API-KEY" } } },
        }
        for i, c in ipairs(cases) do
            c.origin, c.path = base, "/x"
            local r, err = raw(c)
            assert.is_nil(r, i)
            assert.are.equal("integration", err.kind, i)
            assert.are.equal("auth_header", err.reason, i)
        end
        assert.are.same({}, seen)
    end)

    it("frees the header lines when a secret is unusable after another was rendered", function()
        -- (under ASan the leak of the first rendered line fails the run)
        local a = secret("spec:a", "aaaa-first-secret")
        local unloaded = S.handle("spec:never-loaded")
        local expired = secret("spec:expired", "bbbb-expired-secret", 1e-9)
        for _, b in ipairs { unloaded, expired } do
            for _ = 1, 50 do
                local ok, err = pcall(C.start, { origin = base, path = "/x", headers = { ["x-plain"] = "1" },
                    auth = { { secret = a, header = "x-a" }, { secret = b, header = "x-b" } } })
                assert.is_false(ok)
                assert.are.equal("auth", err.kind)
            end
        end
        collectgarbage()
        collectgarbage()
        assert.are.equal(0, C.stats().in_flight)
        assert.are.same({}, seen)
    end)

    it("redacts loaded secrets from response headers and body when asked", function()
        local auth = { secret = key, header = "x-api-key" }
        local r = assert(raw { origin = base, path = "/x", auth = auth })
        assert.are.equal(KEY, r.headers["x-echo"])
        assert.are.equal(KEY, json.decode(r.body).echo)
        r = assert(raw { origin = base, path = "/x", auth = auth, redact = true })
        assert.are.equal("<secret spec:origin-key>", r.headers["x-echo"])
        assert.are.equal("<secret spec:origin-key>", json.decode(r.body).echo)
        assert.is_nil(r.body:find(KEY, 1, true))
        -- streamed: the head is redacted, the chunks are the pipeline's job
        local x = assert(C.start { origin = base, path = "/x", auth = auth, redact = true, stream = true })
        local head, body = nil, {}
        while true do
            local ev, a, b = x:wait()
            if ev == "data" then
                head = b
                body[#body + 1] = a
            elseif ev == "done" then
                break
            elseif ev == nil and a ~= nil then
                error(a)
            end
        end
        assert.are.equal("<secret spec:origin-key>", head.headers["x-echo"])
        assert.are.equal(KEY, json.decode(table.concat(body)).echo)
    end)

    it("decodes a 2xx answer from its bytes with json = true, redacted like the body would be", function()
        local auth = { secret = key, header = "x-api-key" }
        local r = assert(raw { origin = base, path = "/x", auth = auth, json = true })
        assert.is_nil(r.body)
        assert.are.equal(KEY, r.json.echo)
        assert.are.equal("/x", r.json.path)
        r = assert(raw { origin = base, path = "/x", auth = auth, json = true, redact = true })
        assert.are.equal("<secret spec:origin-key>", r.json.echo)
        -- a credential spelt in \u escapes is redacted once decoded; empty
        -- containers come back marked
        r = assert(raw { origin = base, path = "/escaped", auth = auth, json = true })
        assert.are.equal(KEY, r.json.echo)
        r = assert(raw { origin = base, path = "/escaped", auth = auth, json = true, redact = true })
        assert.are.equal("<secret spec:origin-key>", r.json.echo)
        assert.are.equal('{"e":[],"echo":"<secret spec:origin-key>","n":[1,{}]}', json.encode(r.json, { sort_keys = true }))
        -- text that is not JSON: the body (redacted), and why
        r = assert(raw { origin = base, path = "/not-json", auth = auth, json = true, redact = true })
        assert.is_nil(r.json)
        assert.are.equal("{oops <secret spec:origin-key>", r.body)
        assert.matches("at character 2", r.json_error)
        -- not 2xx: the body as it is, not decoded
        r = assert(raw { origin = base, path = "/fail", json = true })
        assert.are.equal(500, r.status)
        assert.is_nil(r.json)
        assert.are.equal('{"error":"x"}', r.body)
        -- through weft.http.request too (a known option)
        r = http.request { url = base .. "/x", json = true }
        assert.are.equal("/x", r.json.path)
    end)

    it("makes a json answer's headers when first read, and reads its rate-limit headers without them", function()
        local auth = { secret = key, header = "x-api-key" }
        local function readings(r)
            local rr, rt, ri, ro, sr, st = C.rate(r, true)
            assert.is_true(sr > 55 and sr <= 61, tostring(sr))
            return { rr, rt, ri or "none", ro, st, (select("#", C.rate(r))) }
        end
        local want = { 100, 2000, "none", 7, 90.5, 4 }
        local r = assert(raw { origin = base, path = "/rate", auth = auth, json = true, redact = true })
        assert.is_true(r.json.ok)
        local keys = {}
        for k in pairs(r) do keys[#keys + 1] = k end
        table.sort(keys)
        assert.are.same({ "http_version", "json", "sends", "status" }, keys)
        assert.are.same(want, readings(r))
        assert.is_nil(rawget(r, "headers"))
        assert.is_nil(r.no_such_field)
        -- made when read: every header, a repeated one as a list, redacted
        local h = r.headers
        assert.are.equal(h, rawget(r, "headers"))
        assert.is_nil(getmetatable(r))
        assert.are.equal("<secret spec:origin-key>", h["x-echo"])
        assert.are.same({ "a", "b" }, h["x-dup"])
        assert.are.same({ "100", "1" }, h["x-ratelimit-remaining-requests"])
        -- the same readings from the table, and from an answer without json
        assert.are.same(want, readings(r))
        local e = assert(raw { origin = base, path = "/rate", auth = auth })
        assert.are.equal("table", type(rawget(e, "headers")))
        assert.are.same(want, readings(e))
        -- redact = true with no secret in the head (none sent to echo): the
        -- lines as received, for rate() and for the table alike
        local plain = assert(raw { origin = base, path = "/rate", json = true, redact = true })
        assert.are.same(want, readings(plain))
        assert.are.same({ "a", "b" }, plain.headers["x-dup"])
        assert.are.equal("2000", plain.headers["x-ratelimit-remaining-tokens"])
        -- the response's metatable is a plain table a script can reach: its
        -- __index called on anything else, or with its lhead put behind
        -- another value, does nothing
        local mt = getmetatable(assert(raw { origin = base, path = "/rate", json = true }))
        local smt = getmetatable("")
        smt[1] = mt[1]
        local ok, v = pcall(mt.__index, "a string", "headers")
        smt[1] = nil
        assert.is_true(ok)
        assert.is_nil(v)
        assert.is_nil(mt.__index(42, "headers"))
        -- none from a table without headers (an error value)
        assert.are.equal(0, select("#", C.rate {}))
    end)

    it("reads a secret's state in one call before sending (_secrets.state)", function()
        local h = secret("spec:state", "sk-state-0123456789")
        local loaded, version = S.state(h)
        assert.is_true(loaded)
        assert.are.equal(h.version, version)
        assert(h:_set("sk-state-abcdef012345"))
        assert.are.equal(version + 1, select(2, S.state(h)))
        assert.are.equal(false, (S.state(S.handle("env:WEFT_SPEC_STATE_UNSET")))) -- never loaded
        for _, v in ipairs { {}, "sk-state-0123456789", 1, C.start, false } do
            assert.are.equal(0, select("#", S.state(v)))
        end
    end)

    it("redacts through weft._secrets.redact, every form, untouched text as is", function()
        assert.are.equal("k=<secret spec:origin-key>;", S.redact("k=" .. KEY .. ";"))
        local plain = string.rep("nothing to see here ", 50)
        assert.are.equal(plain, S.redact(plain))
    end)
end)

describe("weft.http.request sends", function()
    local fs
    setup(function() fs = faultserver() end)
    teardown(function() fs.close() end)

    it("is 1 normally, 2 when libcurl resent the request on a fresh connection", function()
        local r = http.request { url = fs.url .. "/once" }
        assert.are.equal(200, r.status)
        assert.are.equal(1, r.sends)
        assert.are.equal(1, json.decode(r.body).seen)
        -- same kept-alive connection: the server reads it and drops it
        r = http.request { url = fs.url .. "/once" }
        assert.are.equal(200, r.status)
        assert.are.equal(2, r.sends)
        assert.are.equal(3, json.decode(r.body).seen) -- the server saw it twice
        r = http.request { url = fs.url .. "/once?rst=1" }
        assert.are.equal(2, r.sends)
        assert.are.equal(5, json.decode(r.body).seen)
    end)

    it("is on transport errors too", function()
        assert.are.equal(200, http.request { url = fs.url .. "/ok" }.status)
        local ok, err = pcall(http.request, { url = fs.url .. "/close" })
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        assert.are.equal(2, err.sends)
        ok, err = pcall(http.request, { url = fs.url .. "/close" }) -- a fresh connection
        assert.are.equal(1, err.sends)
        local port = http.serve { port = 0, handler = function() return {} end }
        local p = port.port
        port:close() -- the listener is closed at once: nothing answers on p
        ok, err = pcall(http.request, { url = "http://127.0.0.1:" .. p .. "/", timeout = 2 })
        assert.are.equal("transient", err.kind)
        assert.are.equal(0, err.sends)
    end)
end)
