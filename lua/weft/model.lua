--- weft.model and weft.configure: the AIModel interface and the call
--- pipeline (DESIGN.md, "The call pipeline") around provider plugins.
---
--- ```lua
--- weft.configure {
---     providers = {
---         openai = { secret = "env:OPENAI_API_KEY", limits = { rpm = 500, tpm = 200000 } },
---         local_llm = { plugin = "openai_compatible", base_url = "http://127.0.0.1:11434" },
---     },
---     models = { fast = "openai/gpt-4o-mini" },
--- }
--- local m = weft.model("fast")
--- local r = m:complete("Say hello")                       -- r.text, r.usage.input, r.attempts, ...
--- m:stream({ messages = { { role = "user", content = "Hi" } } }, function(ev) io.write(ev.text) end)
--- local e = weft.model("openai/text-embedding-3-small"):embed { "a", "b" }   -- e.vectors
--- ```
---
--- Each call, and each attempt of it:
--- 1. resolves `provider/model` to the provider's configuration and the
---    current version of its plugin (held for the whole call: a reload
---    while it runs does not change it);
--- 2. admission: an open circuit breaker refuses at once; then the rate
---    limiter (requests and estimated tokens, priority queue, deadline);
---    then the call goes through the breaker;
--- 3. encode (plugin), 4. send with auth rendered by the host from the
---    secrets store, timeouts enforced; 5. classify (plugin) into the error
---    taxonomy, rate-limit headers and Retry-After fed to the limiter;
--- 6. retry by kind with the provider's backoff policy (weft.retry);
--- 7. decode (plugin), reconcile real token usage with the limiter, record
---    the call (weft.calls: metrics, logs, hooks, cost).
---
--- Streaming goes through the same steps. Events are parsed by the C SSE
--- parser and decoded by the plugin. Mid-stream failures: a failure before
--- the first event reached `on_event` is retried like any other; after it,
--- the call raises an error of kind `transient` with `partial = {text=,
--- usage=, tool_calls=}` and `should_retry = false` (nothing is silently
--- cut short, and nothing is delivered twice). A stream is complete only
--- when the dialect's terminator arrived (`[DONE]`, `message_stop`, a
--- Gemini finishReason before the end of the body); a body that ends before
--- it is a `transient` error too.
local plugins = require "weft.plugins"
local calls = require "weft.calls"
local retry = require "weft.retry"
local limiter_mod = require "weft.limiter"
local breaker_mod = require "weft.breaker"
local http = require "weft.http"
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"
local T = require "weft._task"
local SSE = require "weft._sse"

local type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, next =
    type, pairs, ipairs, tostring, tonumber, error, pcall, select, setmetatable, next
local now, sleep = T.now, T.sleep
local ceil, huge = math.ceil, math.huge
local format, concat = string.format, table.concat

local M = {}

--- Bumped by every configure/reset (policies re-resolve their targets).
M.generation = 0

---@class weft.Message
---@field role "system"|"user"|"assistant"|"tool"
---@field content? string
---@field name? string
---@field tool_calls? weft.ToolCall[] calls the assistant asked for (assistant messages)
---@field tool_call_id? string the call a tool message answers

---@class weft.ToolCall
---@field id? string
---@field name string
---@field arguments string JSON text of the arguments

---@class weft.Tool
---@field name string
---@field description? string
---@field parameters? table JSON Schema of the arguments

---@class weft.Request
---@field messages? weft.Message[]
---@field prompt? string shorthand for one user message
---@field system? string system prompt
---@field max_tokens? integer
---@field temperature? number
---@field top_p? number
---@field stop? string|string[]
---@field tools? weft.Tool[] passed to the provider (its own tool format is passed through as is)
---@field tool_choice? any passed through
---@field id? string request id (becomes the call id in logs and metrics)
---@field priority? "high"|"normal"|"low"|integer limiter queue priority
---@field deadline? number a weft.now() time after which the call fails
---@field timeout? number seconds for the whole call (all attempts)
---@field extra? table provider-specific body fields, merged as is

---@class weft.Usage
---@field input integer tokens in
---@field output integer tokens out

---@class weft.Result
---@field text string
---@field finish_reason "stop"|"length"|"tool_calls"|"content_filter"|string
---@field tool_calls? weft.ToolCall[]
---@field usage weft.Usage
---@field provider string configured provider name
---@field model string
---@field latency number seconds, whole call
---@field ttft? number seconds to the first streamed data (stream)
---@field attempts integer
---@field call_id string
---@field cost? number USD when the price is known
---@field plugin_version string version of the plugin that served the call
---@field aborted? boolean a stream stopped by on_event returning false
---@field vectors? number[][] embeddings (embed)

