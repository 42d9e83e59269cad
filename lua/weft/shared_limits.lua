--- weft.shared_limits: a provider's limits shared by every weft process
--- through Redis (a provider's `limits.shared`).
---
--- Each limit is a GCRA (the generic cell rate algorithm: one "theoretical
--- arrival time" per limit, `{weft:PROVIDER}:NAME`, hash-tagged so a
--- provider's keys share a Cluster slot, each with a TTL) kept by one
--- atomic Lua script on Redis's clock (TIME). A call reserves its slot:
--- the script answers how long it must wait for every limit at once and
--- books it, so an admitted call costs one round trip and the callers of
--- all processes are spaced as one. Slots are booked at most `horizon`
--- (0.5 s) ahead: in each process the callers queue locally (by priority,
--- FIFO within a level, with aging, as in the local limiter) and only the
--- first asks Redis; when the next free slot is further away it waits and
--- asks again, so what is booked and not yet sent across the fleet is at
--- most `horizon` worth of calls. A call whose slot would pass its
--- deadline books nothing and fails with kind `rate_limited` and the wait
--- as `retry_after`. Token limits are booked at the estimate; the
--- difference with the real usage is carried by the next admission's
--- script call (no round trip of its own).
---
--- The bucket of a limit is `burst` (`token_burst` for the shortest token
--- limit; the limit itself unless configured), as for the local limiter: `limits = { rpm = 600, burst = 10, shared =
--- "redis://..." }` spaces 600 requests a minute over the fleet, at most
--- 10 at once.
---
--- When Redis fails (`on_failure`): "local" (the default) admits each call
--- against the process's share of every limit (limit / `processes`; when
--- `processes` is not configured, the count of processes that admitted a
--- call in the last 10 s, as last read: every process says it is alive in
--- `{weft:PROVIDER}:procs` with an admission at most once a second, in the
--- same script call),
--- logged at warn once per change of state and shown in
--- weft_redis_degraded{redis} (errors in weft_redis_errors_total); the
--- shared state is used again once a call to Redis works (tried again at
--- most every 0.5 s meanwhile). "fail" fails the call (kind `transient`).
--- No call waits on Redis longer than its command timeout (`timeout`,
--- 0.25 s). While falling back, the fleet may send up to `horizon` worth of
--- calls booked before (5 at 10/s) above the limit: the documented slack.
local errors = require "weft.error"
local log = require "weft.log"
local metrics = require "weft.metrics"
local T = require "weft._task"

local type, pairs, ipairs, tostring, tonumber, error, pcall, setmetatable, unpack = type, pairs, ipairs,
    tostring, tonumber, error, pcall, setmetatable, unpack
local floor, ceil, max, min, huge = math.floor, math.ceil, math.max, math.min, math.huge
local format = string.format
local now, sleep, suspend, wake, current = T.now, T.sleep, T.suspend, T.wake, T.current

local M = {}

local redis_errors = metrics.counter("weft_redis_errors_total",
    "Redis calls of shared state (limits, breakers, retry budgets, caches) that failed, by kind.", { "redis", "kind" })
M.redis_errors = redis_errors
local degraded_gauge = metrics.gauge("weft_redis_degraded",
    "1 while shared limits fall back to each process's share because Redis fails.", { "redis" })

-- KEYS: one per limit, the processes' heartbeat set, then (with the
-- breaker folded in) the shared breaker's open, tripped and probe keys.
-- ARGV: n, horizon_ms, heartbeat (1: this process says it is alive, 0: not
-- now), the process's id, breaker (1: check it first, 0: no), the probe's
-- id, the probe's ttl (ms), then per limit: ms per unit, tolerance (ms),
-- cost (units), delta (units to add or give back: the reconciliation of
-- earlier calls), ttl (ms). Returns {booked (1|0), wait_ms, processes
-- alive (0 without a heartbeat), breaker (0 closed, 1 open: nothing
-- booked, 2 this call is the fleet's probe), the breaker's ttl (ms)}.
M.SCRIPT = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
local alive = 0
if ARGV[3] == '1' then
  local hb = KEYS[n + 1]
  redis.call('ZADD', hb, now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', hb, '-inf', now - 10000)
  redis.call('PEXPIRE', hb, 20000)
  alive = redis.call('ZCARD', hb)
end
local brk = 0
if ARGV[5] == '1' then
  local ttl = redis.call('PTTL', KEYS[n + 2])
  if ttl > 0 then return {0, 0, alive, 1, ttl} end
  if redis.call('EXISTS', KEYS[n + 3]) == 1 then
    local pttl = redis.call('PTTL', KEYS[n + 4])
    if pttl > 0 then return {0, 0, alive, 1, pttl} end
    brk = 2
  end
end
local at, tats = now, {}
for i = 1, n do
  local b = 7 + (i - 1) * 5
  local per, tau, cost, delta = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) + per * delta
  if tat < now then tat = now end
  tats[i] = tat
  -- the call goes when the bucket holds all of its cost: its own end of
  -- the schedule within `burst` units (tau + per) of now
  local go = tat + per * cost - tau - per
  if go > at then at = go end
end
local wait = at - now
local book = wait <= horizon
for i = 1, n do
  local b = 7 + (i - 1) * 5
  local per, cost, ttl = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5])
  local tat = tats[i]
  if book then tat = math.max(tat, at) + per * cost end
  redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', ttl)
