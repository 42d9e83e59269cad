--- weft.retry: retries with exponential backoff and jitter, server hints,
--- deadlines and a retry budget (decisions in runtime/retry.c).
---
--- ```lua
--- local policy = weft.retry.policy { max_attempts = 4, base = 0.5, cap = 30 }
--- local res = weft.retry.run(policy, function(attempt)
---     local res = weft.http.request { url = url }
---     local err = weft.retry.http_error(res)   -- nil for 2xx, else an error value
---     if err then error(err, 0) end
---     return res
--- end, { deadline = weft.now() + 10 })
--- ```
---
--- The rule (shared with the C unit tests):
--- * Retried kinds: rate_limited, transient, timeout. Never retried:
---   auth, invalid_request, integration, quota_exhausted, circuit_open,
---   budget_exceeded, cancelled. `err.should_retry` (from `x-should-retry`)
---   overrides that both ways, except for auth and the host's own kinds.
--- * Delay: exponential from `base`, times `multiplier`, capped at `cap`,
---   with full jitter (or "equal", "decorrelated", "none").
--- * A server hint (`err.retry_after`, seconds) longer than the schedule
---   replaces it; a hint beyond `hint_cap` (60 s) or beyond the deadline
---   fails at once with kind `rate_limited` carrying `retry_after`.
--- * At most `max_attempts` attempts (4: three retries) and `max_elapsed`
---   seconds; a deadline is never overslept: the call fails with the last
---   error instead.
--- * A budget shared per provider lets retries in flight be at most 20% of
---   calls in flight (at least 3), so an outage cannot multiply traffic.
--- * A retryable failure not retried before `max_attempts` says why:
---   `err.retry_stopped` is "retry_budget", "deadline", "hint_cap",
---   "max_elapsed", "circuit_open" or "server_said_no" (and the message
---   ends with the reason), as does the call's log line.
--- * Every retry writes a log line (call id, attempt, delay, reason) and
---   is counted (weft_retries_total); the run is one call in weft.calls,
---   its backoff sleeps recorded on it as waiting. The attempt function
---   gets the call, to record what it measured (call:http(res), usage).
local C = require "weft._retry"
local errors = require "weft.error"
local status_kind = require("weft.codec").status_kind

local type, pcall, error, tonumber, tostring = type, pcall, error, tonumber, tostring
local T = require "weft._task"
local now, sleep = T.now, T.sleep

local M = {}


---@class weft.RetryPolicyOptions
---@field base? number first backoff ceiling in seconds (0.5)
---@field cap? number largest backoff (30)
---@field multiplier? number (2)
---@field jitter? "full"|"equal"|"decorrelated"|"none"
---@field max_attempts? integer attempts in all (4)
---@field max_elapsed? number seconds from the first attempt (120; 0: none)
---@field hint_cap? number longest server hint slept (60)
---@field seed? integer jitter generator seed
---@field budget? userdata a weft.retry.budget() shared by the calls to one provider