local REQUEST_KEYS = {
    messages = true, prompt = true, system = true, max_tokens = true, temperature = true, top_p = true,
    stop = true, tools = true, tool_choice = true, id = true, priority = true, deadline = true, timeout = true,
    extra = true, tags = true, metadata = true,
}
local ROLES = { system = true, user = true, assistant = true, tool = true }

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
local LIMIT_KEYS = {
    rps = rate(1), rpm = rate(60), rpd = rate(86400), tps = rate(1), tpm = rate(60), tpd = rate(86400),
    burst = { min = 1, max = 1e12 }, priorities = { min = 1, max = 16, int = true }, aging = { min = 0, max = 86400 },
}
local RETRY_KEYS = {
    base = { min = 0, max = 3600 }, cap = { min = 0, max = 86400 }, multiplier = { min = 1, max = 100 },
    jitter = true, max_attempts = { min = 1, max = 1000, int = true }, max_elapsed = { min = 0, max = 1e9 },
    hint_cap = { min = 0, max = 1e9 }, seed = { min = 0, max = 9e15, int = true }, budget = true,
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
local MODEL_KEYS = { provider = true, model = true, system = true, max_tokens = true, temperature = true,
                     top_p = true, stop = true, priority = true, timeout = true, extra = true, tags = true,
                     metadata = true }
-- the request defaults among them (a policy model's other keys are its options)
local DEFAULT_KEYS = {}
for k in pairs(MODEL_KEYS) do if k ~= "provider" and k ~= "model" then DEFAULT_KEYS[k] = true end end

-- configured providers (raw, validated) and the instances built from them
local provider_cfg, model_alias = {}, {}
local instances = {}
local by_model = {} -- "provider/model" -> usage of this process

------------------------------------------------------------ config errors

-- Where a configuration came from: file, the line its table starts on, and
-- the file's lines (to find the line of a key).
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

local function config_error(where, path, msg)
    local loc = ""
    if where and where.file then loc = format("%s:%d: ", where.file, locate(where, path) or 0) end
    error(format("%sconfig: %s: %s", loc, dotted(path), msg), 0)
end

local function typed(v, spec)
    for t in spec:gmatch("[^|]+") do
        if type(v) == t then return true end
    end
    return false
end

------------------------------------------------------------ providers

-- The plugin's configuration from the provider's own keys, or nil, err.
local function plugin_config(p, raw)
    local opts = {}
    for k, v in pairs(raw) do
        if not HOST_KEYS[k] then opts[k] = v end
    end
    local ok, cfg = pcall(plugins.configure, p, opts)
    if not ok then return nil, tostring(cfg) end
    return cfg
end

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
        local rule = LIMIT_KEYS[k]
        if not rule then config_error(where, { "providers", name, "limits", k }, "unknown limit") end
        local why = number_rule(v, rule)
        if why then config_error(where, { "providers", name, "limits", k }, why) end
    end
    for k, v in pairs(raw.retry or {}) do
        local rule = RETRY_KEYS[k]
        if not rule then config_error(where, { "providers", name, "retry", k }, "unknown retry option") end
        local why = type(rule) == "table" and number_rule(v, rule)
        if why then config_error(where, { "providers", name, "retry", k }, why) end
    end
    if type(raw.breaker) == "table" then
        for k, v in pairs(raw.breaker) do
            local rule = BREAKER_KEYS[k]
            if not rule then config_error(where, { "providers", name, "breaker", k }, "unknown breaker option") end
            local why = number_rule(v, rule)
            if why then config_error(where, { "providers", name, "breaker", k }, why) end
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
        local key = perr:match("unknown key '([^']+)'") or perr:match("^[^:]*: ([%w_]+) must be") or perr:match("missing required key '([^']+)'")
        config_error(where, { "providers", name, key }, (perr:gsub("^provider [%w_%-]+: ", "")))
    end
    return entry
end

-- Build the live instance of a provider: limiter, breaker, retry policy.
local function build(name, raw, where)
    local entry = check_provider(name, raw, where)
    local p = entry.plugin
    local function made(what, fn, opts)
        local ok, v = pcall(fn, opts)
        if not ok then config_error(where, { "providers", name, what }, tostring(v)) end
        return v
    end
    local lim_opts = { name = name }
    for k, v in pairs(raw.limits or { rps = 1e6 }) do lim_opts[k] = v end
    local retry_opts = { budget = retry.budget() }
    for k, v in pairs(raw.retry or {}) do retry_opts[k] = v end
    local br_opts = { name = name }
    if type(raw.breaker) == "table" then for k, v in pairs(raw.breaker) do br_opts[k] = v end end
    local prices = {}
    for k, v in pairs(p.prices or {}) do prices[k] = v end
    for k, v in pairs(raw.prices or {}) do prices[k] = v end
    calls.set_prices(name, prices)
    local inst = {
        name = name, raw = raw, entry = entry,
        base_url = (raw.base_url or p.base_url):gsub("/+$", ""),
        limiter = made("limits", limiter_mod.new, lim_opts),
        breaker = raw.breaker ~= false and made("breaker", breaker_mod.new, br_opts) or nil,
        policy = made("retry", retry.policy, retry_opts),
        timeout = raw.timeout or 120, connect_timeout = raw.connect_timeout or 10,
        idle_timeout = raw.idle_timeout or 60,
        cfgs = setmetatable({}, { __mode = "k" }), -- plugin version -> its configuration
    }
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
    instances[name] = v
    return v
end

-- The secret handle and its placement, made on first use (a missing key
-- is an `auth` error of the call, not of the configuration).
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

------------------------------------------------------------ configuration

--- Configure providers and model aliases. Providers: name -> {plugin
--- (default: the name), base_url, secret (a reference "env:NAME" or a
--- handle; false for none), auth ({header=, format=} or {query=}: where
--- the key goes), limits ({rpm=, tpm=, rpd=, ...}), retry (weft.retry
--- policy options), breaker (weft.breaker options, or false), timeout,
--- connect_timeout, idle_timeout (seconds), prices (model -> {input=,
--- output=} USD per 1M tokens), and the plugin's own options}. Models:
--- alias -> "provider/model" or {provider=, model=, and request defaults}.
--- Providers and aliases named again replace the earlier ones. Errors
--- name the key and the line of the file the configuration is in.
---@param cfg {providers?: table<string, table>, models?: table<string, string|table>}
---@param where? {file: string, line: integer}
function M.configure(cfg, where)
    if where == nil then
        local info = debug.getinfo(2, "Sl")
        if info and info.source:sub(1, 1) == "@" then where = source_of(info.source:sub(2), info.currentline) end
    end
    if where and where.lines then
        -- currentline is where the call ends: start at the line `configure` is on
        for i = math.min(where.line, #where.lines), 1, -1 do
            if where.lines[i]:find("configure", 1, true) then where.line = i break end
        end
    end
    if type(cfg) ~= "table" then config_error(where, {}, "weft.configure expects a table") end
    for k in pairs(cfg) do
        if k ~= "providers" and k ~= "models" then config_error(where, { k }, "unknown key (providers, models)") end
    end
    local built = {}
    for name, raw in pairs(cfg.providers or {}) do
        if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
            config_error(where, { "providers", tostring(name) }, "a provider name is letters, digits, _ and -")
        end
        built[name] = build(name, raw, where)
    end
    local aliases = {}
    local policies = {}
    for alias, m in pairs(cfg.models or {}) do
        local path = { "models", alias }
        if type(m) == "string" then m = { model = m } end
        if type(m) ~= "table" then config_error(where, path, "must be \"provider/model\" or a table") end
        if m.policy ~= nil then
            if type(alias) ~= "string" or alias:find("/", 1, true) then
                config_error(where, path, "a policy model's name is an alias without /")
            end
            local spec = require("weft.policy").check(alias, m, DEFAULT_KEYS, function(sub, msg)
                local full = { "models", alias }
                for _, k in ipairs(sub) do full[#full + 1] = k end
                config_error(where, full, msg)
            end)
            aliases[alias] = { policy = spec, defaults = spec.defaults }
            policies[#policies + 1] = alias
            goto next_model
        end
        for k in pairs(m) do
            if not MODEL_KEYS[k] then config_error(where, { "models", alias, k }, "unknown key") end
        end
        local prov, id = m.provider, m.model
        if not prov and type(id) == "string" then prov, id = id:match("^([^/]+)/(.+)$") end
        if type(prov) ~= "string" or type(id) ~= "string" then
            config_error(where, path, "needs a provider and a model (\"provider/model\")")
        end
        if not (built[prov] or provider_cfg[prov] or plugins.find("provider", prov)) then
            config_error(where, path, "unknown provider '" .. prov .. "'")
        end
        local defaults = {}
        for k, v in pairs(m) do
            if k ~= "provider" and k ~= "model" then defaults[k] = v end
        end
        aliases[alias] = { provider = prov, model = id, defaults = defaults }
        ::next_model::
    end
    -- a policy's targets: known models, and no cycle through policies
    local function lookup(name) local a = aliases[name] or model_alias[name] return a and a.policy end
    table.sort(policies)
    for _, alias in ipairs(policies) do
        for i, t in ipairs(aliases[alias].policy.targets) do
            local known = aliases[t.name] or model_alias[t.name]
            if not known then
                local prov = t.name:match("^([^/]+)/.+$")
                if not prov then
                    config_error(where, { "models", alias, "targets", tostring(i) },
                        "unknown model '" .. t.name .. "' (not an alias; expected \"provider/model\")")
                elseif not (built[prov] or provider_cfg[prov] or plugins.find("provider", prov)) then
                    config_error(where, { "models", alias, "targets", tostring(i) }, "unknown provider '" .. prov .. "'")
                end
            end
        end
    end
    require("weft.policy").check_cycles(policies, lookup, function(alias, msg)
        config_error(where, { "models", alias, "targets" }, msg)
    end)
    for name, inst in pairs(built) do
        provider_cfg[name] = inst.raw
        instances[name] = inst
    end
    for alias, a in pairs(aliases) do model_alias[alias] = a end
    M.generation = M.generation + 1
end

--- Load a configuration file: Lua returning {providers=, models=}.
---@param path string
function M.load_config(path)
    local chunk, err = loadfile(path)
    if not chunk then error("config: " .. tostring(err), 0) end
    local ok, cfg = pcall(chunk)
    if not ok then error(format("config: %s: %s", path, tostring(cfg)), 0) end
    if type(cfg) ~= "table" then error(format("config: %s must return a table, got %s", path, type(cfg)), 0) end
    M.configure(cfg, source_of(path, 1))
end

--- The current configuration: {providers = {name = {...}}, models =
--- {alias = {provider=, model=, defaults=}}} (copies; secrets stay handles
--- or references).
function M.config()
    local out = { providers = {}, models = {} }
    for name, raw in pairs(provider_cfg) do
        local c = {}
        for k, v in pairs(raw) do c[k] = v end
        out.providers[name] = c
    end
    for alias, a in pairs(model_alias) do
        if a.policy then
            local targets = {}
            for i, t in ipairs(a.policy.targets) do targets[i] = t.name end
            out.models[alias] = { policy = a.policy.policy, targets = targets, defaults = a.defaults }
        else
            out.models[alias] = { provider = a.provider, model = a.model, defaults = a.defaults }
        end
    end
    return out
end

--- The policy spec of model `name` as configured now, or nil.
function M.policy_spec(name)
    local a = model_alias[name]
    return a and a.policy
end

--- Forget the configuration (tests).
function M.reset()
    provider_cfg, model_alias, instances, by_model = {}, {}, {}, {}
    M.generation = M.generation + 1
end

------------------------------------------------------------ requests

local function bad(msg) error(errors.new("invalid_request", msg), 0) end

local function normalize(req, defaults, model)
    if type(req) == "string" then req = { messages = { { role = "user", content = req } } } end
    if type(req) ~= "table" then bad("a request is a string or a table, got " .. type(req)) end
    local r = { model = model }
    for k, v in pairs(req) do
        if not REQUEST_KEYS[k] then bad("unknown request field '" .. tostring(k) .. "'") end
        r[k] = v
    end
    for k, v in pairs(defaults) do
        if r[k] == nil then r[k] = v end
    end
    local msgs = r.messages
    if r.prompt ~= nil then
        if type(r.prompt) ~= "string" then bad("prompt must be a string") end
        msgs = msgs or {}
        local copy = {}
        for i, m in ipairs(msgs) do copy[i] = m end
        copy[#copy + 1] = { role = "user", content = r.prompt }
        msgs, r.prompt = copy, nil
    end
    if type(msgs) ~= "table" or msgs[1] == nil then bad("messages must be a non-empty list (or give a prompt)") end
    for i, m in ipairs(msgs) do
        if type(m) ~= "table" then bad("messages[" .. i .. "] must be a table") end
        if not ROLES[m.role] then bad("messages[" .. i .. "].role must be system, user, assistant or tool") end
        if m.content ~= nil and type(m.content) ~= "string" then bad("messages[" .. i .. "].content must be a string") end
        if m.content == nil and not m.tool_calls then bad("messages[" .. i .. "] has no content") end
    end
    r.messages = msgs
    if r.system ~= nil and type(r.system) ~= "string" then bad("system must be a string") end
    if r.max_tokens ~= nil and (type(r.max_tokens) ~= "number" or r.max_tokens < 1) then bad("max_tokens must be a number >= 1") end
    if r.temperature ~= nil and type(r.temperature) ~= "number" then bad("temperature must be a number") end
    if r.stop ~= nil and type(r.stop) ~= "string" and type(r.stop) ~= "table" then bad("stop must be a string or a list") end
    if r.tools ~= nil and type(r.tools) ~= "table" then bad("tools must be a list") end
    if r.extra ~= nil and type(r.extra) ~= "table" then bad("extra must be a table") end
    if r.id ~= nil and type(r.id) ~= "string" then bad("id must be a string") end
    if r.tags ~= nil and type(r.tags) ~= "table" then bad("tags must be a list of strings") end
    if r.metadata ~= nil and type(r.metadata) ~= "table" then bad("metadata must be a table") end
    return r
end

-- Tokens a request may use, for admission: ~4 bytes a token of input, and
-- the output allowance.
local function estimate(r)
    local n = #(r.system or "")
    for _, m in ipairs(r.messages or {}) do n = n + #(m.content or "") + 12 end
    for _, t in ipairs(r.input or {}) do n = n + #t end
    return ceil(n / 4) + (r.max_tokens or (r.input and 0 or 256))
end

------------------------------------------------------------ the pipeline

local redact = require("weft._secrets").redact
local plain = plugins.plain

local function excerpt(s, n)
    return redact(tostring(s or ""):sub(1, n or 200))
end

-- An error value of the call's provider and model.
local function fail(ctx, kind, msg, fields)
    fields = fields or {}
    fields.provider, fields.model = ctx.inst.name, ctx.req.model
    error(errors.new(kind, msg, fields), 0)
end

local function plugin_name(ctx)
    local p = ctx.plugin
    return format("provider plugin %s (%s)", p.name, tostring(p.version or "?"))
end

-- A plugin broke the contract: an integration error naming it.
local function plugin_fail(ctx, what, fields)
    fail(ctx, "integration", excerpt(plugin_name(ctx) .. ": " .. what, 600), fields)
end

-- Call a plugin function under its budget (weft.plugins.call): its
-- failure, whatever it raised, is an integration error naming it.
local function plugin_call(ctx, fname, ...)
    local ok, a, b = plugins.call(ctx.plugin, fname, ...)
    if not ok then fail(ctx, "integration", excerpt(a, 600)) end
    return a, b
end

-- What a plugin function returned, as the host's own plain copy (raw
-- reads: no metamethod of the plugin runs), or an integration error.
local function plain_result(ctx, fname, v)
    if v == nil then return nil end
    local c, why = plain(v)
    if c == nil then plugin_fail(ctx, fname .. " returned something that is not plain data: " .. why) end
    return c
end

------------------------------------------------------------ the request

local bad_path, bad_query = plugins.bad_path, plugins.bad_query
local refused_total = require("weft.metrics").std.plugin_refused

-- A request of a plugin the host will not send: logged and counted.
local function refused(ctx, reason, what)
    log.warn("plugin request refused", { plugin = ctx.plugin.name, provider = ctx.inst.name, reason = reason,
                                         detail = excerpt(what) })
    refused_total:inc(1, ctx.plugin.name, reason)
end

-- The request encode describes -> the options of weft.http.request on the
-- provider's configured origin. Everything a plugin returned is read raw
-- and checked; nothing is sent when something is wrong.
local function request_of(ctx, enc, auth)
    if type(enc) ~= "table" then plugin_fail(ctx, "encode must return {path=, body=, ...}, got " .. type(enc)) end
    local path, query, method = rawget(enc, "path"), rawget(enc, "query"), rawget(enc, "method")
    local why = bad_path(path) or (query ~= nil and bad_query(query)) or nil
    if why then
        refused(ctx, "path", why)
        plugin_fail(ctx, "encode: refused: " .. why .. " (the origin is the configured base_url)")
    end
    if method ~= nil and (type(method) ~= "string" or not method:match("^%u+$") or #method > 16) then
        plugin_fail(ctx, "encode: method must be an upper-case HTTP method")
    end
    local op = ctx.op
    local headers = { ["content-type"] = "application/json", accept = op == "stream" and "text/event-stream" or "application/json" }
    local eh = rawget(enc, "headers")
    if eh ~= nil then
        if type(eh) ~= "table" then plugin_fail(ctx, "encode: headers must be a table") end
        local own = auth and auth.header
        for k, v in next, eh do
            if type(k) ~= "string" or not k:match("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$") then
                plugin_fail(ctx, "encode: header names must be HTTP tokens")
            end
            local lk = k:lower()
            if plugins.host_owned(lk, own) then -- credentials and the connection are the host's
                refused(ctx, "header", "header " .. lk)
                plugin_fail(ctx, "encode: refused: header '" .. lk .. "' is the host's (credentials and the connection are not the plugin's)")
            end
            if type(v) ~= "string" or v:find("[%z\r\n]") then
                plugin_fail(ctx, "encode: header '" .. lk .. "' must be a string without CR, LF or NUL")
            end
            headers[lk] = v
        end
    end
    local body = rawget(enc, "body")
    if type(body) == "table" then
        -- the host's encoder on the plugin's tables: under the plugin's
        -- budget, so nothing of the plugin runs unbounded
        local ok, text = plugins.guard(ctx.plugin.name, plugin_name(ctx) .. ": encoding the body", json.encode, body)
        if not ok then plugin_fail(ctx, "encode: the body cannot be sent as JSON: " .. tostring(text):gsub("^.-: encoding the body failed: ", "")) end
        body = text
    elseif body ~= nil and type(body) ~= "string" then
        plugin_fail(ctx, "encode: body must be a table or a string, got " .. type(body))
    end
    return { method = method or "POST", origin = ctx.inst.base_url, path = path, query = query,
             headers = headers, body = body, auth = auth, redact = true }
end

------------------------------------------------------------ the answer

-- A seconds value from a plugin the host can act on, else nil (numbers
-- and numeric strings only: nothing of the plugin runs to convert it).
local function seconds(v, max)
    local tv = type(v)
    if tv == "string" then v = tonumber(v) elseif tv ~= "number" then return nil end
    if v and v >= 0 and v <= max then return v end
end

-- Feed the answer's rate-limit state to the limiter and the quota gauge:
-- the plugin reads its provider's headers (rate_limits), else the host's
-- reading of the common ones (x-ratelimit-*, anthropic-ratelimit-*). Only
-- sane numbers reach the limiter: a plugin cannot block its provider for
-- ever with an infinite reset or a negative remaining.
local quota_gauge = require("weft.metrics").std.quota
local function observe_limits(ctx, res, body)
    local inst = ctx.inst
    if not ctx.plugin.rate_limits then
        inst.limiter:observe(res.headers, res.status)
        return
    end
    local rl = plugin_call(ctx, "rate_limits", res.status, res.headers, body or "", ctx.pcfg)
    if type(rl) ~= "table" then return end
    -- read raw (no metamethod of the plugin runs), numbers only
    local lim = inst.limiter
    for _, unit in ipairs { "requests", "tokens" } do
        local u = rawget(rl, unit)
        local rem = type(u) == "table" and seconds(rawget(u, "remaining"), 1e15)
        if rem then
            lim:report(unit, rem, seconds(rawget(u, "reset"), 86400 * 31))
            quota_gauge:set(rem, inst.name, unit)
        end
    end
    local wait = seconds(rawget(rl, "retry_after"), 86400)
    if wait then lim:report(nil, nil, nil, wait) end
end

-- A non-2xx answer -> the error the plugin classifies it as. The host's
-- readings of the headers (ctx.hint, ctx.should_retry; the call's quota
-- headers in weft.http) were all taken before any plugin saw the table:
-- whatever a plugin does to it, the host does not read it again.
local function http_failure(ctx, res, body)
    local c = plain_result(ctx, "classify",
        plugin_call(ctx, "classify", res.status, res.headers, body, ctx.pcfg))
    if type(c) ~= "table" then c = {} end
    local kind = (type(c.kind) == "string" and errors.KINDS[c.kind]) and c.kind or "integration"
    local ra = seconds(c.retry_after, 86400)
    local code = c.code
    if type(code) ~= "string" and type(code) ~= "number" then code = nil end
    local msg = type(c.message) == "string" and c.message or body
    local reason = c.reason
    if type(reason) ~= "string" or #reason > 64 or not reason:match("^[%w_]+$") then reason = nil end
    error(errors.new(kind, format("%s HTTP %d: %s", ctx.plugin.name, res.status, excerpt(msg)), {
        status = res.status, provider = ctx.inst.name, model = ctx.req.model, code = code, reason = reason,
        retry_after = ra or ctx.hint, should_retry = ctx.should_retry, sends = res.sends,
    }), 0)
end

-- The host's own readings of an answer, before any plugin sees it.
local function host_readings(ctx, res)
    if res.status >= 300 then
        ctx.hint, ctx.should_retry = retry.hint(res), retry.should_retry(res.headers)
    else
        ctx.hint, ctx.should_retry = nil, nil
    end
end

-- Redaction happens on bytes; a JSON text may also spell a secret with
-- \u escapes, which only shows once decoded. Strings of a decoded value
-- (the host's own table) are redacted in place; true when one changed.
local function redact_decoded(v, depth)
    local changed = false
    if depth > 64 then return false end
    for k, x in next, v do
        if type(x) == "string" then
            local r = redact(x)
            if r ~= x then
                v[k] = r
                changed = true
            end
        elseif type(x) == "table" then
            changed = redact_decoded(x, depth + 1) or changed
        end
        if type(k) == "string" and redact(k) ~= k then
            v[k] = nil
            v[redact(k)] = x
            changed = true
        end
    end
    return changed
end

-- A JSON text for a plugin: redacted as bytes (done already) and, when it
-- holds \u escapes, as decoded strings too (then written again).
local function redact_json_text(s)
    if type(s) ~= "string" or not s:find("\\u", 1, true) then return s end
    local ok, d = pcall(json.decode, s)
    if ok and type(d) == "table" and redact_decoded(d, 0) then return json.encode(d) end
    return s
end

local function usage_of(u)
    if type(u) ~= "table" then return nil end
    local i, o = tonumber(u.input) or 0, tonumber(u.output) or 0
    if not (i >= 0 and i < huge) then i = 0 end
    if not (o >= 0 and o < huge) then o = 0 end
    return { input = i, output = o }
end

-- Tool calls as the host hands them on: {id?, name, arguments} strings.
local function tool_calls_of(ctx, fname, list)
    if list == nil then return nil end
    if type(list) ~= "table" then plugin_fail(ctx, fname .. ": tool_calls must be a list") end
    local out = {}
    for i, tc in ipairs(list) do
        if type(tc) ~= "table" or (tc.id ~= nil and type(tc.id) ~= "string") or (tc.name ~= nil and type(tc.name) ~= "string")
           or (tc.arguments ~= nil and type(tc.arguments) ~= "string") then
            plugin_fail(ctx, fname .. ": tool_calls[" .. i .. "] must be {id=, name=, arguments=} strings")
        end
        out[i] = { id = tc.id, name = tc.name, arguments = tc.arguments or "" }
    end
    return out
end

local function opt_string(ctx, fname, t, k)
    local v = t[k]
    if v ~= nil and type(v) ~= "string" then plugin_fail(ctx, format("%s: %s must be a string, got %s", fname, k, type(v))) end
    return v
end

-- decode's result as the host's own table: the fields the host knows,
-- read raw and checked; any other field is the plugin's and is copied as
-- plain data.
local RESULT_FIELDS = { text = true, finish_reason = true, model = true, id = true, usage = true,
                        tool_calls = true, vectors = true }
local function raw_string(ctx, fname, t, k)
    local v = rawget(t, k)
    if v ~= nil and type(v) ~= "string" then plugin_fail(ctx, format("%s: %s must be a string, got %s", fname, k, type(v))) end
    return v
end
local function raw_usage(u)
    if type(u) ~= "table" then return nil end
    local i, o = seconds(rawget(u, "input"), 1e15) or 0, seconds(rawget(u, "output"), 1e15) or 0
    return { input = i, output = o }
end

local function checked_result(ctx, out)
    local r = {
        text = raw_string(ctx, "decode", out, "text"), finish_reason = raw_string(ctx, "decode", out, "finish_reason"),
        model = raw_string(ctx, "decode", out, "model"), id = raw_string(ctx, "decode", out, "id"),
        usage = raw_usage(rawget(out, "usage")),
    }
    local tc = rawget(out, "tool_calls")
    if tc ~= nil then r.tool_calls = tool_calls_of(ctx, "decode", plain_result(ctx, "decode", tc)) end
    local vs = rawget(out, "vectors")
    if vs ~= nil then
        vs = plain_result(ctx, "decode", vs)
        if type(vs) ~= "table" then plugin_fail(ctx, "decode: vectors must be a list") end
        for i = 1, #vs do
            local v = vs[i]
            if type(v) ~= "table" then plugin_fail(ctx, "decode: vectors[" .. i .. "] must be a list of numbers") end
            for j = 1, #v do
                if type(v[j]) ~= "number" then plugin_fail(ctx, "decode: vectors[" .. i .. "] must be a list of numbers") end
            end
        end
        r.vectors = vs
    end
    for k, v in next, out do
        if not RESULT_FIELDS[k] then
            if type(k) ~= "string" then plugin_fail(ctx, "decode: result keys must be strings") end
            r[k] = plain_result(ctx, "decode", v)
        end
    end
    return r
end

-- One streamed event: decode, deliver text, keep usage and the end mark.
-- The event's strings are redacted before the plugin sees them.
local function on_stream_event(ctx, ev, st)
    ev.data = redact_json_text(redact(ev.data))
    if ev.event then ev.event = redact(ev.event) end
    if ev.id then ev.id = redact(ev.id) end
    local d = plugin_call(ctx, "event", ev, st.plugin_state, ctx.preq, ctx.pcfg)
    if d == nil then return end
    if type(d) ~= "table" then plugin_fail(ctx, "event must return a table or nil") end
    d = plain_result(ctx, "event", d)
    if d.error then
        local e = type(d.error) == "table" and d.error or {}
        st.error = { kind = (type(e.kind) == "string" and errors.KINDS[e.kind]) and e.kind or "transient",
                     message = type(e.message) == "string" and e.message or "error in stream" }
        return false
    end
    if d.usage then st.usage = usage_of(d.usage) end
    if d.tool_calls then st.tool_calls = tool_calls_of(ctx, "event", d.tool_calls) end
    if d.finish_reason then st.finish_reason = opt_string(ctx, "event", d, "finish_reason") end
    if d.model then st.model = opt_string(ctx, "event", d, "model") end
    if d.done then st.done = true end
    local text = d.text
    if text ~= nil and type(text) ~= "string" then plugin_fail(ctx, "event: text must be a string") end
    if text and text ~= "" then
        st.text[#st.text + 1] = text
        ctx.delivered = true
        if ctx.on_event({ type = "text", text = text }) == false then
            st.aborted = true
            return false
        end
    end
end

-- Partial results of a stream that failed after delivering events.
local function stream_error(ctx, st, kind, msg)
    local partial = { text = concat(st.text), usage = st.usage, tool_calls = st.tool_calls }
    if ctx.delivered then
        fail(ctx, "transient", format("stream failed after %d bytes were delivered: %s", #partial.text, msg),
            { partial = partial, should_retry = false, cause_kind = kind })
    end
    fail(ctx, kind, msg, { partial = partial })
end

-- libcurl sends a request again by itself when a reused connection turns
-- out dead before any answer: what the server saw counts as attempts.
local function count_resends(ctx, n)
    if type(n) == "number" and n > 1 then ctx.call:resent(n - 1) end
end

-- An error body of a stream is kept up to this many bytes; when cut there,
-- its last CUT_GUARD bytes are dropped too (a secret cut in two would not
-- be recognized by redaction).
local ERRBODY_MAX, CUT_GUARD = 65536, 4096
-- Events of one chunk are decoded in one go; past this many seconds the
-- task lets the loop run before going on.
local EVENT_SLICE = 0.01

-- One attempt: encode, send, classify, decode.
local function send(ctx, remaining)
    local inst, p, req = ctx.inst, ctx.plugin, ctx.req
    local op = ctx.op
    local auth = auth_of(inst, p)
    local opts = request_of(ctx, plugin_call(ctx, "encode", op, ctx.preq, ctx.pcfg), auth)
    local timeout = inst.timeout
    if remaining and remaining < timeout then timeout = remaining end
    if timeout <= 0 then fail(ctx, "timeout", "deadline reached before the attempt") end
    opts.timeout, opts.connect_timeout = timeout, inst.connect_timeout
    local st
    if op == "stream" then
        st = { text = {}, plugin_state = {} }
        local parser = SSE.new()
        local errbody, cut
        opts.idle_timeout = inst.idle_timeout
        opts.on_data = function(chunk, head)
            if head.status >= 300 then
                errbody = (errbody or "") .. chunk
                if #errbody >= ERRBODY_MAX then
                    cut = true
                    return false
                end
                return
            end
            local evs = parser:feed(chunk)
            local t0 = now()
            for i = 1, #evs do
                if on_stream_event(ctx, evs[i], st) == false then return false end
                if i < #evs and now() - t0 > EVENT_SLICE then
                    -- many events at once: other tasks run between them
                    local _, err = sleep(0)
                    if err then error(err, 0) end
                    t0 = now()
                end
            end
        end
        ctx.sent = true
        local ok, res = pcall(http.request, opts)
        if not ok then
            if errors.is(res) then count_resends(ctx, res.sends) end
            if errors.is(res) and res.kind ~= "cancelled" then
                res.provider, res.model = inst.name, req.model
                if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
                stream_error(ctx, st, res.kind, res.message or tostring(res))
            end
            error(res, 0)
        end
        count_resends(ctx, res.sends)
        host_readings(ctx, res)
        if errbody then
            if cut then errbody = errbody:sub(1, -CUT_GUARD - 1) end
            errbody = redact_json_text(redact(errbody))
        end
        observe_limits(ctx, res, errbody)
        if res.status >= 300 then http_failure(ctx, res, errbody or "") end
        if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
        if not st.done and not st.aborted then
            stream_error(ctx, st, "transient", "the stream ended before its end marker")
        end
        local out = { text = concat(st.text), tool_calls = st.tool_calls, finish_reason = st.finish_reason or (st.aborted and "aborted") or "stop",
                      model = st.model, aborted = st.aborted or nil, usage = st.usage }
        return out
    end
    ctx.sent = true
    local ok, res = pcall(http.request, opts)
    if not ok then
        if errors.is(res) then count_resends(ctx, res.sends) end
        error(res, 0)
    end
    count_resends(ctx, res.sends)
    host_readings(ctx, res)
    if res.status >= 300 then
        local body = redact_json_text(res.body)
        observe_limits(ctx, res, body)
        http_failure(ctx, res, body)
    end
    observe_limits(ctx, res, nil)
    local dok, decoded = pcall(json.decode, res.body)
    if not dok or type(decoded) ~= "table" then
        fail(ctx, "integration", format("%s answered %d with a body that is not JSON: %s", p.name, res.status, excerpt(res.body)),
            { status = res.status })
    end
    if res.body:find("\\u", 1, true) then redact_decoded(decoded, 0) end
    local out, why = plugin_call(ctx, "decode", op, decoded, ctx.preq, ctx.pcfg)
    if type(out) ~= "table" then
        fail(ctx, "integration", format("%s: cannot decode the answer (%s): %s", p.name,
            type(why) == "string" and excerpt(why) or "decode returned nothing", excerpt(res.body)), { status = res.status })
    end
    return checked_result(ctx, out)
end

-- Admission as DESIGN.md orders it: an open breaker refuses at once (no
-- wait in the limiter's queue), then the limiter admits, then the call
-- goes through the breaker (which may take a half-open probe).
-- The part of an attempt after the limiter admitted it.
local function admitted(ctx, br, remaining, t0)
    local inst = ctx.inst
    if remaining then
        -- the time left after the queue; none left is the caller's deadline,
        -- not the provider's health: refused before the breaker counts it
        remaining = remaining - (now() - t0)
        if remaining <= 0 then fail(ctx, "timeout", "deadline reached before the attempt") end
    end
    if not br then return send(ctx, remaining) end
    local ok, refused = br:admit()
    -- It opened (or its half-open probe is out) while this call waited in
    -- the queue: the admitted request goes to the next waiter (attempt).
    if not ok then error(refused, 0) end
    return br:run(send, ctx, remaining)
end

local function attempt(ctx, _, remaining)
    local inst = ctx.inst
    local br = inst.breaker
    if br then br:check() end
    local t0 = remaining and now()
    inst.limiter:acquire(ctx.cost, { priority = ctx.req.priority, deadline = ctx.deadline })
    -- This attempt now holds a request and the estimated tokens: a failed
    -- attempt gives back the tokens it did not use (all of them, but a
    -- broken stream's partial usage), so retries do not count the estimate
    -- again and again, and the request when nothing was sent (refused by
    -- the breaker or the deadline, a plugin's encode that failed).
    ctx.sent = false
    local ok, out = pcall(admitted, ctx, br, remaining, t0)
    if not ok then
        local u = type(out) == "table" and out.partial and out.partial.usage
        inst.limiter:reconcile(ctx.cost.tokens, u and (u.input + u.output) or 0)
        if not ctx.sent then inst.limiter:refund(ctx.cost.requests) end
        error(out, 0)
    end
    return out
end

local function account(key, call, failed)
    local u = by_model[key]
    if not u then
        u = { calls = 0, errors = 0, input_tokens = 0, output_tokens = 0, cost = 0 }
        by_model[key] = u
    end
    u.calls = u.calls + 1
    if failed then u.errors = u.errors + 1 end
    u.input_tokens = u.input_tokens + call.tokens_in
    u.output_tokens = u.output_tokens + call.tokens_out
    u.cost = u.cost + (call.cost or 0)
end

local function run(self, op, req, on_event)
    local inst = instance(self.provider)
    local entry = inst.entry
    local p = entry.plugin -- this call's version, whatever is loaded meanwhile
    local caps = p.capabilities or {}
    if caps[op == "stream" and "stream" or op] == false or (op == "stream" and not p.event) then
        bad(format("provider %s (plugin %s) cannot %s", inst.name, p.name, op))
    end
    local pcfg = inst.cfgs[p]
    if not pcfg then
        local err
        pcfg, err = plugin_config(p, inst.raw)
        if not pcfg then bad("providers." .. inst.name .. ": " .. err) end
        -- the plugin's own copy: nothing of the user's configuration tables
        pcfg, err = plain(pcfg)
        if not pcfg then bad("providers." .. inst.name .. ": the plugin options are not plain data: " .. err) end
        inst.cfgs[p] = pcfg
    end
    -- The plugin sees a copy of the request: the caller's tables are never
    -- handed to plugin code (which could change them).
    local preq, perr = plain(req)
    if not preq then bad("the request is not plain data (" .. perr .. ")") end
    local deadline = req.deadline or (req.timeout and now() + req.timeout) or nil
    local ctx = { inst = inst, plugin = p, pcfg = pcfg, op = op, req = req, preq = preq, on_event = on_event,
                  deadline = deadline }
    local est = estimate(req)
    ctx.cost = { requests = 1, tokens = est }
    local call = calls.begin { provider = inst.name, model = req.model, operation = op, id = req.id }
    ctx.call = call
    local t0 = now()
    local ok, out = pcall(retry.run, inst.policy, function(n, remaining) return attempt(ctx, n, remaining) end,
        { call = call, deadline = deadline })
    if not ok then
        if errors.is(out) then
            out.provider = out.provider or inst.name
            out.model = out.model or req.model
            out.attempts = out.attempts or call.attempts
            out.call_id = call.id
        end
        call:finish(out)
        account(inst.name .. "/" .. req.model, call, true)
        error(out, 0)
    end
    local u = out.usage
    if u then
        inst.limiter:reconcile(est, u.input + u.output)
        call:usage(u.input, u.output)
    end
    out.usage = u or { input = 0, output = 0 }
    out.provider = inst.name
    out.model = out.model or req.model
    out.attempts = call.attempts
    out.call_id = call.id
    out.plugin_version = p.version and tostring(p.version) or tostring(entry.n)
    call:finish()
    out.latency = now() - t0
    out.ttft = call.ttft
    out.cost = call.cost
    account(inst.name .. "/" .. req.model, call, false)
    return out
end

------------------------------------------------------------ AIModel

---@class weft.Model
---@field provider string
---@field model string
local Model = {}
Model.__index = Model

function Model:__tostring() return "weft.model(" .. self.provider .. "/" .. self.model .. ")" end

--- Complete a chat: the normalized result, or raises an error value.
---@param req string|weft.Request
---@return weft.Result
function Model:complete(req)
    return run(self, "complete", normalize(req, self.defaults, self.model))
end

--- Stream a chat: `on_event({type = "text", text = piece})` for each piece
--- as it arrives (return false to stop); returns the whole result at the
--- end. See the module doc for failures in the middle of a stream.
---@param req string|weft.Request
---@param on_event fun(ev: {type: "text", text: string}): boolean?
---@return weft.Result
function Model:stream(req, on_event)
    if type(on_event) ~= "function" then error("model:stream: on_event must be a function", 2) end
    return run(self, "stream", normalize(req, self.defaults, self.model), on_event)
end

--- Embed one text or a list: result.vectors[i] is the vector of texts[i].
---@param texts string|string[]
---@param opts? {id?: string, priority?: string, deadline?: number, timeout?: number}
---@return weft.Result
function Model:embed(texts, opts)
    if type(texts) == "string" then texts = { texts } end
    if type(texts) ~= "table" or texts[1] == nil then bad("embed: expected a string or a non-empty list of strings") end
    for i, t in ipairs(texts) do
        if type(t) ~= "string" then bad("embed: texts[" .. i .. "] is a " .. type(t) .. ", not a string") end
    end
    opts = opts or {}
    local req = { model = self.model, input = texts, id = opts.id, priority = opts.priority or self.defaults.priority,
                  deadline = opts.deadline, timeout = opts.timeout or self.defaults.timeout }
    return run(self, "embed", req)
end

--- Tokens, cost, calls and errors of this model in this process.
---@return {calls: integer, errors: integer, input_tokens: integer, output_tokens: integer, cost: number}
function Model:usage()
    local u = by_model[self.provider .. "/" .. self.model] or {}
    return { calls = u.calls or 0, errors = u.errors or 0, input_tokens = u.input_tokens or 0,
             output_tokens = u.output_tokens or 0, cost = u.cost or 0 }
end

--- The model `name`: an alias from the configuration or "provider/model".
--- `opts` are request defaults (system, max_tokens, temperature, top_p,
--- stop, priority, timeout, extra).
---@param name string
---@param opts? table
---@return weft.Model
function M.model(name, opts)
    if type(name) ~= "string" then error("weft.model: expected a name such as \"openai/gpt-4o-mini\"", 2) end
    local defaults = {}
    local prov, id
    local a = model_alias[name]
    if a then
        prov, id = a.provider, a.model
        for k, v in pairs(a.defaults) do defaults[k] = v end
        if a.policy then
            if opts ~= nil then
                if type(opts) ~= "table" then error("weft.model: opts must be a table", 2) end
                for k, v in pairs(opts) do
                    if not DEFAULT_KEYS[k] then error("weft.model: unknown option '" .. tostring(k) .. "'", 2) end
                    defaults[k] = v
                end
            end
            return require("weft.policy").model(a.policy, defaults, normalize)
        end
    else
        prov, id = name:match("^([^/]+)/(.+)$")
        if not prov then
            error(format("weft.model: unknown model '%s' (not an alias; expected \"provider/model\")", name), 2)
        end
    end
    if opts ~= nil then
        if type(opts) ~= "table" then error("weft.model: opts must be a table", 2) end
        for k, v in pairs(opts) do
            if not MODEL_KEYS[k] or k == "provider" or k == "model" then
                error("weft.model: unknown option '" .. tostring(k) .. "'", 2)
            end
            defaults[k] = v
        end
    end
    if not provider_cfg[prov] and not plugins.find("provider", prov) then
        error(format("weft.model: unknown provider '%s' in '%s' (configure it, or add plugins/providers/%s.lua)", prov, name, prov), 2)
    end
    return setmetatable({ provider = prov, model = id, name = name, defaults = defaults }, Model)
end

--- The provider instance (limiter, breaker, plugin entry) of `name`, for
--- introspection and tests.
function M.provider(name)
    return instance(name)
end

return M
