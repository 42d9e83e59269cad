--- weft.redis: a Redis client on weft's loop (hiredis, async): a command
--- suspends only the task that sent it.
---
--- ```lua
--- local r = weft.redis.connect { url = "redis://127.0.0.1:6379/0",
---                                password = weft.secret("env:REDIS_PASSWORD") }
--- r:call("SET", "greeting", "hello")              -- "OK"
--- print(r:call("GET", "greeting"))                 -- hello
--- local replies = r:pipeline { { "INCR", "n" }, { "EXPIRE", "n", 60 } }  -- one round trip
--- r:close()
--- ```
---
--- `url`: `redis://HOST[:PORT][/DB]` (port 6379, db 0) or
--- `unix:///PATH[?db=N]`. A password never goes in the URL (it would end up
--- in configuration text and logs): `password` is a secret handle
--- (`weft.secret(...)`, `weft.secrets.value(...)`) or a reference such as
--- `"env:REDIS_PASSWORD"`; the host sends it with AUTH and it is redacted
--- from everything weft prints. `username` (Redis 6 ACL) is optional.
---
--- Replies: strings (bulk and status), numbers (integers), nil (a missing
--- value; weft.json.null inside an array), lists. `r:call` raises an error
--- reply as an error value (kind `auth` for a refused password, else
--- `invalid_request`, reason "redis"); `r:pipeline` puts each error reply in
--- its place in the list and raises only when the whole round trip failed.
---
--- Every command has its own timeout (`timeout`, 1 s): past it the command
--- fails with kind `timeout` while the others go on (hiredis 0.14 has no
--- timeouts of its own). A command that has to connect first takes no
--- longer in all than the larger of `timeout` and `connect_timeout`
--- (authenticating included). A lost connection fails what was waiting with kind
--- `transient`; the next command connects again, no sooner than a backoff
--- (0.05 s doubling to 5 s) after a failed attempt, failing at once with
--- kind `transient` meanwhile: no call ever waits on Redis longer than its
--- timeout. The connection keeps nothing alive: a script that is done exits.
local R = require "weft._redis"
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"
local T = require "weft._task"

local type, tostring, tonumber, error, pcall, setmetatable = type, tostring, tonumber, error, pcall, setmetatable
local format, min, max = string.format, math.min, math.max
local now, suspend, wake, current = T.now, T.suspend, T.wake, T.current
local ipairs = ipairs
local collect = R.collector(json.null)

local M = {}

local BACKOFF_MIN, BACKOFF_MAX = 0.05, 5

local function fail(kind, msg, fields)
    error(errors.new(kind, msg, fields), 0)
end

-- {host=, port=, path=, db=, shown=} from a URL, or raises invalid_request.
local function parse_url(url)
    if type(url) ~= "string" then fail("invalid_request", "weft.redis: url must be a string such as redis://127.0.0.1:6379/0") end
    local rest = url:match("^unix://(/.*)$") or url:match("^redis%+unix://(/.*)$")
    if rest then
        local path, q = rest:match("^([^?]+)%??(.*)$")
        local db = tonumber(q and q:match("db=(%d+)") or "0")
        return { path = path, db = db, shown = "unix://" .. path }
    end
    local auth, host, port, db = url:match("^rediss?://([^@/]*@)([^:/]+):?(%d*)/?(%d*)$")
    if not host then
        host, port, db = url:match("^redis://([^:/@]+):?(%d*)/?(%d*)$")
    end
    if url:match("^rediss://") then fail("invalid_request", "weft.redis: TLS (rediss://) is not supported by hiredis 0.14") end
    if auth then
        fail("invalid_request", "weft.redis: the url must not carry credentials: give password = weft.secret(\"env:NAME\") (or another secret reference)")
    end
    if not host then
        fail("invalid_request", format("weft.redis: cannot read url %q (redis://HOST[:PORT][/DB] or unix:///PATH[?db=N])", url))
    end
    port = tonumber(port ~= "" and port or "6379")
    if port < 1 or port > 65535 then fail("invalid_request", "weft.redis: port must be 1..65535") end
    return { host = host, port = port, db = tonumber(db ~= "" and db or "0"), shown = format("redis://%s:%d", host, port) }
end

local Client = {}
Client.__index = Client

function Client:__tostring() return "weft.redis(" .. self.where.shown .. ")" end

