--- weft.model and weft.configure: the AIModel interface over provider
--- plugins.
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
--- Every call goes through the call pipeline (weft._pipeline: resolve,
--- admit, encode, send, classify, retry, decode, record) on the provider's
--- configuration and instance (weft._config).
---
--- Streams: a failure before the first event reached `on_event` is retried
--- like any other; after it, the call raises an error of kind `transient`
--- with `partial = {text=, usage=, tool_calls=}` and `should_retry = false`
--- (nothing is silently cut short, and nothing is delivered twice). A
--- stream is complete only when the dialect's terminator arrived; a body
--- that ends before it is a `transient` error too (weft._stream).
local plugins = require "weft.plugins"
local calls = require "weft.calls"
local errors = require "weft.error"
local config = require "weft._config"
local pipeline = require "weft._pipeline"

local type, pairs, ipairs, tostring, error, pcall, setmetatable =
    type, pairs, ipairs, tostring, error, pcall, setmetatable
local format = string.format
local normalize, run = pipeline.normalize_owned, pipeline.run

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
---@field tags? string[] labels for policies (router rules) and logs
---@field metadata? table key/values for policies and hooks (never sent to the provider)
---@field cache? boolean|"refresh" false bypasses a cache policy; "refresh" asks again and keeps the new answer

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
---@field id? string the provider's id of the answer
---@field cached? boolean (policy models) the answer came from a cache policy
---@field route? table[] (policy models) the decisions and target calls that made the answer
---@field policy? string (policy models) the policy's name

local MODEL_KEYS = { provider = true, model = true, system = true, max_tokens = true, temperature = true,
                     top_p = true, stop = true, priority = true, timeout = true, extra = true, tags = true,
                     metadata = true }
-- the request defaults among them (a policy model's other keys are its options)
local DEFAULT_KEYS = {}
for k in pairs(MODEL_KEYS) do if k ~= "provider" and k ~= "model" then DEFAULT_KEYS[k] = true end end

-- configured providers (raw, validated; weft._config's table, which also
-- holds the instances built from them), and the model aliases
local provider_cfg = config.providers
local model_alias = {}
local source_of, config_error, build, commit = config.source_of, config.config_error, config.build, config.commit

-- Model:usage() counts from here: the registry's values at the last reset
-- (nil: from the start of the process).
local usage_since

M.source_of = source_of

------------------------------------------------------------ configuration

local configure -- the part of M.configure after the redis setting

--- Configure providers and model aliases. Providers: name -> {plugin
--- (default: the name), base_url, secret (a reference "env:NAME" or a
--- handle; false for none), auth ({header=, format=} or {query=}: where
--- the key goes), limits ({rpm=, tpm=, rpd=, ...}), retry (weft.retry
--- policy options), breaker (weft.breaker options, or false), timeout,
--- connect_timeout, idle_timeout (seconds), prices (model -> {input=,
--- output=} USD per 1M tokens), and the plugin's own options}. Models:
--- alias -> "provider/model" or {provider=, model=, and request defaults}.
--- `redis` (a URL or {url=, password=, timeout=, on_failure=,
--- processes=}): the Redis the processes share state through; every
--- provider's limits are then shared through it (`limits.shared = false`
--- opts out), and `shared = true` in a breaker, a retry policy or a cache
--- means it. Providers and aliases named again replace the earlier ones. Errors
--- name the key and the line of the file the configuration is in.
---@param cfg {providers?: table<string, table>, models?: table<string, string|table>, redis?: string|table|false}
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
        if k ~= "providers" and k ~= "models" and k ~= "redis" then
            config_error(where, { k }, "unknown key (providers, models, redis)")
        end
    end
    -- the Redis every process shares state through: providers' limits are
    -- shared through it unless they say `shared = false`
    local redis_before = config.redis
    if cfg.redis ~= nil then
        if cfg.redis == false then
            config.redis = nil
        else
            local why = config.shared_rule(cfg.redis)
            if why then config_error(where, { "redis" }, why) end
            config.redis = type(cfg.redis) == "string" and { url = cfg.redis } or cfg.redis
        end
    end
    local ok, err = pcall(configure, cfg, where)
    if not ok then
        config.redis = redis_before -- a refused configuration changes nothing
        error(err, 0)
    end
end

configure = function(cfg, where)
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
        commit(name, inst)
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
--- {alias = {provider=, model=, defaults=}}, redis = {...} (when
--- configured)} (copies; secrets stay handles or references).
function M.config()
    local out = { providers = {}, models = {} }
    if config.redis then
        out.redis = {}
        for k, v in pairs(config.redis) do out.redis[k] = v end
    end
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

--- Forget the configuration (tests); model:usage() counts from here.
function M.reset()
    config.reset()
    model_alias = {}
    usage_since = calls.mark()
    M.generation = M.generation + 1
end

------------------------------------------------------------ AIModel

local function bad(msg) error(errors.new("invalid_request", msg), 0) end

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
    local r, owned = normalize(req, self.defaults, self.model)
    return run(self, "complete", r, nil, owned)
end

--- Stream a chat: `on_event({type = "text", text = piece})` for each piece
--- as it arrives (return false to stop); returns the whole result at the
--- end. See the module doc for failures in the middle of a stream.
---@param req string|weft.Request
---@param on_event fun(ev: {type: "text", text: string}): boolean?
---@return weft.Result
function Model:stream(req, on_event)
    if type(on_event) ~= "function" then error("model:stream: on_event must be a function", 2) end
    local r, owned = normalize(req, self.defaults, self.model)
    return run(self, "stream", r, on_event, owned)
end

-- A call with a request normalized already (weft.policy passes one on to
-- its targets): the same stages as complete/stream/embed.
function Model:_call(op, req, on_event)
    return run(self, op, req, on_event)
end

--- Complete (`op` "complete") or stream a request table that is the
--- caller's own plain data, made for this call alone (weft serve's, built
--- from a client's JSON): a provider model's plugin gets it without the
--- defensive copy (the pipeline's `owned`). A policy model takes the usual
--- path. Host-internal.
---@param m weft.Model|weft.PolicyModel
---@param op "complete"|"stream"
---@param req weft.Request
---@param on_event? fun(ev: table): boolean?
---@return weft.Result
function M.owned_call(m, op, req, on_event)
    if getmetatable(m) == Model then
        local r, owned = normalize(req, m.defaults, m.model, true)
        return run(m, op, r, on_event, owned)
    end
    if op == "stream" then return m:stream(req, on_event) end
    return m:complete(req)
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

--- Tokens, cost, calls and errors of this model in this process (since
--- weft.model's reset), as the metrics registry counts them: every call
--- recorded under this provider and model (weft_calls_total,
--- weft_tokens_total, weft_cost_usd_total).
---@return {calls: integer, errors: integer, input_tokens: integer, output_tokens: integer, cost: number}
function Model:usage()
    local t = calls.totals(self.provider, self.model, usage_since)
    return { calls = t.calls, errors = t.errors, input_tokens = t.input_tokens, output_tokens = t.output_tokens,
             cost = t.cost }
end

--- The model `name`: an alias from the configuration or "provider/model".
--- `opts` are request defaults (system, max_tokens, temperature, top_p,
--- stop, priority, timeout, extra, tags, metadata). A policy model (one
--- configured with `policy`, see weft.policy) is returned as a
--- weft.PolicyModel with the same methods.
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
            return require("weft.policy").model(a.policy, defaults, pipeline.normalize)
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
    return config.instance(name)
end

return M
