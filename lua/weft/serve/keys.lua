--- weft.serve.keys: the virtual keys of `weft serve`.
---
--- A key is defined in the gateway configuration by name:
---
---     keys = {
---         team_a = { secret = "env:TEAM_A_KEY",        -- or sha256 = "<64 hex digits>"
---                    models = { "fast", "smart" },     -- default: every served model
---                    rpm = 60, tpm = 100000,           -- default: no limit of its own
---                    budget = { day = 5, month = 100 } },  -- USD; default: none
---     }
---
--- The value a client sends is compared by its SHA-256: the configuration
--- holds a digest or a secret reference (whose value stays in the host:
--- `_secrets.sha256_hex`), and neither the key nor its digest is ever
--- logged, put in a metric or an error. Metrics and logs name the key by
--- its configured name, so label cardinality is bounded by the
--- configuration.
---
--- Budgets: the USD cost of the key's answered calls (`result.cost`, a
--- policy model's `policy_usage.cost` when it made several target calls) is
--- added up per UTC day and per UTC month; a key whose spend has reached a
--- budget is refused with `quota_exhausted` before anything is sent. Calls
--- in flight when the budget is reached still finish, so a budget can be
--- overshot by at most the cost of the key's concurrent calls. Without a
--- known price a call costs nothing here (the provider's `prices` make it
--- count).
---
--- With the configuration's `redis`, several `weft serve` processes act as
--- one: a key's rpm/tpm/rpd are shared limits (weft.shared_limits, keys
--- `{weft:gwkey:NAME}:...`), and its spend is kept in Redis
--- (`{weft:gwkey:NAME}:spend:day:YYYY-MM-DD` and `:spend:month:YYYY-MM`,
--- INCRBYFLOAT, expiring after the period), read before each call. When
--- Redis fails, the shared limits fall back to the process's share (as a
--- provider's do) and budgets to what this process spent itself, logged
--- at warn once each way.
local limiter = require "weft.limiter"
local log = require "weft.log"
local secrets = require "weft.secrets"
local digest = require "weft._digest"
local _secrets = require "weft._secrets"

local type, pairs, ipairs, tostring, format, floor = type, pairs, ipairs, tostring, string.format, math.floor

local M = {}

local KEY_FIELDS = { secret = true, sha256 = true, models = true, rpm = true, tpm = true, rpd = true,
                     budget = true, priority = true }

local function positive(v) return type(v) == "number" and v > 0 and v < math.huge end

--- Check one key's definition; returns the key or raises a string naming it.
local function build(name, def, now)
    local where = "gateway.keys." .. tostring(name)
    if type(name) ~= "string" or not name:match("^[%w_%-%.]+$") or #name > 64 then
        error("gateway.keys: a key name is 1..64 letters, digits, '_', '-' or '.'", 0)
    end
    if type(def) ~= "table" then error(where .. ": expected a table", 0) end
    for k in pairs(def) do
        if not KEY_FIELDS[k] then
            error(format("%s.%s: unknown field (secret, sha256, models, rpm, tpm, rpd, budget, priority)", where,
                tostring(k)), 0)
        end
    end
    local k = { name = name }
    if def.sha256 ~= nil then
        if type(def.sha256) ~= "string" or not def.sha256:match("^%x+$") or #def.sha256 ~= 64 then
            error(where .. ".sha256: expected 64 hex digits (the SHA-256 of the key)", 0)
        end
        if def.secret ~= nil then error(where .. ": give secret or sha256, not both", 0) end
        k.digest = def.sha256:lower()
    elseif def.secret ~= nil then
        local h = def.secret
        if type(h) == "string" then
            local ok, got = pcall(secrets.secret, h)
            if not ok then
                error(format("%s.secret: %s", where, type(got) == "table" and tostring(got.message) or tostring(got)), 0)
            end
            h = got
        end
        if not secrets.is(h) then error(where .. ".secret: expected a reference such as \"env:NAME\" or a handle", 0) end
        k.secret = h
        k.digest = _secrets.sha256_hex(h)
        if not k.digest then error(where .. ".secret: no value loaded", 0) end
    else
        error(where .. ": needs secret (a reference such as \"env:NAME\") or sha256", 0)
    end
    if def.models ~= nil then
        if type(def.models) ~= "table" then error(where .. ".models: expected a list of model names", 0) end
        k.models = {}
        for i, m in ipairs(def.models) do
            if type(m) ~= "string" then error(format("%s.models[%d]: expected a string", where, i), 0) end
            k.models[m] = true
        end
    end
    local lim = {}
    for _, f in ipairs { "rpm", "tpm", "rpd" } do
        if def[f] ~= nil then
            if not positive(def[f]) then error(format("%s.%s: expected a number > 0", where, f), 0) end
            lim[f] = def[f]
        end
    end
    if next(lim) then
        lim.name = "key:" .. name
        k.limiter = limiter.new(lim)
        k.limits = lim
    end
    if def.budget ~= nil then
        if type(def.budget) ~= "table" then error(where .. ".budget: expected {day =, month =} in USD", 0) end
        for p, v in pairs(def.budget) do
            if p ~= "day" and p ~= "month" then error(format("%s.budget.%s: unknown period (day, month)", where, tostring(p)), 0) end
            if not positive(v) then error(format("%s.budget.%s: expected USD > 0", where, p), 0) end
        end
        k.budget = { day = def.budget.day, month = def.budget.month }
    end
    if def.priority ~= nil then
        if def.priority ~= "high" and def.priority ~= "normal" and def.priority ~= "low" then
            error(where .. ".priority: expected high, normal or low", 0)
        end
        k.priority = def.priority
    end
    k.spent = { day = 0, month = 0, day_id = nil, month_id = nil }
    return k
