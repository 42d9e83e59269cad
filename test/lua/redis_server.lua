-- redis_server.lua: a real redis-server for specs, on a free TCP port of
-- 127.0.0.1 and a UNIX socket in a temporary directory, with the canary as
-- its password.
--
--   local rs = require "redis_server" ()   -- rs.port, rs.sock, rs.url, rs.unix_url, rs.password (the value)
--   rs.start(); rs.stop(); rs.pid(); rs.remove()

-- a free TCP port: one the kernel gave a listener, closed again
local function free_port()
    local srv = weft.http.serve { port = 0, handler = function() return { status = 200 } end }
    local p = srv.port
    srv:close()
    return p
end

return function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local rs = { dir = dir, sock = dir .. "/redis.sock", password = assert(os.getenv("WEFT_CANARY_KEY")) }
    rs.port = free_port()
    rs.url = "redis://127.0.0.1:" .. rs.port
    rs.unix_url = "unix://" .. rs.sock
    function rs.start()
        local cmd = ("redis-server --port %d --bind 127.0.0.1 --unixsocket %s --requirepass %s --daemonize yes "
            .. "--pidfile %s/redis.pid --dir %s --save '' --appendonly no --logfile %s/redis.log"):format(
            rs.port, rs.sock, rs.password, dir, dir, dir)
        assert(os.execute(cmd) == 0, "redis-server did not start")
        for _ = 1, 500 do
            local f = io.open(dir .. "/redis.pid")
            if f then f:close() end
            if f and os.execute("test -S " .. rs.sock) == 0 then return end
            weft.sleep(0.01)
        end
        error("redis-server did not come up")
    end
    function rs.pid()
        local f = assert(io.open(dir .. "/redis.pid"))
        local p = f:read("*n")
        f:close()
        return p
    end
    function rs.stop()
        local f = io.open(dir .. "/redis.pid")
        if not f then return end
        local p = f:read("*n")
        f:close()
        os.execute("kill " .. p .. " 2>/dev/null")
        for _ = 1, 500 do
            if not io.open(dir .. "/redis.pid") then return end
            weft.sleep(0.01)
        end
    end
    function rs.remove() os.execute("rm -rf " .. dir) end
    return rs
end
