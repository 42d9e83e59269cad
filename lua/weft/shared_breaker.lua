--- weft.shared_breaker: a provider's circuit breaker shared by every weft
--- process through Redis (`breaker = { shared = ... }`).
---
--- Each process keeps its own breaker (weft.breaker) and publishes what it
--- learns: when its breaker opens, `{weft:NAME}:breaker:open` is set for
--- the cool-down (and `...:tripped`, the outage being unresolved, for ten
--- cool-downs). Before a call every process asks Redis (one atomic script):
--- while `open` lives, the call fails at once with kind `circuit_open`;
--- once it has expired and `tripped` is still there, the breaker is
--- half-open across the fleet: the one call that takes `...:probe` (SET NX)
--- goes to the provider, the others fail with `circuit_open` until the
--- probe ends. The probe's success clears `tripped` (the fleet is closed);
--- its failure sets `open` again for a cool-down.
---
--- The cost is one more round trip to Redis per call, none when the
--- provider's limits are shared on the same Redis (the check is then part
--- of the admission script, weft.shared_limits). When Redis fails,
--- each process keeps its own breaker only (logged at warn once per change
--- of state).
local errors = require "weft.error"
local log = require "weft.log"
local T = require "weft._task"

local type, tostring, tonumber, pcall, error, setmetatable = type, tostring, tonumber, pcall, error, setmetatable
local format, floor = string.format, math.floor
local now = T.now

local M = {}

-- KEYS: open, tripped, probe. ARGV: probe id, probe ttl (ms). Returns
-- {0} closed, {1, ttl_ms} open (or half-open with the probe out), {2} the
-- caller is the probe.
M.CHECK = [[
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then return {1, ttl} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, 0} end
  return {1, math.max(1, redis.call('PTTL', KEYS[3]))}
end
return {0, 0}
]]

local FAILURE = { transient = true, timeout = true }

local SB = {}
SB.__index = SB

--- The shared breaker of provider `name` over its local breaker `br`;
--- `opts`: a Redis URL or {url=, password=, timeout=, key=} (`key`: the
--- name of the keys, the provider's name unless given), `cooldown`: the
--- local breaker's cool-down (s).
function M.new(name, br, opts, cooldown)
    if type(opts) == "string" then opts = { url = opts } end
    local r = opts.client or require("weft.redis").connect { url = opts.url, password = opts.password,
                                              timeout = opts.timeout or 0.25, connect_timeout = opts.timeout or 0.25 }
    local base = format("{weft:%s}:breaker", opts.key or name)
    return setmetatable({ name = name, br = br, redis = r, cooldown = cooldown or 30,
                          keys = { base .. ":open", base .. ":tripped", base .. ":probe" },
                          id = format("%s-%d", tostring({}):match("0x(%x+)") or "p", floor(now() * 1e6) % 1e9),
                          degraded = false }, SB)
end

--- The milliseconds a probe holds the fleet's half-open state at most.
function SB:probe_ttl() return floor(self.cooldown * 1000) + 60000 end

--- The error of a call refused because the fleet's breaker is open (`ttl`:
--- ms until it may probe).
function SB:open_error(ttl)
    return errors.new("circuit_open", format("circuit breaker %s is open (shared: another process saw the outage)",
        self.name), { retry_after = ttl / 1000, provider = self.name, reason = "shared_breaker" })
end

function SB:_failed(err)
    if not self.degraded then
        self.degraded = true
        log.warn("shared breaker: Redis fails, this process keeps its own breaker only",
            { provider = self.name, error = errors.is(err) and err.message or tostring(err) })
    end
end

function SB:_ok()
    if self.degraded then
        self.degraded = false
        log.warn("shared breaker: Redis answers again", { provider = self.name })
    end
end

--- Before a call: raises circuit_open while the fleet's breaker is open;
--- returns true when this call is the fleet's half-open probe.
function SB:check()
    local r = self.redis
    local ok, res = pcall(r.call, r, "EVAL", M.CHECK, 3, self.keys[1], self.keys[2], self.keys[3], self.id,
        self:probe_ttl())
    if not ok then
        if errors.is(res) and res.kind == "cancelled" then error(res, 0) end
        self:_failed(res)
        return false
    end
    self:_ok()
    local state, ttl = tonumber(res[1]), tonumber(res[2]) or 0
    if state == 1 then error(self:open_error(ttl), 0) end
    return state == 2
end

--- After a call that went out (`ok`, or its error): a probe's outcome
--- closes or opens the fleet's breaker; the local breaker having opened
--- is published.
function SB:after(probe, ok, err)
    local failed = not ok and errors.is(err) and FAILURE[err.kind]
    local r = self.redis
    local cool = floor(self.cooldown * 1000)
    local cmds
    if probe then
        if failed then
            cmds = { { "SET", self.keys[1], "1", "PX", cool }, { "SET", self.keys[2], "1", "PX", cool * 10 },
                     { "DEL", self.keys[3] } }
        elseif ok then
            cmds = { { "DEL", self.keys[2], self.keys[3] } }
        else
            cmds = { { "DEL", self.keys[3] } } -- no verdict: the next call probes
        end
    elseif failed and self.br:status() == "open" then
        cmds = { { "SET", self.keys[1], "1", "PX", cool, "NX" }, { "SET", self.keys[2], "1", "PX", cool * 10 } }
    end
    if not cmds then return end
    local pok, perr = pcall(r.pipeline, r, cmds)
    if pok then self:_ok() else self:_failed(perr) end
end

function SB:close() self.redis:close() end

return M
