--- weft.shared_retry: a provider's retry budget shared by every weft
--- process through Redis (`retry = { shared = ... }`).
---
--- The local budget (weft.retry.budget) lets retries in flight be at most
--- 20% of the process's calls in flight (at least 3). Across a fleet that
--- still lets N processes each add their 20% to an outage, and a process
--- with little traffic of its own retries freely while the others are
--- already retrying. The shared budget counts over the fleet and over a
--- window instead of in flight: a retry is allowed while the fleet's
--- retries of the last `window` seconds (10) stay at most `ratio` (0.2) of
--- its calls in that window, at least `min` (3). The counts live in two
--- hashes per provider (`{weft:NAME}:retry:calls` and `...:retries`, one
--- field a second, each key with a TTL), kept by one atomic script on
--- Redis's clock.
---
--- Cost: a retry asks Redis once (a retry is already a failure and a
--- backoff, so one round trip more is small); calls are counted in the
--- process and sent along with the next retry's script call or, at most
--- once a second, by a task of their own: no call waits on it.
---
--- When Redis fails, the process's own budget decides (logged at warn
--- once per change of state, counted in weft_redis_errors_total).
local errors = require "weft.error"
local log = require "weft.log"
local T = require "weft._task"

local tonumber, pcall, error, setmetatable = tonumber, pcall, error, setmetatable
local format = string.format
local now = T.now

local M = {}

-- KEYS: calls hash, retries hash. ARGV: calls to add, take (1|0), ratio,
-- min, window (s). Returns {allowed (1|0), calls, retries} of the window.
M.SCRIPT = [[
local t = redis.call('TIME')
local sec = tonumber(t[1])
local add, take = tonumber(ARGV[1]), ARGV[2] == '1'
local ratio, minr, w = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if add > 0 then redis.call('HINCRBY', KEYS[1], sec, add) end
local fields = {}
for s = sec - w + 1, sec do fields[#fields + 1] = s end
local calls, retries = 0, 0
for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do calls = calls + (tonumber(v) or 0) end
for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(fields))) do retries = retries + (tonumber(v) or 0) end
local ok = 0
if take and retries + 1 <= math.max(minr, ratio * calls) then
  ok = 1
  retries = retries + 1
  redis.call('HINCRBY', KEYS[2], sec, 1)
end
for k = 1, 2 do
  if redis.call('HLEN', KEYS[k]) > 2 * w then
    for _, f in ipairs(redis.call('HKEYS', KEYS[k])) do
      if tonumber(f) <= sec - w then redis.call('HDEL', KEYS[k], f) end
    end
  end
  redis.call('PEXPIRE', KEYS[k], (w + 5) * 1000)
end
return {ok, calls, retries}
]]

M.FLUSH = 1 -- seconds between the sends of a process's call count

local SR = {}
SR.__index = SR

--- The shared budget of provider `name` over the process's own `budget`
--- (weft.retry.budget, which decides while Redis fails); `opts`: {client=
--- (a weft.redis client), key=, ratio=, min=, window=}.
function M.new(name, budget, opts)
    return setmetatable({ name = name, loc = budget, redis = opts.client, ratio = opts.ratio or 0.2,
                          min = opts.min or 3, window = opts.window or 10,
                          keys = { format("{weft:%s}:retry:calls", opts.key or name),
                                   format("{weft:%s}:retry:retries", opts.key or name) },
                          pending = 0, next_flush = 0, degraded = false,
                          why = format("not retried: the fleet's retry budget is spent (retries in the last %g s at most %g%% of the calls)",
                              opts.window or 10, (opts.ratio or 0.2) * 100),
                          errors = require("weft.shared_limits").redis_errors }, SR)
end

function SR:_state(down, err)
    if down == self.degraded then return end
    self.degraded = down
    if down then
        log.warn("shared retry budget: Redis fails, this process's own budget decides",
            { provider = self.name, error = errors.is(err) and err.message or nil })
    else
        log.warn("shared retry budget: Redis answers again", { provider = self.name })
    end
end

-- One script call: {allowed, calls, retries}, or nil when Redis failed.
function SR:_eval(take)
    local add = self.pending
    self.pending = 0
    self.next_flush = now() + M.FLUSH
    local r = self.redis
    local ok, res = pcall(r.call, r, "EVAL", M.SCRIPT, 2, self.keys[1], self.keys[2], add, take and 1 or 0,
        self.ratio, self.min, self.window)
    if ok then
        self:_state(false)
        return res
    end
    if errors.is(res) and res.kind == "cancelled" then error(res, 0) end
    self.errors:inc(1, r.where.shown, errors.is(res) and res.kind or "integration")
    self:_state(true, res)
    return nil
end

--- A call starts (counted; sent with the next retry, or within a second).
function SR:begin()
    self.loc:begin()
    self.pending = self.pending + 1
    if not self.flushing and now() >= self.next_flush then
        self.flushing = true
        T.spawn(function()
            pcall(self._eval, self, false)
            self.flushing = false
        end)
    end
end

--- A call ended.
function SR:finish() self.loc:finish() end

--- May the run `s` retry? Asks the fleet's budget (one round trip); the
--- process's own when Redis fails.
function SR:take(s)
    local res = self:_eval(true)
    local took_local = self.loc:take()
    if s then s.budget_local = took_local end
    if not res then return took_local end
    if took_local and tonumber(res[1]) ~= 1 then
        self.loc:release()
        if s then s.budget_local = false end
    end
    return tonumber(res[1]) == 1
end

--- The run `s`'s retry is no longer waiting.
function SR:release(s)
    if not s or s.budget_local then self.loc:release() end
end

--- The process's budget's counters and the last window the fleet read.
function SR:stats() return self.loc:stats() end

return M