end

-- The UTC day and month a wall-clock time falls in.
local function periods(t)
    local d = os.date("!*t", floor(t))
    return format("%04d-%02d-%02d", d.year, d.month, d.day), format("%04d-%02d", d.year, d.month)
end

--- A key set from the `keys` table of the gateway configuration. `prev`
--- (the set this one replaces on a reload) hands over spend and limiter
--- state of keys whose name and limits are unchanged. `clock` gives wall
--- seconds (weft.time; tests inject one).
function M.new(defs, prev, clock)
    clock = clock or weft.time
    local set = { by_digest = {}, by_name = {}, count = 0, clock = clock, pending = {} }
    if defs ~= nil and type(defs) ~= "table" then error("gateway.keys: expected a table of name -> key", 0) end
    for name, def in pairs(defs or {}) do
        local k = build(name, def)
        if set.by_digest[k.digest] then
            error(format("gateway.keys.%s: the same key as gateway.keys.%s", name, set.by_digest[k.digest].name), 0)
        end
        local old = prev and prev.by_name[name]
        if old then
            k.spent = old.spent
            local same = old.limits and k.limits and old.limits.rpm == k.limits.rpm and
                old.limits.tpm == k.limits.tpm and old.limits.rpd == k.limits.rpd
            if same then k.limiter = old.limiter end
        end
        set.by_digest[k.digest] = k
        set.by_name[name] = k
        set.count = set.count + 1
    end
    return setmetatable(set, { __index = M })
end

local DAY, MONTH = 2 * 86400 * 1000, 32 * 86400 * 1000 -- the spend keys' TTLs, ms

--- Share the set's limits and spend through Redis (`redis`: the
--- configuration's, as weft.model.config() gives it), or keep them in the
--- process (nil). Called once the configuration is applied.
function M.share(set, redis)
    if not redis then return end
    local cfg = require "weft._config"
    local shared_limits = require "weft.shared_limits"
    local client = cfg.redis_client(redis)
    set.redis = client
    for name, k in pairs(set.by_name) do
        if k.limits then
            local lim = {}
            for f, v in pairs(k.limits) do if f ~= "name" then lim[f] = v end end
            k.shared = shared_limits.new("gwkey:" .. name, lim, { client = client, key = "gwkey:" .. name,
                on_failure = redis.on_failure or "local", processes = redis.processes })
        end
        k.spend_keys = format("{weft:gwkey:%s}:spend:", name)
    end
end

-- Redis failed (or works again): said once each way.
local function redis_state(set, down, err)
    if down == (set.redis_down or false) then return end
    set.redis_down = down
    if down then
        log.warn("gateway budgets: Redis fails, each process counts what it spent itself",
            { error = tostring(err) })
    else
        log.warn("gateway budgets: Redis works again")
    end
end

