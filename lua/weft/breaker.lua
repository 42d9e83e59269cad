--- weft.breaker: circuit breaker in the host (runtime/breaker.c).
---
--- ```lua
--- local br = weft.breaker.new { name = "openai", threshold = 0.5, min_calls = 10, window = 10, cooldown = 30 }
--- local res = br:call(function() return do_request() end)
--- ```
---
--- Opens when the share of failed calls in the rolling window reaches
--- `threshold` with at least `min_calls` calls; while open, calls fail at
--- once with kind `circuit_open` (retry_after = the cool-down left); after
--- `cooldown` seconds `probes` calls go through (half-open): all succeed ->
--- closed, one fails -> open again. Every state change is logged.
---
--- What a call's outcome says about the provider's health:
--- * success: it returned.
--- * failure: an error of kind `transient` or `timeout` (the provider is
---   down, overloaded or slow: what the breaker protects against).
--- * no verdict (neutral): every other outcome. `rate_limited` is the
---   provider working as agreed (the limiter handles it: Retry-After blocks
---   the limit); `quota_exhausted`, `invalid_request` and `auth` are about
---   the account or the request; `cancelled` and the host's own kinds are
---   the caller's decisions; `integration` (an answer the plugin cannot
---   read, or a plugin that fails) is about the plugin, is never retried,
---   and must reach the caller with its excerpt rather than turn every
---   call into `circuit_open` until the cool-down ends; a Lua error that is
---   not an error value is a bug in the caller. A neutral call counts
---   nowhere: not as a success in the window (that would dilute the
---   failure share: a provider timing out on every call it does not
---   rate-limit would stay closed while it rate-limits more than half of
---   them) and not as a half-open probe (its slot goes to the next call;
---   the breaker stays half-open).
local C = require "weft._breaker"
local errors = require "weft.error"

local type, pcall, error = type, pcall, error

local M = {}

local Breaker = {}
Breaker.__index = Breaker

-- The kinds that are a verdict of failure; any other error is neutral.
local FAILURE = { transient = true, timeout = true }

---@class weft.BreakerOptions
---@field name? string
---@field threshold? number failure share that opens (0.5)
---@field min_calls? integer calls in the window before it may open (10)
---@field window? number seconds (10)
---@field cooldown? number seconds open before probing (30)
---@field probes? integer calls let through half-open (1)

local metrics = require "weft.metrics"
local count = 0
local STATE = { closed = 0, half_open = 1, ["half-open"] = 1, open = 2 }

-- weft_breaker_state{breaker}, refreshed before every exposition.
local function collect(br)
    metrics.std.breaker:set(STATE[br.c:state().state] or -1, br.name)
end

---@param opts? weft.BreakerOptions
---@return weft.Breaker
function M.new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.breaker.new: expected a table", 2) end
    count = count + 1
    local br = setmetatable({ c = C.new(opts), name = opts.name or ("breaker" .. count) }, Breaker)
    metrics.collect(br, collect)
    return br
end

---@class weft.Breaker

-- Record the outcome of pcall(fn, ...) and pass its results on (varargs:
-- no table per call).
local function settle(c, ok, ...)
    if ok then
        c:record(true)
        return ...
    end
    local e = ...
    if errors.is(e) and FAILURE[e.kind] then c:record(false) else c:release() end
    error(e, 0)
end

local function refused(self, retry_in)
    return errors.new("circuit_open", ("circuit breaker %s is open"):format(self.name), { retry_after = retry_in })
end

--- Call fn(...) through the breaker; raises kind circuit_open while open.
--- The same as admit() then run(fn, ...).
function Breaker:call(fn, ...)
    local ok, retry_in = self.c:allow()
    if not ok then error(refused(self, retry_in), 0) end
    return settle(self.c, pcall(fn, ...))
end

--- The first half of call(), for a caller that must undo something when
--- the breaker refuses: true when the call may go (half-open: it is a
--- probe), else nil and the circuit_open error value (counted as
--- rejected). Every true must be followed by exactly one run().
---@return true|nil, table?
function Breaker:admit()
    local ok, retry_in = self.c:allow()
    if not ok then return nil, refused(self, retry_in) end
    return true
end

--- The second half of call(): fn(...) with its outcome recorded, after
--- admit() returned true.
function Breaker:run(fn, ...)
    return settle(self.c, pcall(fn, ...))
end

--- Raise kind circuit_open when the breaker is open (without taking a
--- half-open probe): lets a caller refuse before waiting in a queue.
function Breaker:check()
    local ok, retry_in = self.c:peek()
    if not ok then error(refused(self, retry_in), 0) end
end

--- The state ("closed", "open", "half_open") and the seconds until an
--- open breaker lets a probe through (0 otherwise), without a table.
---@return string state
---@return number retry_in
function Breaker:status()
    return self.c:status()
end

--- {state=, calls=, failures=, transitions=, rejected=, retry_in=, name=}
function Breaker:state()
    return self.c:state()
end

return M
