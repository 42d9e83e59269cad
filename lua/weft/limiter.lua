--- weft.limiter: rate limiting in the host (runtime/limiter.c).
---
--- ```lua
--- local lim = weft.limiter.new { rpm = 500, tpm = 200000 }
--- local waited = lim:acquire { tokens = 1200 }  -- waits until every limit admits it; the seconds it waited
--- lim:acquire(1, { priority = "high", timeout = 2 })
--- lim:reconcile(1200, 873)                     -- the answer used 873 tokens
--- lim:refund { tokens = 1200 }                  -- admitted, then not sent: give it all back
--- lim:observe(res.headers)                     -- tighten to what the provider reports
--- ```
---
--- Limits: `rps`, `rpm`, `rpd` (requests per second/minute/day), `tps`, `tpm`,
--- `tpd` (tokens), or `limits = {{limit=, per="second"|"minute"|"day"|seconds,
--- unit="requests"|"tokens", burst=}}`. Each limit is a token bucket whose
--- size (burst) is the limit itself unless given; `burst` applies to the
--- request limit with the shortest period, `token_burst` to the token
--- limit with the shortest period (a small one keeps a minute's tokens from
--- going out at once, for a provider counting in fixed windows). Every
--- limit must admit a call.
--- Waiters queue by priority ("high", "normal", "low", or 1..n), FIFO within
--- a level; a waiter older than `aging` seconds (default 30) is served before
--- younger ones whatever their priority. A call whose deadline cannot be met
--- fails at once with kind `rate_limited` and `retry_after` = the expected wait.
--- acquire returns the seconds the caller waited (an error it raises
--- carries them as `waited`): whoever accounts the wait (a weft.Call, as
--- waiting rather than overhead) records it from there.
local C = require "weft._limiter"

local type, pairs, error, tonumber = type, pairs, error, tonumber
local now = require("weft._task").now

local M = {}

local PERIODS = { second = 1, minute = 60, hour = 3600, day = 86400 }
local SHORT = {
    rps = { 1, "requests" }, rpm = { 60, "requests" }, rpd = { 86400, "requests" },
    tps = { 1, "tokens" }, tpm = { 60, "tokens" }, tpd = { 86400, "tokens" },
}
local PRIORITY = { high = 1, normal = 2, low = 3 }

local Limiter = {}
Limiter.__index = Limiter

---@class weft.LimiterOptions
---@field rps? number
---@field rpm? number
---@field rpd? number
---@field tps? number
---@field tpm? number
---@field tpd? number
---@field burst? number bucket size of the shortest request limit
---@field token_burst? number bucket size of the shortest token limit
---@field limits? {limit: number, per: string|number, unit?: "requests"|"tokens", burst?: number, name?: string}[]
---@field priorities? integer levels (default 3: high, normal, low)
---@field aging? number seconds after which a waiter goes first (default 30; 0: off)
---@field name? string labels the limiter's metrics
---@field metrics? boolean default true: its state is published under its name at once (see M.publish); false: only once published

local metrics = require "weft.metrics"
local count = 0
local PRIO_NAMES = { "high", "normal", "low" }
local NOTHING = { levels = {}, queues = {} }

-- The limiter whose state the gauges show under each name, and the series
-- shown for each name: weft_limiter_level{limiter, limit} (one per limit
-- the limiter has) and weft_limiter_queue_length{limiter, priority}. A
-- series the published limiter does not have (a limit configured before
-- and not now) leaves the exposition; so does every series of a name
-- whose limiter was withdrawn or collected.
local published = setmetatable({}, { __mode = "v" }) -- name -> limiter
local shown = {} -- name -> {levels = {limit = true}, queues = {priority = true}}

-- Refresh the gauges before every exposition.
local function collect()
    local std = metrics.std
    local names = {}
    for name in pairs(shown) do names[name] = true end
    for name in pairs(published) do names[name] = true end
    for name in pairs(names) do
        local lim, was = published[name], shown[name] or NOTHING
        local levels, queues = {}, {}
        if lim then
            local st = lim.c:state()
            for dim, l in pairs(st.limits) do
                std.limiter_level:set(l.level, name, dim)
                levels[dim] = true
            end
            for p, n in ipairs(st.queue) do
                local pname = PRIO_NAMES[p] or tostring(p)
                std.limiter_queue:set(n, name, pname)
                queues[pname] = true
            end
        end
        for dim in pairs(was.levels) do
            if not levels[dim] then std.limiter_level:unset(name, dim) end
        end
        for pname in pairs(was.queues) do
            if not queues[pname] then std.limiter_queue:unset(name, pname) end
        end
        shown[name] = lim and { levels = levels, queues = queues } or nil
    end