--- Admit one request of `tokens` (estimated) for key `k` now, or raise
--- `rate_limited` with `retry_after`. Returns what reconcile needs.
function M.admit(set, k, tokens, priority)
    if k.shared then
        local _, booked = k.shared:admit({ requests = 1, tokens = tokens }, weft.now(), priority)
        return booked
    end
    k.limiter:acquire({ requests = 1, tokens = tokens }, { timeout = 0 })
    return tokens
end

--- The real tokens of an admitted request (0 when it failed).
function M.reconcile(set, k, booked, estimated, actual)
    if k.shared then k.shared:reconcile(booked, actual, estimated)
    elseif k.limiter then k.limiter:reconcile(estimated, actual) end
end

--- Give back an admitted request that was not sent. (With Redis, the
--- shared limits give back its tokens but not its request: a GCRA slot
--- once booked stays booked, so a refused request counts against rpm.)
function M.refund(set, k, booked, estimated)
    if k.shared then k.shared:reconcile(booked, 0, estimated)
    elseif k.limiter then k.limiter:refund({ requests = 1, tokens = estimated }) end
end

--- The key a client presented, or nil.
function M.find(set, presented)
    if type(presented) ~= "string" or presented == "" or #presented > 1024 then return nil end
    return set.by_digest[digest.sha256_hex(presented)]
end

--- Whether key `k` may use model `name`.
function M.allows(k, name)
    return not k.models or k.models[name] == true
end

-- Roll the spend over when the day or month changed.
local function current(set, k)
    local day, month = periods(set.clock())
    local s = k.spent
    if s.day_id ~= day then s.day_id, s.day = day, 0 end
    if s.month_id ~= month then s.month_id, s.month = month, 0 end
    return s
end

--- nil when `k` may spend, else the period whose budget is spent ("day"
--- or "month"), the budget and what was spent.
function M.over_budget(set, k)
    local b = k.budget
    if not b then return nil end
    local s = current(set, k)
    if set.redis then
        local ok, r = pcall(set.redis.pipeline, set.redis, { { "GET", k.spend_keys .. "day:" .. s.day_id },
                                                             { "GET", k.spend_keys .. "month:" .. s.month_id } })
        if ok and type(r) == "table" then
            redis_state(set, false)
            local d, m = tonumber(r[1]) or 0, tonumber(r[2]) or 0
            -- the fleet's spend: what remaining() shows, and the fallback's start
            if d > s.day then s.day = d end
            if m > s.month then s.month = m end
            if b.day and d >= b.day then return "day", b.day, d end
            if b.month and m >= b.month then return "month", b.month, m end
            return nil
        end
        redis_state(set, true, r)
    end
    if b.day and s.day >= b.day then return "day", b.day, s.day end
    if b.month and s.month >= b.month then return "month", b.month, s.month end
    return nil
end

--- Add `usd` to the key's spend.
function M.spend(set, k, usd)
    if type(usd) ~= "number" or usd <= 0 or usd ~= usd then return end
    local s = current(set, k)
    s.day = s.day + usd
    s.month = s.month + usd
    if set.redis then
        -- in a task of its own: the client's answer does not wait for Redis
        local dk, mk = k.spend_keys .. "day:" .. s.day_id, k.spend_keys .. "month:" .. s.month_id
        local pending = set.pending
        local t
        t = weft.spawn(function()
            local ok, r = pcall(set.redis.pipeline, set.redis, {
                { "INCRBYFLOAT", dk, format("%.10f", usd) }, { "PEXPIRE", dk, DAY },
                { "INCRBYFLOAT", mk, format("%.10f", usd) }, { "PEXPIRE", mk, MONTH } })
            pending[t] = nil
            if ok and type(r) == "table" and not require("weft.error").is(r[1]) then redis_state(set, false)
            else redis_state(set, true, ok and r[1] or r) end
        end)
        pending[t] = true
    end
end

--- Wait until the spend written to Redis so far is written (or failed):
--- what a drain does before the process ends, so no spend is lost.
function M.flush(set)
    for t in pairs(set.pending) do pcall(t.wait, t) end
end

--- What is left of each budget: {day =, month =} (nil for no budget).
function M.remaining(set, k)
    local b = k.budget
    if not b then return nil end
    local s = current(set, k)
    return { day = b.day and math.max(0, b.day - s.day), month = b.month and math.max(0, b.month - s.month) }
end

return M