end
if book then
  if brk == 2 then redis.call('SET', KEYS[n + 4], ARGV[6], 'PX', ARGV[7]) end
  return {1, math.floor(wait), alive, brk, 0}
end
return {0, math.floor(wait), alive, 0, 0}
]]

-- Seconds between a process's heartbeats (with an admission; none of its
-- own) and how long one counts: a process that admitted no call for 10 s
-- is not counted.
M.HEARTBEAT = 1

-- An id for this process among the fleet's: random, read once.
local pid
local function process_id()
    if not pid then
        local f = io.open("/dev/urandom", "rb")
        local b = f and f:read(8) or tostring({})
        if f then f:close() end
        pid = (b:gsub(".", function(c) return format("%02x", c:byte()) end))
    end
    return pid
end

M.process_id = process_id

local PERIODS = { rps = { 1, "requests" }, rpm = { 60, "requests" }, rpd = { 86400, "requests" },
                  tps = { 1, "tokens" }, tpm = { 60, "tokens" }, tpd = { 86400, "tokens" } }

local Shared = {}
Shared.__index = Shared

--- The shared limits of provider `name` from its `limits` table (rps, rpm,
--- rpd, tps, tpm, tpd, burst) and the options of `limits.shared`: {url=,
--- password=, timeout=, on_failure=, processes=} (or the url alone).
function M.new(name, limits, opts)
    if type(opts) == "string" then opts = { url = opts } end
    local redis = opts.client or require("weft.redis").connect { url = opts.url, password = opts.password,
                                                  timeout = opts.timeout or 0.25,
                                                  connect_timeout = opts.timeout or 0.25 }
    local dims = {}
    -- the shortest request limit takes `burst`, the shortest token limit
    -- `token_burst`, as in the local limiter
    local shortest = {}
    for k in pairs(limits) do
        local p = PERIODS[k]
        local s = p and shortest[p[2]]
        if p and (not s or p[1] < PERIODS[s][1]) then shortest[p[2]] = k end
    end
    local keys = {}
    for k, v in pairs(limits) do
        local p = PERIODS[k]
        if p then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        local p, limit = PERIODS[k], limits[k]
        local burst = (k == shortest.requests and limits.burst) or (k == shortest.tokens and limits.token_burst) or limit
        local per = p[1] * 1000 / limit -- ms per unit
        dims[#dims + 1] = { name = k, unit = p[2], limit = limit, per = per, tau = per * (max(1, burst) - 1),
                            key = format("{weft:%s}:%s", opts.key or name, k), ttl = floor(p[1] * 2000 + 1000),
                            delta = 0, local_tat = 0 }
    end
    local self = setmetatable({ name = name, redis = redis, dims = dims, on_failure = opts.on_failure or "local",
                                processes = opts.processes or 1, heartbeat = opts.processes == nil,
                                next_heartbeat = 0, id = process_id(), degraded = false, horizon = 500, ratio = 1,
                                procs_key = format("{weft:%s}:procs", opts.key or name),
                                shown = redis.where.shown, queues = {}, levels = {}, waiting = 0, busy = false,
                                aging = limits.aging or 30 }, Shared)
    for _, d in ipairs(dims) do d.per_s, d.tau_s = format("%.6f", d.per), format("%.6f", d.tau) end
    self:_keys()
    degraded_gauge:set(0, self.shown)
    return self
end

-- The script's arguments for a call of `cost` ({requests=, tokens=}).
function Shared:_args(cost, horizon)
    local hb = "0"
    if self.heartbeat and now() >= self.next_heartbeat then
        hb = "1"
        self.next_heartbeat = now() + M.HEARTBEAT
    end
    local sb = self.breaker
    local dims = self.dims
    -- the command itself (EVALSHA sha numkeys KEYS... ARGV...): the keys
    -- and the limits' constant arguments are made once, in new
    local cmd = { "EVALSHA", self.sha, self.nkeys }
    for i = 1, #self.keys do cmd[3 + i] = self.keys[i] end
    local n = #cmd
    cmd[n + 1], cmd[n + 2], cmd[n + 3], cmd[n + 4] = #dims, horizon, hb, self.id
    cmd[n + 5], cmd[n + 6], cmd[n + 7] = sb and "1" or "0", sb and sb.id or "", sb and sb:probe_ttl() or 0
    n = n + 7
    for i = 1, #dims do
        local d = dims[i]
        cmd[n + 1], cmd[n + 2] = d.per_s, d.tau_s
        cmd[n + 3] = d.unit == "requests" and (cost.requests or 1) or (cost.tokens or 0)
        cmd[n + 4], cmd[n + 5] = d.delta, d.ttl
        n = n + 5
    end
    return cmd
