---@meta weft._limiter
-- Editor stubs for the C modules behind weft.limiter, weft.retry and
-- weft.breaker (runtime/lua_limiter.c, runtime/lua_retry.c,
-- runtime/lua_breaker.c). Scripts use the Lua modules instead.

---@class weft._limiter
local limiter = {}
--- dims: {{name=, unit="requests"|"tokens", limit=, period=, burst=}...}
---@return userdata
function limiter.new(dims, priorities, aging) end

---@class weft._retry
local retry = {}
---@return userdata policy with :decide(kind, attempts, elapsed, hint, deadline_left, should_retry, prev) -> action, delay
function retry.policy(opts) end
--- Seconds from a hint header, or nil.
---@return number|nil
function retry.hint(name, value, wall_now) end
---@return userdata budget with :begin(), :finish(), :take(), :release(), :stats()
function retry.budget(ratio, min_concurrent) end

---@class weft._breaker
local breaker = {}
---@return userdata with :allow() -> ok, retry_in; :record(ok); :state()
function breaker.new(opts) end

return { limiter = limiter, retry = retry, breaker = breaker }
