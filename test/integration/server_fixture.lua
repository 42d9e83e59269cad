-- server_fixture.lua: a weft.http.serve server used by http_server_test.sh.
-- Prints "PORT <n>" and serves until interrupted (SIGINT -> exit 130).
local json = weft.json

local requests = 0
local srv = weft.http.serve {
    host = "127.0.0.1", port = 0,
    max_header_size = 16 * 1024,
    max_body_size = 1024 * 1024,
    handler = function(req, res)
        requests = requests + 1
        if req.path == "/hello" then
            return { status = 200, headers = { ["content-type"] = "text/plain" }, body = "hello\n" }
        elseif req.path == "/echo" then
            return {
                status = 200,
                headers = { ["content-type"] = "application/json" },
                body = json.encode({ method = req.method, path = req.path, query = req.query,
                                     body = req.body, headers = req.headers }, { sort_keys = true }),
            }
        elseif req.path == "/slow" then
            weft.sleep(tonumber(req.query and req.query:match("ms=(%d+)") or 200) / 1000)
            return { status = 200, body = "slow\n" }
        elseif req.path == "/stream" then
            res:start(200, { ["content-type"] = "text/event-stream" })
            for i = 1, 3 do
                res:write("data: " .. i .. "\n\n")
                weft.sleep(0.01)
            end
            res:finish()
            return
        elseif req.path == "/fail" then
            error("handler exploded")
        elseif req.path == "/count" then
            return { status = 200, body = tostring(requests) }
        end
        return { status = 404, body = "not found\n" }
    end,
}
io.stdout:write("PORT ", srv.port, "\n")
io.stdout:flush()
