--- weft._config: the providers' configuration behind weft.configure
--- (weft.model): checks of every key with the line it is on, and the live
--- instance of each provider (limiter, breaker, retry policy, plugin
--- options, auth placement) the call pipeline runs on.
---
--- `providers` (name -> the raw configuration, validated) and `instances`
--- (name -> the instance built from it) are this module's tables; `reset`
--- clears them in place, so a module may keep a reference to them.
local plugins = require "weft.plugins"
local calls = require "weft.calls"
local retry = require "weft.retry"
local limiter_mod = require "weft.limiter"
local breaker_mod = require "weft.breaker"
local errors = require "weft.error"

local type, pairs, ipairs, tostring, error, pcall, setmetatable =
    type, pairs, ipairs, tostring, error, pcall, setmetatable
local format, concat = string.format, table.concat

local M = {}

-- Provider keys the host reads; any other key is the plugin's (its schema).
local HOST_KEYS = {
    plugin = "string", base_url = "string", secret = "string|userdata|boolean", auth = "table",
    limits = "table", retry = "table", breaker = "table|boolean", timeout = "number",
    connect_timeout = "number", idle_timeout = "number", prices = "table",
}
-- Numeric options and their ranges: NaN, infinities, zero where a rate or
-- a period is meant, fractions where a count is meant, and values so far
-- out that they can only be a mistake are refused at configure time.
-- A rate's smallest value is one a day; its largest 10^12 per unit.
local function rate(per) return { min = per / 86400, max = 1e12, desc = "a rate" } end
-- limits.shared: a Redis URL, or {url=, password=, timeout=, on_failure=,
-- processes=}; nil when good, else what is wrong.
local SHARED_KEYS = { url = true, password = true, timeout = true, on_failure = true, processes = true, key = true }
local function shared_rule(v)
    if type(v) == "string" then v = { url = v } end
    if type(v) ~= "table" then return "must be a Redis URL or {url =, password =, on_failure =, processes =, timeout =}" end
    for k in pairs(v) do
        if not SHARED_KEYS[k] then return "unknown key '" .. tostring(k) .. "' (url, password, timeout, on_failure, processes)" end
    end
    if type(v.url) ~= "string" then return "url is required (redis://HOST:PORT or unix:///PATH)" end
    local ok, err = pcall(require("weft.redis")._parse_url, v.url)
    if not ok then return (tostring(type(err) == "table" and err.message or err):gsub("^weft%.redis: ", "")) end
    if v.on_failure ~= nil and v.on_failure ~= "local" and v.on_failure ~= "fail" then
        return "on_failure must be \"local\" or \"fail\""
    end
    if v.processes ~= nil and (type(v.processes) ~= "number" or v.processes < 1 or v.processes ~= math.floor(v.processes)) then
        return "processes must be a whole number >= 1 (how many processes share the limits)"
    end
    if v.timeout ~= nil and (type(v.timeout) ~= "number" or not (v.timeout > 0) or v.timeout > 60) then
        return "timeout must be seconds in (0, 60]"
    end
    return nil
end

--- The configuration's global `redis` (weft.configure{redis = ...}): the
--- options of shared_rule, normalized to a table, or nil.
M.redis = nil

-- One client per Redis (url, timeouts, password) in the process, whatever
-- shares it: limits, breakers, retry budgets, caches of every provider.
local clients = {}

--- The client and options for `v`: true (the global `redis`), a URL, or
--- {url=, password=, timeout=, ...}. Raises a message when `v` is true and
--- no global `redis` is configured.
function M.redis_client(v)
    if v == true then
        v = M.redis
        if not v then error("true needs the configuration's redis setting (weft.configure{redis = ...})", 0) end
    end
    if type(v) == "string" then v = { url = v } end
    local t = v.timeout or 0.25
    local k = format("%s|%g", v.url, t)
    local by_pw = clients[k]
    if not by_pw then
        by_pw = setmetatable({}, { __mode = "v" })
        clients[k] = by_pw
    end
    local pw = v.password or false
    local c = by_pw[pw]
    if not c then
        c = require("weft.redis").connect { url = v.url, password = v.password, timeout = t, connect_timeout = t }
        by_pw[pw] = c
    end
    return c, v
end

M.shared_rule = function(v) return shared_rule(v) end

