-- redis_spec.lua: weft.redis (lua/weft/redis.lua, runtime/lua_redis.c)
-- against a real redis-server started here (a UNIX socket and a free TCP
-- port, a password from the canary), stopped at the end: replies, pipelines,
-- error replies, a wrong password, per-command timeouts that leave other
-- commands alone, a stopped server (no call waits past its timeout) and a
-- restarted one (reconnect after the backoff).
local CANARY = assert(os.getenv("WEFT_CANARY_KEY"), "run through ctest (WEFT_CANARY_KEY)")
local json = weft.json

local rs = require "redis_server" ()
local dir, sock = rs.dir, rs.sock
local port = rs.port
local start_redis, stop_redis, pid = rs.start, rs.stop, rs.pid

local function password() return weft.secrets.value("redis-spec", CANARY) end

describe("weft.redis", function()
    setup(start_redis)
    teardown(function()
        stop_redis()
        rs.remove()
    end)

    it("sends commands and pipelines over TCP and a UNIX socket; replies keep their types", function()
        for _, url in ipairs { "redis://127.0.0.1:" .. port .. "/1", "unix://" .. sock .. "?db=1" } do
            local r = weft.redis.connect { url = url, password = password() }
            assert.are.equal("PONG", r:ping())
            assert.are.equal("OK", r:call("SET", "k", "v"))
            assert.are.equal("v", r:call("GET", "k"))
            assert.is_nil(r:call("GET", "missing"))
            assert.are.equal(2, r:call("RPUSH", "l" .. url, "a", 7))
            assert.are.same({ "a", "7" }, r:call("LRANGE", "l" .. url, 0, -1))
            local rs = r:pipeline { { "INCR", "n" }, { "MGET", "k", "missing" }, { "HGET", "k", "x" }, { "EXPIRE", "n", 60 } }
            assert.is_number(rs[1])
            assert.are.same({ "v", json.null }, rs[2])
            assert.are.equal("invalid_request", rs[3].kind) -- WRONGTYPE, in its place
            assert.matches("WRONGTYPE", rs[3].message)
            assert.are.equal(1, rs[4])
            local ok, err = pcall(r.call, r, "NOSUCHCOMMAND")
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
            assert.are.equal("redis", err.reason)
            r:close()
        end
        -- db 1 was selected: db 0 does not have the key
        local r0 = weft.redis.connect { url = "redis://127.0.0.1:" .. port, password = password() }
        assert.is_nil(r0:call("GET", "k"))
        r0:close()
    end)

    it("tasks that need a connection while one is being made share it: one connect for many callers", function()
        local admin = weft.redis.connect { url = "unix://" .. sock, password = password() }
        local function connections()
            return tonumber(admin:call("INFO", "stats"):match("total_connections_received:(%d+)"))
        end
        local before = connections()
        local r = weft.redis.connect { url = "redis://127.0.0.1:" .. port, password = password() }
        local tasks = {}
        for i = 1, 20 do tasks[i] = weft.spawn(function() return r:call("ECHO", "t" .. i) end) end
        for i, t in ipairs(tasks) do assert.are.equal("t" .. i, t:wait()) end
        -- the 20 callers' connect, and the admin's INFO on its own connection made before
        assert.are.equal(before + 1, connections())
        r:close()
        admin:close()
    end)

    it("refuses arguments it cannot send and commands that are not lists, before sending anything", function()
        local r = weft.redis.connect { url = "unix://" .. sock, password = password() }
        r:ping()
        for _, bad in ipairs { function() return r:call("SET", "k", {}) end, function() return r:call() end,
                               function() return r:pipeline {} end, function() return r:pipeline { "GET" } end } do
            local ok, err = pcall(bad)
            assert.is_false(ok)
            assert.matches("weft.redis", tostring(type(err) == "table" and err.message or err))
        end
        assert.are.equal("PONG", r:ping()) -- the connection is still good
        for _, o in ipairs { { url = "http://x" }, { url = "redis://h", speed = 1 }, { url = "redis://h", timeout = 0 },
                             { url = "redis://h", password = 42 } } do
            local ok, err = pcall(weft.redis.connect, o)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
        end
        r:close()
    end)

    it("a wrong password is an auth error that never shows the password; none in the url", function()
        local r = weft.redis.connect { url = "redis://127.0.0.1:" .. port, password = weft.secrets.value("wrong", "not-the-password-123") }
        local ok, err = pcall(r.ping, r)
        assert.is_false(ok)
        assert.are.equal("auth", err.kind)
        assert.is_nil(tostring(err.message):find("not-the-password-123", 1, true))
        local ok2, err2 = pcall(weft.redis.connect, { url = "redis://:secret@127.0.0.1:" .. port })
        assert.is_false(ok2)
        assert.matches("must not carry credentials", err2.message)
        assert.is_nil(err2.message:find("secret@", 1, true))
    end)

    it("a command past its timeout fails alone: others on other connections go on", function()
        local a = weft.redis.connect { url = "unix://" .. sock, password = password(), timeout = 0.1 }
        local b = weft.redis.connect { url = "unix://" .. sock, password = password() }
        a:ping()
        local t = weft.spawn(function() return pcall(a.call, a, "BLPOP", "nothing-here", 0) end)
        for _ = 1, 100 do assert.are.equal("PONG", b:ping()) end -- answered while a's command waits
        local ok, err = t:wait()
        assert.is_false(ok)
        assert.are.equal("timeout", err.kind)
        a:close()
        b:close()
    end)

    it("a stopped server: calls fail at their timeout; it resumes after; a restarted one is reconnected", function()
        local r = weft.redis.connect { url = "redis://127.0.0.1:" .. port, password = password(), timeout = 0.2,
                                       connect_timeout = 0.2 }
        assert.are.equal("PONG", r:ping())
        os.execute("kill -STOP " .. pid())
        local t0 = weft.now()
        local ok, err = pcall(r.ping, r)
        os.execute("kill -CONT " .. pid())
        assert.is_false(ok)
        assert.are.equal("timeout", err.kind)
        assert.is_true(weft.now() - t0 >= 0.2)
        local pong
        for _ = 1, 200 do
            local ok2, v = pcall(r.ping, r)
            if ok2 then pong = v break end
            weft.sleep(0.02)
        end
        assert.are.equal("PONG", pong)
        -- killed and started again: transient errors, then the same client works
        stop_redis()
        local ok3, err3 = pcall(r.ping, r)
        assert.is_false(ok3)
        assert.are.equal("transient", err3.kind)
        start_redis()
        for _ = 1, 300 do
            local ok4, v = pcall(r.ping, r)
            if ok4 then pong = v break end
            pong = nil
            weft.sleep(0.02)
        end
        assert.are.equal("PONG", pong)
        r:close()
    end)

    it("an idle connection keeps nothing running: a script that is done exits", function()
        local f = assert(io.open(dir .. "/idle.lua", "w"))
        f:write(([[
local r = weft.redis.connect { url = "unix://%s", password = weft.secrets.value("p", os.getenv("WEFT_CANARY_KEY")) }
print(r:ping())
]]):format(sock))
        f:close()
        local weft_bin = assert(os.getenv("WEFT"), "WEFT")
        local p = io.popen("timeout 60 " .. weft_bin .. " run " .. dir .. "/idle.lua 2>&1; echo rc=$?")
        local out = p:read("*a")
        p:close()
        assert.matches("PONG\nrc=0", out)
    end)
end)
