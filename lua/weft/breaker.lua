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
--- closed, one fails -> open again. A failure is an error of kind
--- transient, timeout or rate_limited; other errors (auth, invalid_request,
--- ...) say nothing about the provider's health and count as successes.
--- Every state change is logged.
local C = require "weft._breaker"
local errors = require "weft.error"

local type, pcall, error = type, pcall, error

local M = {}

local Breaker = {}
Breaker.__index = Breaker

local UNHEALTHY = { transient = true, timeout = true, rate_limited = true }

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
    c:record(not (errors.is(e) and UNHEALTHY[e.kind]))
    error(e, 0)
end

--- Call fn(...) through the breaker; raises kind circuit_open while open.
function Breaker:call(fn, ...)
    local ok, retry_in = self.c:allow()
    if not ok then
        error(errors.new("circuit_open", ("circuit breaker %s is open"):format(self.name),
            { retry_after = retry_in }), 0)
    end
    return settle(self.c, pcall(fn, ...))
end

--- Raise kind circuit_open when the breaker is open (without taking a
--- half-open probe): lets a caller refuse before waiting in a queue.
function Breaker:check()
    local ok, retry_in = self.c:peek()
    if not ok then
        error(errors.new("circuit_open", ("circuit breaker %s is open"):format(self.name),
            { retry_after = retry_in }), 0)
    end
end

--- {state=, calls=, failures=, transitions=, rejected=, retry_in=, name=}
function Breaker:state()
    return self.c:state()
end

return M
