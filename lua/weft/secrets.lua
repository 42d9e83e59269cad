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
--- next use, and a provider's 401 triggers one refresh-and-retry.
--- A handle prints as `<secret NAME>`, cannot be concatenated, is refused
--- by weft.json, and has no function returning its value. Every log line
--- and error message has loaded values (raw, base64, URL- and JSON-escaped)
--- replaced by `<secret NAME>`.
local C = require "weft._secrets"
local errors = require "weft.error"

local type, error, tostring, pcall, setmetatable = type, error, tostring, pcall, setmetatable

local M = {}

local sources = {}       -- name -> fn(rest, opts) -> value, ttl
local specs = setmetatable({}, { __mode = "k" }) -- handle -> {source=, rest=, opts=}
local pending = {}       -- secret name -> task loading it (single flight)

local function split(ref)
    local src, rest = ref:match("^([%w_]+):(.*)$")
    return src, rest
end

-- Load (or reload) a handle's value from its source.
local function load(h, spec)
    local src, rest, opts = spec.source, spec.rest, spec.opts
    local ok, err
    if src == "env" then
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

--- Set how a handle is refreshed (used by OAuth2): fn() returns value, ttl.
function M.set_loader(h, fn)
    specs[h] = { source = "__loader", rest = "", opts = {} }
    sources.__loader = nil
    specs[h].loader = fn
    specs[h].source = "loader:" .. h.name
    sources[specs[h].source] = function() return fn() end
end

--- Make sure a handle holds a valid value (loading it again when expired).
function M.ensure(h)
    if not h.loaded then refresh(h) end
    return h
end

--- Load a handle again now (after a provider rejected it, say).
function M.refresh(h)
    refresh(h)
    return h
end

--- True for a secret handle.
M.is = C.is

--- Replace every loaded secret value in `text` with <secret NAME>.
M.redact = C.redact

return M