--- Create a policy.
---@param opts? weft.RetryPolicyOptions
function M.policy(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("weft.retry.policy: expected a table", 2) end
    local ok, p = pcall(C.policy, opts)
    if not ok then error(p, 2) end
    return { c = p, budget = opts.budget, stats = { calls = 0, retries = 0, gave_up = 0, budget_denied = 0 } }
end

--- A retry budget: retries in flight at most `ratio` (0.2) of calls in
--- flight, at least `min` (3).
function M.budget(ratio, min)
    return C.budget(ratio, min)
end

local calls -- weft.calls, loaded on first use

-- One run's state: a table per run instead of result tables per attempt
-- and closures (the attempt loop is a tail call through `after`).
local run_attempt

local function fail(s, e)
    local budget = s.policy.budget
    if budget then budget:finish() end
    if s.call ~= s.opts.call then s.call:finish(e) end -- the run's own call
    error(e, 0)
end

-- Why a retryable failure was not retried before max_attempts, as
-- err.retry_stopped and a clause for its message; nil when the kind is
-- never retried or the attempts were all used.
local RETRYABLE = { rate_limited = true, transient = true, timeout = true }
local function why_stopped(s, err, action, delay, left)
    if action == "budget" then
        return "retry_budget", s.policy.budget and s.policy.budget.why
            or "not retried: the provider's retry budget is spent (retries in flight at most 20% of calls)"
    end
    if err.kind == "circuit_open" and s.attempt > 1 then
        return "circuit_open", nil -- the breaker's message says it
    end
    if not RETRYABLE[err.kind] then return nil end
    if err.should_retry == false then return "server_said_no", "not retried: the server said x-should-retry: false" end
    local max_attempts = s.max_attempts
    if not max_attempts then
        max_attempts = s.policy.c:get().max_attempts
        s.max_attempts = max_attempts
    end
    if s.attempt >= max_attempts then return nil end
    if action == "rate_limited" then
        -- a server hint beyond the cap, or one the deadline or max_elapsed cannot wait for
        if delay > s.policy.c:get().hint_cap then return "hint_cap", nil end
        if left and delay >= left then return "deadline", nil end
        return "max_elapsed", nil
    end
    if left and delay >= left then
        return "deadline", ("not retried: the next attempt (in %.2g s) would come after the deadline (%.2g s left)"):format(delay, left)
    end
    return "max_elapsed", "not retried: the next attempt would pass the policy's max_elapsed"
end

local function after(s, ok, ...)
    if ok then
        local budget = s.policy.budget
        if budget then budget:finish() end
        if s.call ~= s.opts.call then s.call:finish() end
        return ...
    end
    local err = ...
    if not errors.is(err) then
        -- a programming error, not a failed call: never retried
        fail(s, err)
    end
    local attempt, deadline, policy = s.attempt, s.deadline, s.policy
    local budget = policy.budget
    err.attempts = attempt
    local left = deadline and (deadline - now()) or nil
    local action, delay = policy.c:decide(err.kind, attempt, now() - s.start, err.retry_after,
                                           left, err.should_retry, s.prev or 0)
    local stats = policy.stats
    if action == "retry" and budget and not budget:take(s) then
        stats.budget_denied = stats.budget_denied + 1
        action = "budget"
    end
    if action ~= "retry" then
        stats.gave_up = stats.gave_up + 1
        local stopped, clause = why_stopped(s, err, action, delay, left)
        if action == "rate_limited" then
            fail(s, errors.new("rate_limited",
                ("asked to wait %.1f s, beyond the %s; not retrying (last error: %s)"):format(delay,
                    stopped == "hint_cap" and "hint cap" or stopped == "max_elapsed" and "policy's max_elapsed"
                        or "deadline", tostring(err.message)),
                { retry_after = delay, attempts = attempt, status = err.status, cause = err, retry_stopped = stopped }))
        end
        if stopped then
            err.retry_stopped = stopped
            if clause and type(err.message) == "string" then err.message = err.message .. " (" .. clause .. ")" end
        end
        fail(s, err)
    end
    stats.retries = stats.retries + 1
    s.call:retry(err, delay)
    local slept = now()
    local _, serr = sleep(delay)
    s.call:wait_time(now() - slept)
    if budget then budget:release(s) end
    if serr then fail(s, serr) end
    s.prev = delay
    s.attempt = attempt + 1
    return run_attempt(s)
end

run_attempt = function(s)
    s.call:attempt()
    local deadline = s.deadline
    return after(s, pcall(s.fn, s.attempt, deadline and (deadline - now()) or nil, s.call, s.opts))
end

--- Run fn(attempt, remaining, call, opts) until it returns, retrying failures by
--- the policy; `remaining` is the seconds left before the deadline (nil
--- when none): pass it on as the attempt's own timeout so a deadline holds
--- across attempts; `call` is the weft.Call the run is recorded as (for
--- what the attempt measures: call:http(res), call:usage(...)). opts:
--- deadline (weft.now() time), timeout (seconds), provider, model,
--- operation, price (weft.calls options: the run is recorded as one call
--- with its attempts, retries and outcome), call (an open weft.Call to
--- record into instead; the caller finishes it), name. Raises the last
--- error (with `attempts` set) or a rate_limited error.
function M.run(policy, fn, opts)
    if type(policy) ~= "table" or not policy.c then error("weft.retry.run: expected a policy from weft.retry.policy", 2) end
    if type(fn) ~= "function" then error("weft.retry.run: expected a function", 2) end
    opts = opts or {}
    calls = calls or require "weft.calls"
    local call = opts.call
    if call == nil then
        call = calls.begin { provider = opts.provider, model = opts.model, operation = opts.operation or opts.name,
                             price = opts.price, id = opts.call_id }
    end
    local budget = policy.budget
    policy.stats.calls = policy.stats.calls + 1
    if budget then budget:begin() end
    -- The run's state: what cannot be read from elsewhere (the budget is
    -- the policy's; the call is the run's own when it is not opts.call),
    -- so the table stays in LuaJIT's smallest hash size (prev and
    -- max_attempts come with a retry).
    return run_attempt {
        policy = policy, fn = fn, call = call, opts = opts, start = now(), attempt = 1,
        deadline = opts.deadline or (opts.timeout and now() + opts.timeout),
    }