end

-- The script's keys: one per limit, the heartbeat set, the attached
-- breaker's three.
function Shared:_keys()
    local keys = {}
    for i, d in ipairs(self.dims) do keys[i] = d.key end
    keys[#keys + 1] = self.procs_key
    if self.breaker then
        for i = 1, 3 do keys[#keys + 1] = self.breaker.keys[i] end
    end
    self.keys, self.nkeys = keys, #keys
end

-- EVALSHA (the script loaded once per connection), EVAL when Redis lost it.
function Shared:_eval(cost, horizon)
    local r = self.redis
    if not self.sha then self.sha = r:call("SCRIPT", "LOAD", M.SCRIPT) end
    local cmd = self:_args(cost, horizon)
    local ok, res = pcall(r.call, r, unpack(cmd))
    if not ok and errors.is(res) and tostring(res.message):find("NOSCRIPT", 1, true) then
        self.sha = nil
        cmd[1], cmd[2] = "EVAL", M.SCRIPT
        return r:call(unpack(cmd))
    end
    if not ok then error(res, 0) end
    return res
end

-- The local share's answer when Redis fails: the same GCRA in the process,
-- every limit divided by `processes`.
function Shared:_local(cost, horizon)
    local t = now() * 1000
    local at = t
    local share = self.processes
    for _, d in ipairs(self.dims) do
        local tat = max(d.local_tat, t)
        local c = d.unit == "requests" and (cost.requests or 1) or (cost.tokens or 0)
        -- as the script: the bucket (a share of it) holds all of the cost
        local go = tat + d.per * share * (c - 1) - d.tau
        if go > at then at = go end
    end
    local wait = at - t
    if wait > horizon then return false, wait end
    for _, d in ipairs(self.dims) do
        local c = d.unit == "requests" and (cost.requests or 1) or (cost.tokens or 0)
        d.local_tat = max(max(d.local_tat, t), at) + d.per * self.processes * c
    end
    return true, wait
end

function Shared:_state(down, err)
    if down == self.degraded then return end
    self.degraded = down
    degraded_gauge:set(down and 1 or 0, self.shown)
    if down then
        log.warn("shared limits: Redis fails, each process keeps to its share", { provider = self.name,
            redis = self.shown, processes = self.processes, error = err and err.message or nil })
        -- the share starts spaced from now: no burst on falling back
        local t = now() * 1000
        for _, d in ipairs(self.dims) do d.local_tat = t + d.per * self.processes end
    else
        log.warn("shared limits: Redis answers again, the shared state is used", { provider = self.name,
            redis = self.shown })
    end
end

-- One try at a slot within `horizon` ms: booked, wait (ms).
function Shared:_try(cost, horizon)
    if not (self.degraded and now() < self.retry_redis) then
        local ok, res = pcall(self._eval, self, cost, horizon)
        if ok then
            for _, d in ipairs(self.dims) do d.delta = 0 end
            local alive = tonumber(res[3]) or 0
            if alive > 0 then self.processes = alive end
            self:_state(false)
            local sb = self.breaker
            if sb then
                sb:_ok()
                if tonumber(res[4]) == 1 then error(sb:open_error(tonumber(res[5]) or 0), 0) end
            end
            return res[1] == 1, tonumber(res[2]) or 0, tonumber(res[4]) == 2
        end
        local kind = errors.is(res) and res.kind or "integration"
        redis_errors:inc(1, self.shown, kind)
        if self.on_failure == "fail" or kind == "cancelled" or kind == "auth" then error(res, 0) end
        self:_state(true, errors.is(res) and res or nil)
        if self.breaker then self.breaker:_failed(res) end
        self.retry_redis = now() + 0.5
    end
    return self:_local(cost, horizon)
end

-- The local queue in front of Redis: one caller of the process at a time,
-- by priority (1 = high first), FIFO within a level; a waiter older than
-- `aging` seconds goes before younger ones whatever their priority, as in
-- the local limiter.
local PRIORITY = { high = 1, normal = 2, low = 3 }

function Shared:_enter(prio)
    if not self.busy then
        self.busy = true
        return
    end
    local me = { task = current(), t = now(), prio = prio }
    local q = self.queues[prio]
    if not q then
        q = { head = 1, tail = 0 }
        self.queues[prio] = q
        self.levels[#self.levels + 1] = prio
        table.sort(self.levels)
    end
    q.tail = q.tail + 1
    q[q.tail] = me
    self.waiting = self.waiting + 1
    local _, err = suspend("shared limit")
    if err then
        -- cancelled while queued: out of the queue (or pass the turn on)
        if not me.gone then
            me.gone = true
            self.waiting = self.waiting - 1
        end
        if self.turn == me then self.turn = nil self:_leave() end
        error(err, 0)
    end
    self.turn = nil
end

-- The head of queue q, past entries of cancelled waiters.
local function head(q)
    while q.head <= q.tail and q[q.head].gone do
        q[q.head] = nil
        q.head = q.head + 1
    end
    return q.head <= q.tail and q[q.head] or nil
end

function Shared:_leave()
    if self.waiting == 0 then
        self.busy = false
        return
    end
    -- the highest priority's head, unless another level's head has aged
    local pick, oldest
    for _, lv in ipairs(self.levels) do
        local h = head(self.queues[lv])
        if h then
            pick = pick or h
            if not oldest or h.t < oldest.t then oldest = h end
        end
    end
    if oldest and now() - oldest.t >= self.aging then pick = oldest end
    local q = self.queues[pick.prio]
    q[q.head] = nil
    q.head = q.head + 1
    pick.gone = true
    self.waiting = self.waiting - 1
    self.turn = pick
    wake(pick.task)
end

--- Admit a call of `cost` ({requests=, tokens=}) before `deadline`
--- (weft.now() time or nil), queued in the process by `priority` ("high",
--- "normal" (default), "low" or 1..n): waits for its slot and returns the seconds
--- waited, the tokens booked (for reconcile) and, with a breaker attached,
--- true when the call is the fleet's half-open probe; or raises
--- `rate_limited` (the slot would come too late), `circuit_open` (the
--- attached breaker) or, with on_failure = "fail", `transient`.
function Shared:admit(cost, deadline, priority)
    local t0 = now()
    local prio = 2
    if priority ~= nil then
        prio = PRIORITY[priority] or (type(priority) == "number" and priority >= 1 and floor(priority))
        if not prio then error(errors.new("invalid_request", "unknown priority " .. tostring(priority)), 0) end
    end
    local tokens = cost.tokens
    if tokens and tokens > 0 and self.ratio ~= 1 then
        -- the estimate as the answers so far measured it (see reconcile)
        tokens = ceil(tokens * self.ratio)
        cost = { requests = cost.requests, tokens = tokens }
    end
    self:_enter(prio)
    local probe = false
    local ok, booked, wait = pcall(function()
        while true do
            local left = deadline and max(0, (deadline - now()) * 1000) or huge
            local b, w, p = self:_try(cost, min(left, self.horizon))
            if b then
                probe = p
                return true, w
            end
            if w > left then return false, w end
            -- the next slot is beyond the horizon: wait for it to come nearer
            local _, err = sleep((w - self.horizon) / 1000 + 0.001)
            if err then error(err, 0) end
        end
    end)
    self:_leave()
    if not ok then error(booked, 0) end
    if not booked then
        error(errors.new("rate_limited", format("shared limit of %s: the next slot is in %.3g s, after the deadline",
            self.name, wait / 1000), { retry_after = wait / 1000, reason = "shared_limit" }), 0)
    end
    if wait > 0 then
        local _, err = sleep(wait / 1000)
        if err then
            if probe then self.breaker:after(true, false, nil) end -- the probe never went out
            error(err, 0)
        end
    end
    return now() - t0, tokens or 0, probe or nil
end

--- Check the shared breaker `sb` (weft.shared_breaker, on the same Redis
--- and hash tag) in the admission script: an open breaker refuses before
--- anything is booked, and the fleet's probe is taken with its slot, so a
--- call with both costs one round trip.
function Shared:attach_breaker(sb)
    self.breaker = sb
    self:_keys()
end

--- The real token usage of an admitted call (`booked`: the tokens admit
--- returned; `estimated`: the caller's estimate): the difference goes with
--- the next admission's script call. Until then the fleet's other
--- processes do not see it, so the estimates are corrected at the source
--- too: the ratio of real to estimated tokens (a moving average, within
--- 0.1..10) scales the next estimates, and a provider whose estimates are
--- steadily off books what its answers use.
function Shared:reconcile(booked, actual, estimated)
    actual, booked, estimated = tonumber(actual) or 0, tonumber(booked) or 0, tonumber(estimated)
    if actual > 0 and estimated and estimated > 0 then
        self.ratio = min(10, max(0.1, self.ratio * 0.8 + (actual / estimated) * 0.2))
    end
    local d = actual - booked
    if d == 0 then return end
    for _, dim in ipairs(self.dims) do
        if dim.unit == "tokens" then dim.delta = dim.delta + d end
    end
end

function Shared:close() self.redis:close() end

return M
