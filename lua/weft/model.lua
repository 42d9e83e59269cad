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
local now = T.now
local ceil, huge = math.ceil, math.huge
local format, concat = string.format, table.concat

local M = {}

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
    extra = true,
}
local ROLES = { system = true, user = true, assistant = true, tool = true }

-- Provider keys the host reads; any other key is the plugin's (its schema).
local HOST_KEYS = {
    plugin = "string", base_url = "string", secret = "string|userdata|boolean", auth = "table",
    limits = "table", retry = "table", breaker = "table|boolean", timeout = "number",
    connect_timeout = "number", idle_timeout = "number", prices = "table",
}
local LIMIT_KEYS = { rps = true, rpm = true, rpd = true, tps = true, tpm = true, tpd = true, burst = true,
                     priorities = true, aging = true }
local RETRY_KEYS = { base = true, cap = true, multiplier = true, jitter = true, max_attempts = true,
                     max_elapsed = true, hint_cap = true, seed = true, budget = true }
local BREAKER_KEYS = { threshold = true, min_calls = true, window = true, cooldown = true, probes = true }
local MODEL_KEYS = { provider = true, model = true, system = true, max_tokens = true, temperature = true,
                     top_p = true, stop = true, priority = true, timeout = true, extra = true }

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
        if not LIMIT_KEYS[k] then config_error(where, { "providers", name, "limits", k }, "unknown limit") end
        if type(v) ~= "number" or v <= 0 then
            config_error(where, { "providers", name, "limits", k }, "must be a positive number")
        end
    end
    for k in pairs(raw.retry or {}) do
        if not RETRY_KEYS[k] then config_error(where, { "providers", name, "retry", k }, "unknown retry option") end
    end
    if type(raw.breaker) == "table" then
        for k in pairs(raw.breaker) do
            if not BREAKER_KEYS[k] then config_error(where, { "providers", name, "breaker", k }, "unknown breaker option") end
        end
    end
    for _, k in ipairs { "timeout", "connect_timeout", "idle_timeout" } do
        if raw[k] ~= nil and raw[k] <= 0 then config_error(where, { "providers", name, k }, "must be > 0") end
    end
    if raw.auth then
        local a = raw.auth
        if (a.header == nil and a.query == nil) or (a.format ~= nil and (type(a.format) ~= "string" or not a.format:find("{}", 1, true))) then
            config_error(where, { "providers", name, "auth" }, "must be {header = NAME, format = \"... {} ...\"} or {query = NAME}")
        end
    end
    for model, pr in pairs(raw.prices or {}) do
        if type(pr) ~= "table" or type(pr.input) ~= "number" or type(pr.output) ~= "number" or pr.input < 0 or pr.output < 0 then
            config_error(where, { "providers", name, "prices", model }, "must be {input = USD per 1M tokens, output = ...}")
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
    if ref == nil then ref = p.secret end
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
    for alias, m in pairs(cfg.models or {}) do
        local path = { "models", alias }
        if type(m) == "string" then m = { model = m } end
        if type(m) ~= "table" then config_error(where, path, "must be \"provider/model\" or a table") end
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
    end
    for name, inst in pairs(built) do
        provider_cfg[name] = inst.raw
        instances[name] = inst
    end
    for alias, a in pairs(aliases) do model_alias[alias] = a end
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
        out.models[alias] = { provider = a.provider, model = a.model, defaults = a.defaults }
    end
    return out
end

--- Forget the configuration (tests).
function M.reset()
    provider_cfg, model_alias, instances, by_model = {}, {}, {}, {}
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

local function excerpt(s)
    s = tostring(s or ""):sub(1, 200)
    return require("weft.secrets").redact(s)
end

-- An error value of the call's provider and model.
local function fail(ctx, kind, msg, fields)
    fields = fields or {}
    fields.provider, fields.model = ctx.inst.name, ctx.req.model
    error(errors.new(kind, msg, fields), 0)
end