end

local function header(h, name)
    local v = h and h[name]
    if type(v) == "table" then v = v[1] end
    return v
end

--- The server's wait hint in a response, in seconds (retry-after-ms,
--- Retry-After seconds or date, Gemini RetryInfo.retryDelay in the body).
function M.hint(res)
    local h = res.headers
    local v = header(h, "retry-after-ms")
    local s = v and C.hint("retry-after-ms", v)
    if s then return s end
    v = header(h, "retry-after")
    s = v and C.hint("retry-after", v)
    if s then return s end
    if res.status == 429 and type(res.body) == "string" then
        local d = res.body:match('"retryDelay"%s*:%s*"([^"]+)"')
        if d then return C.hint("retrydelay", d) end
    end
    return nil
end

--- The error value for an HTTP response, or nil for 2xx/3xx: 429 ->
--- rate_limited (or quota_exhausted for a spent quota), 408/409/5xx/529 ->
--- transient, 401/403 -> auth, other 4xx -> invalid_request (the ladder of
--- weft.codec.status_kind, as the provider plugins classify); with status,
--- retry_after and should_retry (x-should-retry) set.
---@param res weft.http.Response
---@param provider? string
function M.http_error(res, provider)
    local st = res.status
    if st < 400 then return nil end
    local body = type(res.body) == "string" and res.body or ""
    -- the status ladder the shipped provider plugins use (weft.codec), and
    -- the spent quotas that only the body tells apart
    local kind = status_kind(st)
    if (st == 429 and (body:find("insufficient_quota", 1, true) or body:find("PerDay", 1, true)))
       or (st == 400 and body:find("credit balance is too low", 1, true)) then
        kind = "quota_exhausted"
    end
    local msg = body:match('"message"%s*:%s*"(.-)"') or ("HTTP " .. st)
    return errors.new(kind, ("HTTP %d: %s"):format(st, msg:sub(1, 200)), {
        status = st, provider = provider, retry_after = M.hint(res), should_retry = M.should_retry(res.headers),
    })
end

--- The server's own say on retrying (`x-should-retry: true|false`, as
--- OpenAI and Anthropic send it): true, false, or nil when it says nothing.
---@param headers table
---@return boolean?
function M.should_retry(headers)
    local v = header(headers, "x-should-retry")
    if v == "true" then return true elseif v == "false" then return false end
    return nil
end

return M
