--- weft.shared_cache: the store of the `cache` policy in Redis (a cache
--- model's `shared`), so every weft process configured with the same model
--- finds the answers the others got. Same interface as weft.cache (`get`,
--- `put`, `delete`, `stats`), plus `lock`, `await` and `unlock` for single
--- flight across processes.
---
--- ```lua
--- local c = require("weft.shared_cache").new("faq", { client = r, ttl = 3600 })
--- c:put(key, { result = res, events = events })  -- JSON, SET ... PX ttl
--- local entry = c:get(key)                         -- nil: absent, expired, or Redis failed
--- ```
---
--- An entry is `{weft:cache:NAME}:v1:` followed by the SHA-256 of the cache
--- key (the request as JSON: a digest keeps Redis keys short whatever the
--- prompt, and two requests never share one), its value the entry as JSON
--- (weft.json: null, empty arrays and objects and numbers come back as they
--- went), with the store's time to live. `v1` is the layout of the value:
--- a weft that stores another layout uses other keys. The keys of a model
--- share one hash tag, so one Redis Cluster slot. No copy is kept in the
--- process: every lookup is one round trip, and what Redis holds is the
--- only answer (`cache = "refresh"` in one process is seen by all).
---
--- An entry whose JSON is longer than `max_entry_bytes` (1 MiB), or that is
--- not JSON (a NaN in a result), is not stored: counted in
--- weft_cache_not_stored_total{cache, reason = "too_big" | "not_json"}.
---
--- Single flight across processes, best effort: on a miss the caller takes
--- `...:lock` (SET NX PX, for at most its deadline and 60 s) and asks the
--- provider; a caller of another process that finds the lock taken looks
--- for the answer every 50 ms (`await`) until it is there, the lock is gone
--- (the call failed: errors are not stored), its deadline, or 5 s, then
--- asks the provider itself. A process that dies holding the lock delays
--- the others by those 5 s at most.
---
--- When Redis fails (an error, or no answer within the command timeout),
--- a lookup is a miss and nothing is stored: the call goes to the provider.
--- Each failure is counted in weft_redis_errors_total{redis, kind}; the
--- change of state is logged at warn (once, and once when Redis answers
--- again). Meanwhile Redis is asked again at most every 0.5 s, only by
--- lookups, so a call waits on a failing Redis once, for at most the
--- command timeout.
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"
local metrics = require "weft.metrics"
local T = require "weft._task"
local sha256 = require("weft._digest").sha256_hex

local type, tostring, pcall, error, setmetatable = type, tostring, pcall, error, setmetatable
local format, floor, min, max = string.format, math.floor, math.min, math.max
local now, sleep = T.now, T.sleep

local M = {}

--- Seconds a caller looks for another process's answer at most, and how
--- often.
M.WAIT, M.POLL = 5, 0.05
--- Seconds a lock lives at most (a caller without a deadline).
M.LOCK_TTL = 60
-- Seconds between tries while Redis fails.
local RETRY = 0.5

local shared_limits = require "weft.shared_limits"
local redis_errors = shared_limits.redis_errors
local not_stored = metrics.counter("weft_cache_not_stored_total",
    "Answers a shared cache did not store, by reason (too_big, not_json).", { "cache", "reason" })

-- KEYS: the lock. ARGV: the holder's token. Deletes the lock when it is
-- still the holder's (it may have expired and been taken by another).
M.UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

local Store = {}
Store.__index = Store

local release -- (self, key, token): below, with unlock

---@class weft.SharedCacheOptions
---@field client table a weft.redis client (weft._config.redis_client's)
---@field key? string the name in the keys (the model's name)
---@field ttl? number seconds an entry lives (3600)
---@field max_entry_bytes? number the largest JSON stored (1 MiB)

--- The store of cache model `name`.
---@param name string
---@param opts weft.SharedCacheOptions
function M.new(name, opts)
    if type(opts) ~= "table" or type(opts.client) ~= "table" then error("shared_cache.new: expected {client = ...}", 2) end
    local r = opts.client
    return setmetatable({
        name = name, redis = r, shown = r.where.shown, ttl = opts.ttl or 3600,
        max_entry_bytes = opts.max_entry_bytes or 1024 * 1024,
        prefix = format("{weft:cache:%s}:v1:", opts.key or name),
        -- a token per process and store: the lock's value, so only its holder deletes it
        token = format("%s-%s", shared_limits.process_id(), tostring({}):match("0x(%x+)") or "s"),
        held = {}, n = 0, degraded = false, retry_at = 0,
        stored = 0, too_big = 0, not_json = 0, errors = 0,
    }, Store)
end

-- The Redis key of cache key `key`; the last one is remembered, as a
-- call asks for it up to three times (get, lock, put) and a long prompt
-- takes a while to digest.
function Store:_key(key)
    if key ~= self.last then
        self.last, self.last_k = key, self.prefix .. sha256(key)
    end
    return self.last_k
end

-- Whether to ask Redis now: not while it fails, but again every RETRY s.
function Store:_usable() return not self.degraded or now() >= self.retry_at end

-- A Redis call failed: counted, the change of state logged. A cancelled
-- caller's error is no Redis failure: raised again when `raise`.
function Store:_failed(err, raise)
    if errors.is(err) and err.kind == "cancelled" then
        if raise then error(err, 0) end
        return
    end
    local kind = errors.is(err) and err.kind or "integration"
    redis_errors:inc(1, self.shown, kind)
    self.errors = self.errors + 1
    self.retry_at = now() + RETRY
    if not self.degraded then
        self.degraded = true
        -- the client's messages name the server (host and port), never the password
        log.warn("shared cache: Redis fails, lookups are misses and answers are not stored", { cache = self.name,
            redis = self.shown, error = errors.is(err) and err.message or tostring(err) })
    end
end

function Store:_ok()
    if self.degraded then
        self.degraded = false
        log.warn("shared cache: Redis answers again", { cache = self.name, redis = self.shown })
    end
end

-- The entry in a stored value, or nil (another layout, or damaged: a miss).
local function decoded(v)
    if type(v) ~= "string" then return nil end
    local ok, e = pcall(json.decode, v)
    if ok and type(e) == "table" and type(e.result) == "table" then return e end
    return nil
end

--- The entry of `key`, or nil: absent, expired, or Redis failed (a miss).
--- Raises only when the caller is cancelled.
---@param key string
function Store:get(key)
    if not self:_usable() then return nil end
    local r = self.redis
    local ok, v = pcall(r.call, r, "GET", self:_key(key))
    if not ok then return self:_failed(v, true) end
    self:_ok()
    return decoded(v)
end

--- Keep `value` ({result=, events=}) under `key` for `ttl` (the store's
--- unless given) seconds, releasing this store's lock of `key` in the same
--- round trip. `bytes` is not used: the size is the JSON's. False when not
--- stored (too big, not JSON, Redis failing). Never raises.
---@param key string
---@param value table
---@param bytes? integer
---@param ttl? number
---@return boolean
function Store:put(key, value, bytes, ttl)
    ttl = ttl or self.ttl
    local ok, text = pcall(json.encode, value)
    local why = not ok and "not_json" or #text > self.max_entry_bytes and "too_big" or nil
    if why then
        self[why] = self[why] + 1
        not_stored:inc(1, self.name, why)
    end
    local token = self.held[key]
    self.held[key] = nil
    -- while Redis fails only lookups ask it (a lock left behind expires)
    if self.degraded then return false end
    local k, cmds = self:_key(key), {}
    if not why and ttl > 0 then cmds[1] = { "SET", k, text, "PX", max(1, floor(ttl * 1000)) } end
    if token then cmds[#cmds + 1] = { "EVAL", M.UNLOCK, 1, k .. ":lock", token } end
    if #cmds == 0 then return false end
    local r = self.redis
    local pok, res = pcall(r.pipeline, r, cmds)
    if not pok then
        if token and errors.is(res) and res.kind == "cancelled" then
            -- every wait of a cancelled task fails: another task lets go
            T.spawn(release, self, key, token)
        end
        self:_failed(res)
        return false
    end
    self:_ok()
    if cmds[1][1] ~= "SET" or res[1] ~= "OK" then return false end
    self.stored = self.stored + 1
    return true
end

--- Forget `key` (and this store's lock of it). Never raises.
---@param key string
function Store:delete(key)
    self.held[key] = nil
    local r = self.redis
    local ok, err = pcall(r.call, r, "DEL", self:_key(key))
    if ok then self:_ok() else self:_failed(err) end
end

--- Take the lock of `key` for at most `ttl` seconds (M.LOCK_TTL): true
--- when taken (this caller asks the provider), false when another holds
--- it, nil when Redis fails. Raises only when the caller is cancelled.
---@param key string
---@param ttl? number
---@return boolean?
function Store:lock(key, ttl)
    if not self:_usable() then return nil end
    ttl = min(ttl or M.LOCK_TTL, M.LOCK_TTL)
    self.n = self.n + 1
    local token = self.token .. ":" .. self.n
    local r = self.redis
    local ok, v = pcall(r.call, r, "SET", self:_key(key) .. ":lock", token, "NX", "PX", max(1, floor(ttl * 1000)))
    if not ok then return self:_failed(v, true) end
    self:_ok()
    if v == "OK" then
        self.held[key] = token
        return true
    end
    return false
end

-- Delete the lock of `key` when it is still `token`'s.
release = function(self, key, token)
    if self.degraded then return end
    local r = self.redis
    local ok, err = pcall(r.call, r, "EVAL", M.UNLOCK, 1, self:_key(key) .. ":lock", token)
    if ok then self:_ok() else self:_failed(err) end
end

--- Release this store's lock of `key` when it holds it (put does it too).
--- Never raises.
---@param key string
function Store:unlock(key)
    local token = self.held[key]
    self.held[key] = nil
    if token then release(self, key, token) end
end

--- Another process holds the lock of `key`: its answer when it comes
--- within M.WAIT seconds (and before `deadline`, a weft.now() time), or nil
--- (the lock went without an answer, time is up, or Redis failed). Raises
--- only when the caller is cancelled.
---@param key string
---@param deadline? number
function Store:await(key, deadline)
    local k = self:_key(key)
    local r = self.redis
    local stop = min(now() + M.WAIT, deadline or math.huge)
    while true do
        local left = stop - now()
        if left <= 0 then return nil end
        local _, err = sleep(min(M.POLL, left))
        if err then error(err, 0) end
        -- the lock first: a holder stores its answer before it lets go, so
        -- a lock seen gone means the value read after it is all there is
        local ok, res = pcall(r.pipeline, r, { { "EXISTS", k .. ":lock" }, { "GET", k } })
        if not ok then return self:_failed(res, true) end
        self:_ok()
        local e = decoded(res[2])
        if e then return e end
        if res[1] == 0 then return nil end
    end
end

--- {stored=, too_big=, not_json=, errors=, degraded=}: this process's
--- counts (the entries are Redis's: DBSIZE, or SCAN for the prefix).
function Store:stats()
    return { stored = self.stored, too_big = self.too_big, not_json = self.not_json, errors = self.errors,
             degraded = self.degraded }
end

return M