-- Call a plugin function; its failure is an integration error naming it.
local function plugin_call(ctx, fname, ...)
    local ok, a, b = pcall(ctx.plugin[fname], ...)
    if not ok then
        fail(ctx, "integration", format("provider plugin %s (%s): %s failed: %s", ctx.plugin.name,
            tostring(ctx.plugin.version), fname, excerpt(a)))
    end
    return a, b
end

-- Feed the answer's rate-limit state to the limiter and the quota gauge:
-- the plugin reads its provider's headers (rate_limits), else the host's
-- reading of the common ones (x-ratelimit-*, anthropic-ratelimit-*).
local quota_gauge = require("weft.metrics").std.quota
local function observe_limits(ctx, res, body)
    local inst = ctx.inst
    local f = ctx.plugin.rate_limits
    if not f then
        inst.limiter:observe(res.headers, res.status)
        return
    end
    local rl = plugin_call(ctx, "rate_limits", res.status, res.headers, body or "", ctx.pcfg)
    if type(rl) ~= "table" then return end
    inst.limiter:apply(rl)
    for _, unit in ipairs { "requests", "tokens" } do
        local u = rl[unit]
        if type(u) == "table" and tonumber(u.remaining) then quota_gauge:set(tonumber(u.remaining), inst.name, unit) end
    end
end

-- A non-2xx answer -> the error the plugin classifies it as.
local function http_failure(ctx, res, body)
    local c = plugin_call(ctx, "classify", res.status, res.headers, body, ctx.pcfg)
    if type(c) ~= "table" then c = {} end
    local kind = errors.KINDS[c.kind] and c.kind or "integration"
    local e = errors.new(kind, format("%s HTTP %d: %s", ctx.plugin.name, res.status, excerpt(c.message or body)), {
        status = res.status, provider = ctx.inst.name, model = ctx.req.model, code = c.code,
        retry_after = tonumber(c.retry_after) or retry.hint(res), should_retry = retry.should_retry(res.headers),
    })
    error(e, 0)
end

local function apply_usage(out, u)
    if type(u) == "table" then
        out.usage = { input = tonumber(u.input) or 0, output = tonumber(u.output) or 0 }
    end
end

