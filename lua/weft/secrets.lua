--- weft.secrets: credentials as opaque handles (values stay in C memory).
---
--- ```lua
--- local key = weft.secret("env:OPENAI_API_KEY")         -- also file:PATH, cmd:COMMAND, vault:...
--- weft.http.request { url = url, auth = { secret = key, header = "authorization", format = "Bearer {}" } }
--- print(key)                                            --> <secret env:OPENAI_API_KEY>
--- ```
---
--- Sources: `env:NAME` (the variable must be set and non-empty); `file:PATH`
--- (trailing newline trimmed; refused when group/world-readable unless
--- `allow_insecure = true`); `cmd:COMMAND` (run with /bin/sh, stdout is the
--- value, `timeout` seconds, default 10; needs a task); and source plugins
--- registered with `weft.secrets.register_source(name, fn)`, where
--- `fn(rest, opts)` returns value[, ttl] or raises. `opts.ttl` (seconds)
--- makes any secret expire; an expired secret is loaded again before its
--- next use. After a provider's 401, weft.http loads the secret again when
--- its source can give a new value (not `env:`: the environment does not
--- change from outside) and resends once, only when the value changed.
--- A handle prints as `<secret NAME>`, cannot be concatenated, is refused
--- by weft.json, and has no function returning its value. Every log line
--- and error message has loaded values (raw, base64, URL- and JSON-escaped)
--- replaced by `<secret NAME>`.
local C = require "weft._secrets"
local errors = require "weft.error"

local type, error, tostring, tonumber, pcall, setmetatable = type, error, tostring, tonumber, pcall, setmetatable

local M = {}

local sources = {}       -- name -> fn(rest, opts) -> value, ttl
local specs = setmetatable({}, { __mode = "k" }) -- handle -> {source=, rest=, opts=}
local pending = {}       -- secret name -> task loading it (single flight)

local function split(ref)
    local src, rest = ref:match("^([%w_]+):(.*)$")
    return src, rest
end

local std -- weft.metrics.std, loaded on first use

-- Load (or reload) a handle's value from its source, counted in
-- weft_secret_events_total{event="load"|"refresh"|"failed"}.
local load1
local function load(h, spec)
    std = std or require("weft.metrics").std
    local ok, err = pcall(load1, h, spec)
    if not ok then
        std.secrets:inc(1, "failed")
        error(err, 0)
    end
    std.secrets:inc(1, spec.loaded_once and "refresh" or "load")
    spec.loaded_once = true
end

load1 = function(h, spec)
    local src, rest, opts = spec.source, spec.rest, spec.opts
    local ok, err
    if spec.fn then
        local good, value, ttl = pcall(spec.fn)
        if not good then
            if errors.is(value) then error(value, 0) end
            error(errors.new("auth", ("secret %s: loading failed: %s"):format(h.name, tostring(value))), 0)
        end
        ok, err = h:_set(value, ttl)
    elseif src == "env" then
        ok, err = h:_load_env(rest, opts.ttl)
    elseif src == "file" then
        ok, err = h:_load_file(rest, opts.allow_insecure, opts.ttl)
    elseif src == "cmd" then
        ok, err = h:_load_cmd(rest, opts.timeout or 10, opts.ttl)
    else
        local fn = sources[src]
        if not fn then
            error(errors.new("invalid_request", ("secret %s: unknown source '%s' (env, file, cmd or a registered source)"):format(h.name, src)), 0)
        end
        local good, value, ttl = pcall(fn, rest, opts)
        if not good then
            error(errors.new("auth", ("secret %s: source %s failed: %s"):format(h.name, src, tostring(value))), 0)
        end
        if type(value) ~= "string" then
            error(errors.new("auth", ("secret %s: source %s returned no value"):format(h.name, src)), 0)
        end
        ok, err = h:_set(value, ttl or opts.ttl)
    end
    if not ok then error(err, 0) end
end

-- Load once for all concurrent callers (single flight).
local function refresh(h)
    local spec = specs[h]
    if not spec then
        error(errors.new("auth", ("secret %s has no source to load it from"):format(h.name)), 0)
    end
    local name = h.name
    local t = pending[name]
    if t then return t:wait() end
    local T = require "weft._task"
    if not T.current() then return load(h, spec) end
    t = weft.spawn(load, h, spec)
    pending[name] = t
    local ok, err = pcall(t.wait, t)
    pending[name] = nil
    if not ok then error(err, 0) end
end

---@class weft.SecretOptions
---@field ttl? number seconds before the value must be loaded again
---@field allow_insecure? boolean file: accept group/world-readable files
---@field timeout? number cmd: seconds (default 10)

--- A handle on the secret `ref` ("env:NAME", "file:PATH", "cmd:COMMAND",
--- "<source>:<rest>"), loaded now. Raises kind `auth` with a message that
--- names the secret (never its value) when it cannot be loaded.
---@param ref string
---@param opts? weft.SecretOptions
---@return userdata handle
function M.secret(ref, opts)
    if type(ref) ~= "string" then error("weft.secret: expected a reference such as \"env:NAME\"", 2) end
    local src, rest = split(ref)
    if not src or rest == "" then
        error("weft.secret: a reference is source:rest, such as env:OPENAI_API_KEY (got " .. ref .. ")", 2)
    end
    local h = C.handle(ref)
    specs[h] = { source = src, rest = rest, opts = opts or {} }
    if not h.loaded then refresh(h) end
    return h
end

