--- weft.cache: the response store behind the `cache` policy: an in-memory
--- LRU with a time to live per entry, bounded in entries and in bytes.
---
--- ```lua
--- local c = weft.cache.new { max_entries = 10000, max_bytes = 64 * 1024 * 1024, ttl = 3600 }
--- c:put(key, value, bytes)        -- value: any Lua value the caller owns
--- local v = c:get(key)            -- nil when absent or expired
--- c:stats()                       -- {entries=, bytes=, evicted=, expired=}
--- ```
---
--- The storage interface (new, get, put, delete, stats) is what a shared
--- backend (Redis) would implement. Time comes from weft.now (a test may
--- pass `clock`).
local T = require "weft._task"

local type, error, setmetatable = type, error, setmetatable

local M = {}

--- The clock of stores made without one (weft.now; a spec may replace it
--- before the store is made, to drive time-to-live exactly).
M.now = T.now

local Cache = {}
Cache.__index = Cache

---@class weft.CacheOptions
---@field max_entries? integer (10,000)
---@field max_bytes? integer (64 MB)
---@field ttl? number seconds an entry lives (3600)
---@field clock? fun(): number (weft.now)

--- A new store.
---@param opts? weft.CacheOptions
function M.new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.cache.new: expected a table", 2) end
    local function num(k, d, min)
        local v = opts[k]
        if v == nil then return d end
        if type(v) ~= "number" or v < min or v ~= v then error("weft.cache.new: " .. k .. " must be a number >= " .. min, 3) end
        return v
    end
    local c = setmetatable({
        max_entries = num("max_entries", 10000, 1), max_bytes = num("max_bytes", 64 * 1024 * 1024, 1),
        ttl = num("ttl", 3600, 0), clock = opts.clock or M.now,
        map = {}, entries = 0, bytes = 0, evicted = 0, expired = 0,
    }, Cache)
    -- the LRU list: a sentinel, most recent first
    c.head = {}
    c.head.next, c.head.prev = c.head, c.head
    return c
end

local function unlink(e)
    e.prev.next, e.next.prev = e.next, e.prev
end

local function push_front(c, e)
    local h = c.head
    e.next, e.prev = h.next, h
    h.next.prev = e
    h.next = e
end

local function remove(c, e)
    unlink(e)
    c.map[e.key] = nil
    c.entries = c.entries - 1
    c.bytes = c.bytes - e.bytes
end

--- The value of `key`, or nil (absent, or older than its time to live).
---@param key string
function Cache:get(key)
    local e = self.map[key]
    if not e then return nil end
    if e.expires <= self.clock() then
        remove(self, e)
        self.expired = self.expired + 1
        return nil
    end
    unlink(e)
    push_front(self, e)
    return e.value
end

--- Keep `value` under `key` (`bytes`: its size, for the byte bound; `ttl`:
--- this entry's, else the store's). The least recently used entries go
--- first when a bound is passed. A value larger than the whole byte bound
--- is not kept.
---@param key string
---@param value any
---@param bytes integer
---@param ttl? number
function Cache:put(key, value, bytes, ttl)
    bytes = (bytes or 0) + #key + 64
    if bytes > self.max_bytes then return false end
    local old = self.map[key]
    if old then remove(self, old) end
    local e = { key = key, value = value, bytes = bytes, expires = self.clock() + (ttl or self.ttl) }
    self.map[key] = e
    push_front(self, e)
    self.entries = self.entries + 1
    self.bytes = self.bytes + bytes
    while self.entries > self.max_entries or self.bytes > self.max_bytes do
        local last = self.head.prev
        if last == e then break end
        remove(self, last)
        self.evicted = self.evicted + 1
    end
    return true
end

--- Forget `key`.
---@param key string
function Cache:delete(key)
    local e = self.map[key]
    if e then remove(self, e) end
end

--- {entries=, bytes=, evicted=, expired=}
function Cache:stats()
    return { entries = self.entries, bytes = self.bytes, evicted = self.evicted, expired = self.expired }
end

return M