-- One streamed event: decode, deliver text, keep usage and the end mark.
local function on_stream_event(ctx, ev, st)
    local d = plugin_call(ctx, "event", ev, st.plugin_state, ctx.req, ctx.pcfg)
    if d == nil then return end
    if type(d) ~= "table" then fail(ctx, "integration", "plugin event() must return a table or nil") end
    if d.error then
        local e = type(d.error) == "table" and d.error or {}
        st.error = { kind = errors.KINDS[e.kind] and e.kind or "transient", message = tostring(e.message or "error in stream") }
        return false
    end
    if d.usage then apply_usage(st, d.usage) end
    if d.tool_calls then st.tool_calls = d.tool_calls end
    if d.finish_reason then st.finish_reason = d.finish_reason end
    if d.model then st.model = d.model end
    if d.done then st.done = true end
    if type(d.text) == "string" and d.text ~= "" then
        st.text[#st.text + 1] = d.text
        ctx.delivered = true
        if ctx.on_event({ type = "text", text = d.text }) == false then
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

-- One attempt: encode, send, classify, decode.
local function send(ctx, remaining)
    local inst, p, req = ctx.inst, ctx.plugin, ctx.req
    local op = ctx.op
    local enc = plugin_call(ctx, "encode", op, req, ctx.pcfg)
    if type(enc) ~= "table" or type(enc.path) ~= "string" then
        fail(ctx, "integration", "provider plugin " .. p.name .. ": encode must return {path=, body=, ...}")
    end
    local headers = { ["content-type"] = "application/json", accept = op == "stream" and "text/event-stream" or "application/json" }
    for k, v in pairs(enc.headers or {}) do headers[k] = v end
    local body = enc.body
    if type(body) == "table" then body = json.encode(body) end
    local url = inst.base_url .. enc.path
    if enc.query then url = url .. "?" .. enc.query end
    local auth = auth_of(inst, p)
    local timeout = inst.timeout
    if remaining and remaining < timeout then timeout = remaining end
    if timeout <= 0 then fail(ctx, "timeout", "deadline reached before the attempt") end
    local opts = { method = enc.method or "POST", url = url, headers = headers, body = body, auth = auth,
                   timeout = timeout, connect_timeout = inst.connect_timeout }
    local st
    if op == "stream" then
        st = { text = {}, plugin_state = {} }
        local parser = SSE.new()
        local errbody
        opts.idle_timeout = inst.idle_timeout
        opts.on_data = function(chunk, head)
            if head.status >= 300 then
                errbody = (errbody or "") .. chunk
                return #errbody < 65536
            end
            local evs = parser:feed(chunk)
            for i = 1, #evs do
                if on_stream_event(ctx, evs[i], st) == false then return false end
            end
        end
        local ok, res = pcall(http.request, opts)
        if not ok then
            if errors.is(res) and res.kind ~= "cancelled" then
                res.provider, res.model = inst.name, req.model
                if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
                stream_error(ctx, st, res.kind, res.message or tostring(res))
            end
            error(res, 0)
        end
        observe_limits(ctx, res, errbody)
        if res.status >= 300 then http_failure(ctx, res, errbody or "") end
        if st.error then stream_error(ctx, st, st.error.kind, st.error.message) end
        if not st.done and not st.aborted then
            stream_error(ctx, st, "transient", "the stream ended before its end marker")
        end
        local out = { text = concat(st.text), tool_calls = st.tool_calls, finish_reason = st.finish_reason or (st.aborted and "aborted") or "stop",
                      model = st.model, aborted = st.aborted or nil }
        apply_usage(out, st.usage)
        return out
    end
    local res = http.request(opts)
    observe_limits(ctx, res, res.status >= 300 and res.body or nil)
    if res.status >= 300 then http_failure(ctx, res, res.body) end
    local ok, decoded = pcall(json.decode, res.body)
    if not ok or type(decoded) ~= "table" then
        fail(ctx, "integration", format("%s answered %d with a body that is not JSON: %s", p.name, res.status, excerpt(res.body)),
            { status = res.status })
    end
    local out, why = plugin_call(ctx, "decode", op, decoded, req, ctx.pcfg)
    if type(out) ~= "table" then
        fail(ctx, "integration", format("%s: cannot decode the answer (%s): %s", p.name, tostring(why or "decode returned nothing"),
            excerpt(res.body)), { status = res.status })
    end
    return out
end

-- Admission as DESIGN.md orders it: an open breaker refuses at once (no
-- wait in the limiter's queue), then the limiter admits, then the call
-- goes through the breaker (which may take a half-open probe).
local function attempt(ctx, _, remaining)
    local inst = ctx.inst
    local br = inst.breaker
    if br then br:check() end
    inst.limiter:acquire(ctx.cost, { priority = ctx.req.priority, deadline = ctx.deadline })
    if not br then return send(ctx, remaining) end
    local ok, refused = br:admit()
    if not ok then
        -- It opened (or its half-open probe is out) while this call waited
        -- in the queue: the admitted request goes to the next waiter. The
        -- estimated tokens come back in run(), as for every failed call.
        inst.limiter:refund(ctx.cost.requests)
        error(refused, 0)
    end
    return br:run(send, ctx, remaining)
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
        inst.cfgs[p] = pcfg
    end
    local deadline = req.deadline or (req.timeout and now() + req.timeout) or nil
    local ctx = { inst = inst, plugin = p, pcfg = pcfg, op = op, req = req, on_event = on_event, deadline = deadline }
    local est = estimate(req)
    ctx.cost = { requests = 1, tokens = est }
    local call = calls.begin { provider = inst.name, model = req.model, operation = op, id = req.id }
    local t0 = now()
    local ok, out = pcall(retry.run, inst.policy, function(n, remaining) return attempt(ctx, n, remaining) end,
        { call = call, deadline = deadline })
    if not ok then
        -- admitted tokens were not used (or are unknown): give them back
        inst.limiter:reconcile(est, (type(out) == "table" and out.partial and out.partial.usage)
            and (out.partial.usage.input + out.partial.usage.output) or 0)
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