--- A handle whose value is set by code (an OAuth2 token, a test fixture).
---@param name string
---@param value string
---@param ttl? number
function M.value(name, value, ttl)
    local h = C.handle(name)
    local ok, err = h:_set(value, ttl)
    if not ok then error(err, 2) end
    return h
end

--- Register a source plugin: `fn(rest, opts)` returns value[, ttl].
---@param name string
---@param fn fun(rest: string, opts: table): string, number?
function M.register_source(name, fn)
    if type(name) ~= "string" or not name:match("^[%w_]+$") or name == "env" or name == "file" or name == "cmd" then
        error("weft.secrets.register_source: invalid or reserved source name " .. tostring(name), 2)
    end
    if type(fn) ~= "function" then error("weft.secrets.register_source: expected a function", 2) end
    sources[name] = fn
end

--- A handle whose value comes from `fn()` (returning value[, ttl]), loaded
--- now and again whenever it expires or is rejected (single flight).
---@param name string
---@param fn fun(): string, number?
function M.derived(name, fn)
    local h = C.handle(name)
    specs[h] = { source = "fn", rest = "", opts = {}, fn = fn }
    refresh(h)
    return h
end

local function urlencode(s)
    return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

---@class weft.OAuth2Options
---@field token_url string
---@field client_id string|userdata
---@field client_secret userdata a secret handle
---@field scope? string
---@field audience? string
---@field early? number seconds before expiry to refresh (default 60, at most half the lifetime)
---@field timeout? number token request timeout (default 10)

--- OAuth2 client credentials: a handle on the access token, fetched from
--- `token_url` with HTTP basic auth (client id and secret from the store),
--- cached until `early` seconds before it expires, fetched once for all
--- concurrent callers, and fetched again after a provider's 401. The
--- token's JSON response passes through Lua once; the token is stored like
--- any secret (and redacted from logs from then on).
---@param opts weft.OAuth2Options
function M.oauth2(opts)
    if type(opts) ~= "table" or type(opts.token_url) ~= "string" then
        error("weft.secrets.oauth2: token_url is required", 2)
    end
    if not C.is(opts.client_secret) then error("weft.secrets.oauth2: client_secret must be a secret handle", 2) end
    local id = opts.client_id
    if type(id) ~= "string" and not C.is(id) then error("weft.secrets.oauth2: client_id must be a string or a secret", 2) end
    local json = require "weft.json"
    local http = require "weft.http"
    local body = "grant_type=client_credentials"
    if opts.scope then body = body .. "&scope=" .. urlencode(opts.scope) end
    if opts.audience then body = body .. "&audience=" .. urlencode(opts.audience) end
    local function fetch()
        local res = http.request {
            method = "POST", url = opts.token_url, body = body, timeout = opts.timeout or 10,
            headers = { ["content-type"] = "application/x-www-form-urlencoded", accept = "application/json" },
            auth = { basic = { user = id, password = opts.client_secret } },
        }
        if res.status ~= 200 then
            error(errors.new(res.status == 401 and "auth" or "transient",
                ("OAuth2 token endpoint answered %d"):format(res.status), { status = res.status }), 0)
        end
        local v = json.decode(res.body)
        if type(v) ~= "table" or type(v.access_token) ~= "string" then
            error(errors.new("integration", "OAuth2 token endpoint returned no access_token"), 0)
        end
        local life = tonumber(v.expires_in) or 3600
        local early = math.min(opts.early or 60, life / 2)
        return v.access_token, math.max(0.001, life - early)
    end
    local name = "oauth2:" .. opts.token_url .. "#" .. (type(id) == "string" and id or id.name)
    return M.derived(name, fetch)
end

--- Use a secret source plugin shipped in plugins/secrets/ (e.g. "vault").
function M.use(plugin, opts)
    local home = package.weft_home or "."
    local path = home .. "/plugins/secrets/" .. plugin .. ".lua"
    local chunk, err = loadfile(path)
    if not chunk then
        require("weft.calls").plugin_loaded("secrets/" .. plugin, false, err)
        error("weft.secrets.use: " .. tostring(err), 2)
    end
    local calls = require "weft.calls"
    local good, p = pcall(chunk)
    if not good or type(p) ~= "table" or type(p.load) ~= "function" or type(p.name) ~= "string" then
        calls.plugin_loaded("secrets/" .. plugin, false, good and "not a secret source plugin" or p)
        error("weft.secrets.use: " .. path .. " is not a secret source plugin" ..
              (good and "" or (": " .. tostring(p))), 2)
    end
    calls.plugin_loaded("secrets/" .. plugin, true)
    M.register_source(p.name, function(rest, o) return p.load(rest, o, opts or {}) end)
    return p
end

--- Make sure a handle holds a valid value (loading it again when expired).
function M.ensure(h)
    if not h.loaded then refresh(h) end
    return h
end

--- Load a handle again now (after a provider rejected it, say). Whether
--- that gave a new value shows in `h.version`, which changes only then.
---@param h userdata
---@return userdata h
function M.refresh(h)
    refresh(h)
    return h
end

--- True when loading `h` again could give a different value: its source is
--- a file, a command, a function (OAuth2 tokens) or a source plugin. False
--- for `env:` (the process environment does not change from outside) and
--- for values set by code (weft.secrets.value), which have no source.
---@param h userdata
---@return boolean
function M.refreshable(h)
    local spec = specs[h]
    return spec ~= nil and spec.source ~= "env"
end

--- True for a secret handle.
M.is = C.is

-- loaded, version of a handle (nothing for another value): what
-- weft.http reads of each secret before sending, in one call
M._state = C.state

--- Replace every loaded secret value in `text` with <secret NAME>.
M.redact = C.redact

return M