end
metrics.collect(M, collect)

--- Make `lim` the limiter whose state weft_limiter_level and
--- weft_limiter_queue_length show under `name` (its name), replacing the
--- one published before under that name: the limits the new one lacks
--- leave the exposition. `lim` nil: nothing is shown under `name` any more
--- (a provider configured without limits). A limiter made with
--- `metrics = false` is shown only once published (weft.configure
--- publishes a provider's limiter when the configuration is accepted).
---@param name string
---@param lim? weft.Limiter
function M.publish(name, lim)
    if type(name) ~= "string" then error("weft.limiter.publish: name must be a string", 2) end
    if lim ~= nil and (getmetatable(lim) ~= Limiter or lim.name ~= name) then
        error("weft.limiter.publish: expected a limiter named '" .. name .. "'", 2)
    end
    published[name] = lim
end

--- Create a limiter (one key: one provider account, say). `name` labels
--- its metrics (default "limiter<N>").
---@param opts weft.LimiterOptions
---@return weft.Limiter
function M.new(opts)
    if type(opts) ~= "table" then error("weft.limiter.new: expected a table of limits", 2) end
    local dims = {}
    for k, v in pairs(opts) do
        local s = SHORT[k]
        if s then
            if type(v) ~= "number" or v <= 0 then error("weft.limiter.new: " .. k .. " must be a positive number", 2) end
            dims[#dims + 1] = { name = k, limit = v, period = s[1], unit = s[2] }
        elseif k ~= "limits" and k ~= "burst" and k ~= "token_burst" and k ~= "priorities" and k ~= "aging" and k ~= "name"
            and k ~= "metrics" then
            error("weft.limiter.new: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    for i, l in ipairs(opts.limits or {}) do
        local period = type(l.per) == "number" and l.per or PERIODS[l.per or ""]
        if not period then error("weft.limiter.new: limits[" .. i .. "].per must be second, minute, hour, day or seconds", 2) end
        if l.unit and l.unit ~= "requests" and l.unit ~= "tokens" then
            error("weft.limiter.new: limits[" .. i .. "].unit must be requests or tokens", 2)
        end
        dims[#dims + 1] = { name = l.name or ("limit" .. i), limit = l.limit, period = period,
                            unit = l.unit or "requests", burst = l.burst }
    end
    if #dims == 0 then error("weft.limiter.new: no limit given (rps, rpm, rpd, tps, tpm, tpd or limits)", 2) end
    table.sort(dims, function(a, b) return a.period < b.period end)
    for _, b in ipairs { { "burst", "requests" }, { "token_burst", "tokens" } } do
        local v = opts[b[1]]
        if v ~= nil then
            if type(v) ~= "number" or not (v >= 1) then error("weft.limiter.new: " .. b[1] .. " must be a number >= 1", 2) end
            for _, d in ipairs(dims) do
                if d.unit == b[2] then d.burst = v break end
            end
        end
    end
    local nprio = opts.priorities or 3
    if opts.name ~= nil and type(opts.name) ~= "string" then error("weft.limiter.new: name must be a string", 2) end
    if opts.metrics ~= nil and type(opts.metrics) ~= "boolean" then error("weft.limiter.new: metrics must be a boolean", 2) end
    local c = C.new(dims, nprio, opts.aging or 30)
    count = count + 1
    local lim = setmetatable({ c = c, nprio = nprio, name = opts.name or ("limiter" .. count) }, Limiter)
    if opts.metrics ~= false then published[lim.name] = lim end
    return lim
end

---@class weft.Limiter
---@field c userdata

-- requests, tokens of a cost: a number of requests (default 1) or
-- {requests=, tokens=}. Misuse is reported at the method's caller.
local function cost_of(cost, method)
    if cost == nil then return 1, 0 end
    if type(cost) == "number" then return cost, 0 end
    if type(cost) == "table" then return cost.requests or 1, cost.tokens or 0 end
    error("limiter:" .. method .. ": cost must be a number or {requests=, tokens=}", 3)
end

--- Wait until the limits admit `cost` (a number of requests, default 1, or
--- {requests=, tokens=}). opts: priority ("high"|"normal"|"low"|integer),
--- timeout (seconds) or deadline (a weft.now() time). Returns the seconds
--- it waited (0 when admitted at once). Raises kind `rate_limited` (with
--- retry_after) when the deadline cannot be met; the error value it raises
--- (that, or `cancelled`) carries `waited`, the seconds it waited first.
---@param cost? number|{requests?: number, tokens?: number}
---@param opts? {priority?: string|integer, timeout?: number, deadline?: number}
---@return number waited
function Limiter:acquire(cost, opts)
    local requests, tokens = cost_of(cost, "acquire")
    local prio, deadline = 2, 0
    if opts then
        local p = opts.priority
        if p ~= nil then
            prio = PRIORITY[p] or (type(p) == "number" and p) or error("limiter:acquire: unknown priority " .. tostring(p), 2)
        end
        if opts.deadline then deadline = opts.deadline
        elseif opts.timeout then deadline = now() + opts.timeout end
    end
    -- (the C side measures the wait: no clock read when admitted at once)
    local waited, err = self.c:acquire(requests, tokens, prio - 1, deadline)
    if not waited then error(err, 0) end
    return waited
end

--- Correct the token estimate of an admitted call.
function Limiter:reconcile(estimated, actual)
    self.c:reconcile(estimated, actual)
end

--- Give back the cost of an admitted call that did not go out (refused
--- after admission, say, by a circuit breaker that opened while it waited):
--- the units return to every limit (up to its burst) and the next waiter
--- may take them. `cost` as for acquire: a number of requests (default 1)
--- or {requests=, tokens=}. Counted in state().refunded.
---@param cost? number|{requests?: number, tokens?: number}
function Limiter:refund(cost)
    self.c:refund(cost_of(cost, "refund"))
end

--- Tighten the local state to what the provider reports in its headers
--- (OpenAI x-ratelimit-*, Anthropic anthropic-ratelimit-*) and to a 429's
--- Retry-After. Returns the hint (seconds) it applied, if any.
---@param headers table<string, string|string[]>
---@param status? integer
local hint_of, rate
local UNITS = { "requests", "tokens" }

local function first(v)
    if type(v) == "table" then return v[1] end
    return v
end

function Limiter:observe(headers, status)
    hint_of = hint_of or require("weft._retry").hint
    -- (the headers and how they are read: weft._http_client.rate, which
    -- the pipeline calls on the answer itself)
    rate = rate or require("weft._http_client").rate
    local rr, rt, _, _, sr, st = rate({ headers = headers }, true)
    if rr then self.c:observe("requests", rr, sr or 0) end
    if rt then self.c:observe("tokens", rt, st or 0) end
    if status == 429 then
        local ms, ra = first(headers["retry-after-ms"]), first(headers["retry-after"])
        local wait = (ms and hint_of("retry-after-ms", ms)) or (ra and hint_of("retry-after", ra))
        if wait then
            self.c:backoff(wait)
            return wait
        end
    end
end

--- Apply what a provider plugin read from an answer's rate-limit headers:
--- {requests = {remaining=, reset=}, tokens = {remaining=, reset=},
--- retry_after = seconds}. Each part is optional.
---@param rl {requests?: {remaining?: number, reset?: number}, tokens?: {remaining?: number, reset?: number}, retry_after?: number}
function Limiter:apply(rl)
    for i = 1, 2 do
        local unit = UNITS[i]
        local u = rl[unit]
        local rem = type(u) == "table" and tonumber(u.remaining)
        if rem then self.c:observe(unit, rem, tonumber(u.reset) or 0) end
    end
    local wait = tonumber(rl.retry_after)
    if wait and wait > 0 then self.c:backoff(wait) end
end

--- One reading of the provider's state: `remaining` units of `unit`
--- ("requests" or "tokens") until `reset` seconds from now, and/or a wait
--- of `retry_after` seconds before the next request (apply without a
--- table per answer).
---@param unit? "requests"|"tokens"
---@param remaining? number
---@param reset? number
---@param retry_after? number
function Limiter:report(unit, remaining, reset, retry_after)
    if unit and remaining then self.c:observe(unit, remaining, reset or 0) end
    if retry_after and retry_after > 0 then self.c:backoff(retry_after) end
end

--- Introspection: levels of every limit, queue length per priority, next
--- admission time (seconds from now), admitted, refused and refunded counts.
function Limiter:state()
    return self.c:state()
end

return M