-- The `shared` of a provider's breaker or retry policy: true (the Redis of
-- limits.shared, else the configuration's redis), false, or a Redis URL or
-- table; nil when good, else what is wrong.
local function optional_shared_rule(v, raw)
    if v == true then
        return not (raw.limits and raw.limits.shared) and not M.redis
            and "true needs limits.shared or the configuration's redis setting (or give the Redis here)" or nil
    end
    if v == false then return nil end
    return shared_rule(v)
end

local LIMIT_KEYS = {
    rps = rate(1), rpm = rate(60), rpd = rate(86400), tps = rate(1), tpm = rate(60), tpd = rate(86400),
    burst = { min = 1, max = 1e12 }, token_burst = { min = 1, max = 1e12 }, priorities = { min = 1, max = 16, int = true }, aging = { min = 0, max = 86400 },
}
local RETRY_KEYS = {
    base = { min = 0, max = 3600 }, cap = { min = 0, max = 86400 }, multiplier = { min = 1, max = 100 },
    jitter = true, max_attempts = { min = 1, max = 1000, int = true }, max_elapsed = { min = 0, max = 1e9 },
    hint_cap = { min = 0, max = 1e9 }, seed = { min = 0, max = 9e15, int = true }, budget = true, shared = true,
}
local BREAKER_KEYS = {
    threshold = { min = 0.0001, max = 1 }, min_calls = { min = 1, max = 1e9, int = true },
    window = { min = 0.01, max = 86400 }, cooldown = { min = 0, max = 86400 }, probes = { min = 1, max = 1000, int = true },
}
local TIMEOUT_RULE = { min = 0.001, max = 86400 }
local PRICE_RULE = { min = 0, max = 1e6 }

-- nil when `v` satisfies `rule` ({min=, max=, int=}), else why not.
local function number_rule(v, rule)
    if type(v) ~= "number" then return "must be a number, got " .. type(v) end
    if v ~= v then return "must be a number, got NaN" end
    if v == math.huge or v == -math.huge then return "must be finite" end
    if rule.int and v ~= math.floor(v) then return format("must be a whole number, got %s", tostring(v)) end
    if v < rule.min or v > rule.max then
        if rule.desc == "a rate" then
            return format("must be a rate between one a day (%.6g) and %g, got %s", rule.min, rule.max, tostring(v))
        end
        return format("must be between %g and %g, got %s", rule.min, rule.max, tostring(v))
    end
end

local bad_auth = plugins.bad_auth

-- configured providers (raw, validated) and the instances built from them
local provider_cfg, instances = {}, {}
M.providers, M.instances = provider_cfg, instances

------------------------------------------------------------ config errors

