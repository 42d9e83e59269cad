-- http_spec.lua: weft.http.serve and weft.http.request together, in one
-- process (the two sides are tasks on the same loop).
local http, json = weft.http, weft.json

local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error")
    return err
end

describe("weft.http.serve", function()
    local srv, base, seen

    before_each(function()
        seen = {}
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
                elseif req.path == "/multi" then
                    return { status = 201, headers = { ["set-cookie"] = { "a=1", "b=2" }, ["x-one"] = "1" } }
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