-- A live connection, connecting (and authenticating) when there is none.
-- Tasks that need one while a connect is under way wait for that one
-- (one connection per client, whoever shares it).
function Client:_conn()
    local c = self.conn
    if c and c:state() == "connected" then return c end
    if self.closed then fail("invalid_request", "weft.redis: the client is closed") end
    local waiting = self.connecting
    if waiting then
        waiting[#waiting + 1] = current()
        local _, err = suspend("redis connect")
        if err then error(err, 0) end
        return self:_conn()
    end
    self.connecting = {}
    local ok, res = pcall(self._connect, self)
    local woken = self.connecting
    self.connecting = nil
    for _, t in ipairs(woken) do wake(t) end
    if not ok then error(res, 0) end
    return res
end

function Client:_connect()
    local t = now()
    if self.retry_at and t < self.retry_at then
        fail("transient", format("redis at %s unavailable: %s (next try in %.2g s)", self.where.shown,
            self.why or "?", self.retry_at - t), { reason = "redis_down" })
    end
    local w = self.where
    local c = w.path and R.open_unix(w.path) or R.open(w.host, w.port)
    c:await_connect(self.connect_timeout)
    local st, why = c:state()
    if st ~= "connected" then
        c:close()
        return self:_down(why or st)
    end
    -- AUTH and SELECT in one round trip, before anything else
    local cmds = {}
    if self.password then
        require("weft.secrets").ensure(self.password)
        cmds[#cmds + 1] = self.username and { "AUTH", self.username, self.password } or { "AUTH", self.password }
    end
    if w.db and w.db ~= 0 then cmds[#cmds + 1] = { "SELECT", w.db } end
    if #cmds > 0 then
        -- within what is left of the connect timeout: connecting and
        -- authenticating together take no longer than it
        local left = self.connect_timeout - (now() - t)
        local replies, kind, msg
        if left > 0 then
            replies, kind, msg = self:_roundtrip(c, cmds, min(self.timeout, left))
        else
            kind, msg = "timeout", "no time left to authenticate within the connect timeout"
        end
        if not replies then c:close() return self:_down(msg, kind) end
        for _, r in ipairs(replies) do
            if errors.is(r) then
                c:close()
                self.conn = nil
                if r.kind == "auth" then
                    -- not a passing outage: said once, not retried in a loop
                    fail("auth", format("redis at %s refused the password (%s)", w.shown, r.message), { reason = "redis_auth" })
                end
                fail(r.kind, format("redis at %s: %s", w.shown, r.message), { reason = "redis" })
            end
        end
    end
    if self.down then
        log.info("redis connected again", { redis = w.shown })
        self.down = false
    end
    self.conn, self.retry_at, self.backoff, self.why = c, nil, nil, nil
    return c
end

-- A failed connect: the next one no sooner than the backoff.
function Client:_down(why, kind)
    self.conn = nil
    self.backoff = self.backoff and min(BACKOFF_MAX, self.backoff * 2) or BACKOFF_MIN
    self.retry_at = now() + self.backoff
    self.why = why
    if not self.down then
        self.down = true
        log.warn("redis unavailable", { redis = self.where.shown, error = tostring(why) })
    end
    fail(kind or "transient", format("cannot connect to redis at %s: %s", self.where.shown, tostring(why)),
        { reason = "redis_down" })
end

-- Send `cmds` and wait for the replies: replies, or nil, kind, why.
function Client:_roundtrip(c, cmds, timeout)
    local op, why = c:send(timeout or self.timeout, cmds)
    if not op then return nil, "transient", why end
    c:await(op)
    return collect(c, op)
end

-- Run `cmds` on the connection: the replies, or raises.
function Client:_run(cmds)
    local t0 = now()
    local c = self:_conn()
    -- a command that had to wait for a connect first gets what is left of
    -- the larger of the two timeouts: connecting and the command together
    -- take no longer
    local timeout = self.timeout
    local left = max(self.timeout, self.connect_timeout) - (now() - t0)
    if left < timeout then
        if left <= 0 then
            fail("timeout", format("redis at %s: connecting took the command's time", self.where.shown),
                { reason = "redis_timeout" })
        end
        timeout = left
    end
    local replies, kind, why = self:_roundtrip(c, cmds, timeout)
    if replies then return replies end
    if kind == "transient" then
        self.conn = nil
        c:close()
    end
    fail(kind, format("redis at %s: %s", self.where.shown, why), { reason = kind == "timeout" and "redis_timeout" or "redis_down" })
end

--- Run one command: its reply, or raises (an error reply as an error value).
---@return any
function Client:call(...)
    local cmd = { ... }
    if cmd[1] == nil then fail("invalid_request", "weft.redis: call needs a command") end
    local r = self:_run({ cmd })[1]
    if errors.is(r) then error(r, 0) end
    return r
end

--- Run commands in one round trip: the list of replies (an error reply as
--- an error value in its place); raises when the round trip itself failed.
---@param cmds any[][] lists of arguments
---@return any[]
function Client:pipeline(cmds)
    if type(cmds) ~= "table" or cmds[1] == nil then fail("invalid_request", "weft.redis: pipeline needs a list of commands") end
    return self:_run(cmds)
end

--- Close the connection (what waits on it fails with kind `transient`).
function Client:close()
    self.closed = true
    if self.conn then self.conn:close() end
    self.conn = nil
end

---@class weft.RedisOptions
---@field url string redis://HOST[:PORT][/DB] or unix:///PATH[?db=N]
---@field password? userdata|string a secret handle or reference (never in the url)
---@field username? string Redis 6 ACL user
---@field timeout? number seconds a command may take (1)
---@field connect_timeout? number seconds a connect may take (1)

--- A client; it connects on first use (or now with `r:ping()`).
---@param opts weft.RedisOptions
function M.connect(opts)
    if type(opts) ~= "table" then fail("invalid_request", "weft.redis.connect: expected {url = ..., password = ...}") end
    for k in pairs(opts) do
        if k ~= "url" and k ~= "password" and k ~= "username" and k ~= "timeout" and k ~= "connect_timeout" then
            fail("invalid_request", "weft.redis.connect: unknown option '" .. tostring(k) .. "'")
        end
    end
    local password = opts.password
    if type(password) == "string" then password = require("weft.secrets").secret(password) end
    if password ~= nil and not require("weft.secrets").is(password) then
        fail("invalid_request", "weft.redis.connect: password must be a secret handle or a reference such as env:NAME")
    end
    local function secs(k, d)
        local v = opts[k]
        if v == nil then return d end
        if type(v) ~= "number" or not (v > 0) or v == math.huge then
            fail("invalid_request", "weft.redis.connect: " .. k .. " must be seconds > 0")
        end
        return v
    end
    return setmetatable({ where = parse_url(opts.url), password = password, username = opts.username,
                          timeout = secs("timeout", 1), connect_timeout = secs("connect_timeout", 1) }, Client)
end

--- PING: "PONG" (connects when needed).
function Client:ping() return self:call("PING") end

M._parse_url = parse_url

return M