--- Where a configuration came from: file, the line its table starts on, and
--- the file's lines (to find the line of a key).
---@param file? string
---@param line? integer
---@return {file?: string, line?: integer, lines?: string[]}
local function source_of(file, line)
    local f = file and io.open(file, "r")
    if not f then return { file = file, line = line } end
    local lines = {}
    for l in f:lines() do lines[#lines + 1] = l end
    f:close()
    return { file = file, line = line or 1, lines = lines }
end

M.source_of = source_of

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- The line of the key path (`{"providers", "openai", "limits", "rpm"}`):
-- each key is looked for from the line of the one before it.
local function locate(where, path)
    if not where then return nil end
    local line = where.line or 1
    if not where.lines then return line end
    for _, k in ipairs(path) do
        if type(k) == "string" then
            local e = escape(k)
            local p1, p2 = "%f[%w_]" .. e .. "%f[^%w_]%s*=", "%[%s*[\"']" .. e .. "[\"']%s*%]%s*="
            for i = line, #where.lines do
                local l = where.lines[i]
                if l:find(p1) or l:find(p2) then line = i break end
            end
        end
    end
    return line
end

local function dotted(path)
    local out = {}
    for i, k in ipairs(path) do
        out[i] = type(k) == "number" and ("[" .. k .. "]") or tostring(k)
    end
    return (concat(out, "."):gsub("%.%[", "["))
end

--- Raise a configuration error naming the key path (`{"providers",
--- "openai", "limits", "rpm"}`) and, when `where` has the file, its line.
---@param where? {file?: string, line?: integer, lines?: string[]}
---@param path (string|integer)[]
---@param msg string
local function config_error(where, path, msg)
    local loc = ""
    if where and where.file then loc = format("%s:%d: ", where.file, locate(where, path) or 0) end
    error(format("%sconfig: %s: %s", loc, dotted(path), msg), 0)
end

M.config_error = config_error

local function typed(v, spec)
    for t in spec:gmatch("[^|]+") do
        if type(v) == t then return true end
    end
    return false
end

------------------------------------------------------------ providers

--- The plugin's configuration from the provider's own keys, or nil, err.
---@param p table the provider plugin (one version)
---@param raw table the provider's configuration
---@return table?, string?
local function plugin_config(p, raw)
    local opts = {}
    for k, v in pairs(raw) do
        if not HOST_KEYS[k] then opts[k] = v end
    end
    local ok, cfg = pcall(plugins.configure, p, opts)
    if not ok then return nil, tostring(cfg) end
    return cfg
end

M.plugin_config = plugin_config

-- Check a provider's configuration; errors name the key and line.
local function check_provider(name, raw, where)
    local path = { "providers", name }
    if type(raw) ~= "table" then config_error(where, path, "must be a table") end
    for k, v in pairs(raw) do
        local spec = HOST_KEYS[k]
        if spec and not typed(v, spec) then
            config_error(where, { "providers", name, k }, format("must be a %s, got %s", spec:gsub("|", " or "), type(v)))
        end
    end
    local pname = raw.plugin or name
    local entry, err = plugins.get("provider", pname)
    if not entry then config_error(where, { "providers", name, raw.plugin and "plugin" or nil }, err) end
    local p = entry.plugin
    if not entry.shipped then
        -- A plugin that is not weft's own does not decide where a credential
        -- goes: its default secret is not used, and a configured secret goes
        -- only to a configured base_url.
        if raw.secret == nil and type(p.secret) == "string" then
            config_error(where, { "providers", name, "secret" }, format(
                "required: the %s plugin (%s) is not shipped with weft, so its default secret %s is not used; " ..
                "name the secret in the configuration (or secret = false)", pname, entry.path, p.secret))
        end
        if raw.secret and raw.base_url == nil then
            config_error(where, { "providers", name, "base_url" }, format(
                "required with a secret: the %s plugin (%s) is not shipped with weft, so a credential goes only " ..
                "to a base_url given in the configuration", pname, entry.path))
        end
    end
    local base = raw.base_url or p.base_url
    if type(base) ~= "string" then
        config_error(where, { "providers", name, "base_url" }, "required (the " .. pname .. " plugin has no default)")
    end
    if not base:match("^https?://[^/]") then
        config_error(where, { "providers", name, "base_url" }, "must be an http:// or https:// URL, got " .. base)
    end
    if type(raw.secret) == "string" and not raw.secret:match("^[%w_]+:.") then
        config_error(where, { "providers", name, "secret" }, "must be a reference such as env:NAME, got " .. raw.secret)
    end
    for k, v in pairs(raw.limits or {}) do
        if k == "shared" then
            local why
            if v == true then
                why = not M.redis and "true needs the configuration's redis setting (weft.configure{redis = ...})" or nil
            elseif v ~= false then
                why = shared_rule(v)
            end
            if why then config_error(where, { "providers", name, "limits", "shared" }, why) end
        else
            local rule = LIMIT_KEYS[k]
            if not rule then config_error(where, { "providers", name, "limits", k }, "unknown limit") end
            local why = number_rule(v, rule)
            if why then config_error(where, { "providers", name, "limits", k }, why) end
        end
    end
    for k, v in pairs(raw.retry or {}) do
        local rule = RETRY_KEYS[k]
        if not rule then config_error(where, { "providers", name, "retry", k }, "unknown retry option") end
        if k == "shared" then
            local why = optional_shared_rule(v, raw)
            if why then config_error(where, { "providers", name, "retry", "shared" }, why) end
        end
        local why = type(rule) == "table" and number_rule(v, rule)
        if why then config_error(where, { "providers", name, "retry", k }, why) end
    end
    if type(raw.breaker) == "table" then
        for k, v in pairs(raw.breaker) do
            if k == "shared" then
                local why = optional_shared_rule(v, raw)
                if why then config_error(where, { "providers", name, "breaker", "shared" }, why) end
            else
                local rule = BREAKER_KEYS[k]
                if not rule then config_error(where, { "providers", name, "breaker", k }, "unknown breaker option") end
                local why = number_rule(v, rule)
                if why then config_error(where, { "providers", name, "breaker", k }, why) end
            end
        end
    end
    for _, k in ipairs { "timeout", "connect_timeout", "idle_timeout" } do
        local why = raw[k] ~= nil and number_rule(raw[k], TIMEOUT_RULE)
        if why then config_error(where, { "providers", name, k }, why) end
    end
    if raw.auth then
        local why = bad_auth(raw.auth)
        if why then config_error(where, { "providers", name, "auth", why[1] }, why[2]) end
    end
    for model, pr in pairs(raw.prices or {}) do
        local ok = type(pr) == "table"
        if ok then
            for pk, pv in pairs(pr) do
                if (pk ~= "input" and pk ~= "output") or number_rule(pv, PRICE_RULE) then ok = false end
            end
            ok = ok and pr.input ~= nil and pr.output ~= nil
        end
        if not ok then
            config_error(where, { "providers", name, "prices", model },
                "must be {input = USD per 1M tokens, output = ...}, finite numbers >= 0")
        end
    end
    local _, perr = plugin_config(p, raw)
    if perr then
        -- "provider NAME: KEY: message" is a schema validator's refusal
        local vkey = perr:match("^provider [%w_%-]+: ([%w_]+): ")
        local key = vkey or perr:match("unknown key '([^']+)'") or perr:match("^[^:]*: ([%w_]+) must be")
            or perr:match("missing required key '([^']+)'")
        local msg = vkey and perr:gsub("^provider [%w_%-]+: [%w_]+: ", "") or perr:gsub("^provider [%w_%-]+: ", "")
        config_error(where, { "providers", name, key }, msg)
    end
    return entry
end

-- The options (with `client`) of a provider's `shared` setting `v`: a
-- URL or table, true (the Redis of limits.shared, else the global redis),
-- false (not shared); nil (the limits: shared when a global redis is
-- configured; `explicit`: not shared).
local function shared_of(v, raw, explicit)
    if v == false or (v == nil and (explicit or not M.redis)) then return nil end
    if v == nil or v == true then
        local ls = raw.limits and raw.limits.shared
        v = (ls ~= nil and ls ~= true and ls ~= false) and ls or true
    end
    local client, o = M.redis_client(v)
    local out = { client = client }
    if M.redis and v == true then
        for k, x in pairs(M.redis) do out[k] = x end
    end
    for k, x in pairs(type(o) == "table" and o or {}) do out[k] = x end
    out.client = client
    return out
end
M.shared_of = shared_of

--- Check a provider's configuration and build its live instance: limiter,
--- breaker, retry policy. Raises a configuration error (config_error).
---@param name string
---@param raw table
---@param where? table source_of's answer, for error lines
---@return table instance
local function build(name, raw, where)
    local entry = check_provider(name, raw, where)
    local p = entry.plugin
    local function made(what, fn, opts)
        local ok, v = pcall(fn, opts)
        if not ok then config_error(where, { "providers", name, what }, tostring(v)) end
        return v
    end
    -- Without limits: one nobody will meet. The limiter's gauges show once
    -- the configuration is accepted (commit), and only for limits somebody
    -- configured.
    local lim_opts = { name = name, metrics = false }
    for k, v in pairs(raw.limits or { rps = 1e6 }) do
        if k ~= "shared" then lim_opts[k] = v end
    end
    local retry_opts = { budget = retry.budget() }
    for k, v in pairs(raw.retry or {}) do
        if k ~= "shared" then retry_opts[k] = v end
    end
    if raw.retry and raw.retry.shared then
        -- the retry budget of the fleet (weft.shared_retry) over the process's own
        retry_opts.budget = made("retry", function()
            return require("weft.shared_retry").new(name, retry_opts.budget, shared_of(raw.retry.shared, raw, true))
        end)
    end
    local br_opts = { name = name }
    if type(raw.breaker) == "table" then
        for k, v in pairs(raw.breaker) do
            if k ~= "shared" then br_opts[k] = v end
        end
    end
    local prices = {}
    for k, v in pairs(p.prices or {}) do prices[k] = v end
    for k, v in pairs(raw.prices or {}) do prices[k] = v end
    calls.set_prices(name, prices)
    local inst = {
        name = name, raw = raw, entry = entry,
        base_url = (raw.base_url or p.base_url):gsub("/+$", ""),
        -- a version segment ending base_url's path ("/v1", "/v1beta"), not repeated when a request's path
        -- starts with it
        base_dup = ((raw.base_url or p.base_url):gsub("/+$", ""):match("^https?://[^/]+.-(/v%d+[%w]*)$")),
        limiter = made("limits", limiter_mod.new, lim_opts),
        -- the limits every process shares through Redis (weft.shared_limits)
        shared = raw.limits and made("limits", function()
            local o = shared_of(raw.limits.shared, raw)
            return o and require("weft.shared_limits").new(name, raw.limits, o) or nil
        end) or nil,
        breaker = raw.breaker ~= false and made("breaker", breaker_mod.new, br_opts) or nil,
        policy = made("retry", retry.policy, retry_opts),
        timeout = raw.timeout or 120, connect_timeout = raw.connect_timeout or require("weft.http").DEFAULT_CONNECT_TIMEOUT,
        idle_timeout = raw.idle_timeout or 60,
        cfgs = setmetatable({}, { __mode = "k" }), -- plugin version -> its configuration
    }
    if type(raw.breaker) == "table" and raw.breaker.shared and inst.breaker then
        inst.shared_breaker = made("breaker", function()
            return require("weft.shared_breaker").new(name, inst.breaker, shared_of(raw.breaker.shared, raw, true),
                raw.breaker.cooldown or 30)
        end)
        -- on the same Redis and Cluster slot as the limits: one script call for both
        local sl, sb = inst.shared, inst.shared_breaker
        if sl and sl.redis == sb.redis and sl.procs_key:match("^{[^}]*}") == sb.keys[1]:match("^{[^}]*}") then
            sl:attach_breaker(sb)
        end
    end
    -- a new version of the plugin must accept every configuration using it
    if not entry.model_check then
        entry.model_check = true
        plugins.add_check(entry, function(np)
            for _, i in pairs(instances) do
                if i.entry == entry then
                    local _, err = plugin_config(np, i.raw)
                    if err then return nil, "providers." .. i.name .. ": " .. err end
                end
            end
            return true
        end)
    end
    return inst
end

M.build = build

--- Make `inst` the live instance of provider `name`: its limiter's state
--- is what the limiter metrics show under that name (none when its
--- configuration sets no limits).
---@param name string
---@param inst table build's answer
function M.commit(name, inst)
    instances[name] = inst
    limiter_mod.publish(name, inst.raw.limits and inst.limiter or nil)
end

--- The instance of provider `name`, built on first use (an unconfigured
--- name is the plugin of that name with its defaults). Raises kind
--- invalid_request for an unknown provider or a configuration error.
---@param name string
---@return table instance
local function instance(name)
    local inst = instances[name]
    if inst then return inst end
    local raw = provider_cfg[name]
    if not raw then
        -- not configured: the plugin of that name with its defaults
        if not plugins.find("provider", name) then
            error(errors.new("invalid_request", format("unknown provider '%s': not configured and no provider plugin of that name (%s)",
                name, concat(plugins.path(), ", "))), 0)
        end
        raw = {}
    end
    local ok, v = pcall(build, name, raw, nil)
    if not ok then error(errors.new("invalid_request", tostring(v)), 0) end
    M.commit(name, v)
    return v
end

M.instance = instance

--- The secret handle and its placement, made on first use (a missing key
--- is an `auth` error of the call, not of the configuration); nil when the
--- provider sends none.
---@param inst table a provider instance
---@param p table its plugin (the call's version)
---@return {secret: userdata, header?: string, format?: string, query?: string}?
local function auth_of(inst, p)
    if inst.auth ~= nil then return inst.auth or nil end
    local ref = inst.raw.secret
    if ref == nil and inst.entry.shipped then ref = p.secret end
    if not ref then
        inst.auth = false
        return nil
    end
    local h = ref
    if type(ref) == "string" then
        local ok, v = pcall(require("weft.secrets").secret, ref)
        if not ok then
            if errors.is(v) then v.provider = inst.name error(v, 0) end
            error(errors.new("auth", tostring(v), { provider = inst.name }), 0)
        end
        h = v
    end
    local place = inst.raw.auth or p.auth or { header = "authorization", format = "Bearer {}" }
    inst.auth = { secret = h, header = place.header, format = place.format, query = place.query }
    return inst.auth
end

M.auth_of = auth_of

--- Forget every provider's configuration and instance (tests).
function M.reset()
    for k in pairs(provider_cfg) do provider_cfg[k] = nil end
    for k in pairs(instances) do instances[k] = nil end
    M.redis = nil
end

return M
