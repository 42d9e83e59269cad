--- weft.plugins: finding, loading and validating plugins (provider
--- adapters and orchestration policies) in a sandbox.
---
--- A plugin is a Lua file returning a table:
---
--- ```lua
--- return {
---     api = 2,                      -- the plugin API version it was written for
---     name = "openai",              -- unique within its kind; the file is NAME.lua
---     kind = "provider",            -- "provider" or "policy"
---     version = "1.2.0",            -- optional, shown in logs and results
---     schema = {                    -- its configuration: key -> {type=, default=, required=,
---         timeout = { type = "number", default = 60,    --   description=, validate=}
---                     description = "seconds",
---                     validate = function(v) if v > 0 then return true end return nil, "must be > 0" end },
---     },
---     -- and its functions (a provider: encode, decode, classify, ...)
--- }
--- ```
---
--- The file runs in its own environment: the safe parts of the standard
--- library (string, table, math, os.time/clock/date, pairs, pcall, ...),
--- and `weft` limited to json, error, log, time (parsing of durations
--- and dates in rate-limit headers) and codec (weft.codec, read-only and
--- the same for every plugin). No io, os.execute, debug,
--- load/loadstring/dofile/require, no globals shared with the script or
--- other plugins. Loads are counted in weft_plugin_loads_total and
--- announced to "reload" hooks.
---
--- A schema field's `type` is one of string, number, boolean, table,
--- function, or several joined by "|" ("boolean|string|table").
---
--- Plugin API 2 is API 1 and: `weft.codec`; schema fields may have a
--- `description` (a string) and a `validate(value, cfg)` that returns true
--- or `nil, message` (a configuration it refuses fails naming the plugin
--- and the key; other keys of a schema field are refused); `extends`
--- merges deeply (tables key by key, recursively; lists and other values
--- replace; `weft.json.null` removes what the parent has). This host loads
--- API_MIN to API.
local calls = require "weft.calls"
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"

local type, pairs, ipairs, tostring, setmetatable, getmetatable, loadfile, loadstring, setfenv, pcall, error =
    type, pairs, ipairs, tostring, setmetatable, getmetatable, loadfile, loadstring, setfenv, pcall, error

local M = {}

--- The plugin API version this host implements, and the oldest it loads.
M.API = 2
M.API_MIN = 1

local KINDS = { provider = "providers", policy = "policies" }
local SCHEMA_TYPES = { string = true, number = true, boolean = true, table = true, ["function"] = true }
-- What a schema field may hold (plugin API 2 refuses anything else: a
-- misspelt `defualt` would be silently ignored).
local SCHEMA_FIELD_KEYS = { type = true, default = true, required = true, description = true, validate = true }

-- A schema field's type: one of SCHEMA_TYPES, or several joined by "|"
-- ("boolean|string|table": an option that is a switch, a name or a table).
local function schema_type(t)
    if type(t) ~= "string" or t == "" then return false end
    for one in (t .. "|"):gmatch("([^|]*)|") do
        if not SCHEMA_TYPES[one] then return false end
    end
    return true
end

-- Whether `v` is of schema type `t` (schema_type's form).
local function typed(v, t)
    local tv = type(v)
    if tv == t then return true end
    for one in t:gmatch("[^|]+") do
        if one == tv then return true end
    end
    return false
end

-- Time parsing for rate-limit headers (runtime/retry.c), for plugins:
-- seconds, or nil when the text is not of that form.
local codec = require "weft.codec"
local TIME = codec.time

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

------------------------------------------------------------ the boundary

-- Plugin code is untrusted (DESIGN.md, "The plugin boundary"): it runs
-- with the JIT off (so the budget's count hook fires in it), under an
-- instruction and allocation budget per call (runtime/budget.h), in an
-- environment where every table is its own copy, and the host reads what
-- it returns only as plain data, with raw access, so no metamethod of a
-- plugin ever runs outside its budget.
local budget = require "weft._budget"
local bcall, tripped = budget.call, budget.tripped
local jit_off = jit and jit.off or function() end
local next, rawget, rawset, rawequal, select, newproxy = next, rawget, rawset, rawequal, select, newproxy
local raw_getmetatable = debug.getmetatable

local BUDGET_ERR = "plugin budget exceeded"

-- pcall/xpcall for plugins: a budget that ran out stays out, whatever the
-- plugin catches (the error is raised again outside its handler).
local function after(ok, ...)
    if tripped() then error(BUDGET_ERR, 0) end
    return ok, ...
end
local function sandbox_pcall(f, ...) return after(pcall(f, ...)) end
local function sandbox_xpcall(f, h, ...) return after(xpcall(f, h, ...)) end

-- A copy of a host table for one sandbox: tables copied all the way down
-- (functions are shared: they are immutable and their upvalues are out of
-- reach without debug), metatables kept as they are (the host's are
-- protected with __metatable, so a plugin can neither read nor replace
-- them).
local function deep_copy(t, seen)
    seen = seen or {}
    if seen[t] then return seen[t] end
    local c = {}
    seen[t] = c
    for k, v in next, t do
        if type(v) == "table" then v = deep_copy(v, seen) end
        if type(k) == "table" then k = deep_copy(k, seen) end
        rawset(c, k, v)
    end
    local mt = raw_getmetatable(t)
    if mt then debug.setmetatable(c, mt) end
    return c
end
M.deep_copy = deep_copy

-- weft.codec as plugins see it: one userdata shared by every sandbox, its
-- functions behind a protected metatable. A table could not be kept
-- read-only (rawset is in the sandbox); a userdata has no raw access,
-- getmetatable gives its name, setmetatable refuses it, and it holds only
-- functions (nothing it hands out is shared state: they return new
-- tables, and their upvalues are out of reach without debug).
local function readonly(name, t)
    local index = {}
    for k, v in pairs(t) do
        if type(v) == "function" then index[k] = v end
    end
    local u = newproxy(true)
    local mt = raw_getmetatable(u)
    mt.__index = index
    mt.__newindex = function() error(name .. " is read-only", 2) end
    mt.__metatable = name
    mt.__tostring = function() return name end
    return u
end
local CODEC = readonly("weft.codec", codec)

-- Lines a plugin may write: emitting only (no level or format changes),
-- each line naming the plugin.
-- At most LOG_RATE lines a second per plugin load reach the log (a plugin
-- in a loop would flood it within its budget); the lines left out are
-- counted on the next line that gets through (`dropped`).
local LOG_RATE = 100

local function plugin_log(label)
    local out = {}
    local second, n, dropped = -1, 0, 0
    for _, level in ipairs { "debug", "info", "warn", "error" } do
        local emit = log[level]
        out[level] = function(msg, fields)
            local t = math.floor(os.time())
            if t ~= second then second, n = t, 0 end
            n = n + 1
            if n > LOG_RATE then
                dropped = dropped + 1
                return
            end
            local f = { plugin = label }
            if dropped > 0 then f.dropped, dropped = dropped, 0 end
            if type(fields) == "table" then
                for k, v in next, fields do
                    if type(k) == "string" and k ~= "plugin" then f[k] = v end
                end
            end
            emit(type(msg) == "string" and msg or tostring(msg), f)
        end
    end
    return out
end

-- lua-cjson's decode leaks its buffer when an error (a tripped memory
-- budget) interrupts it: a plugin's decode needs room for what the text
-- may become first (M.DECODE_ROOM bytes a byte of text), else the budget
-- trips before the decode starts.
M.DECODE_ROOM = 64
local need, json_decode = budget.need, json.decode
local function decode(s, ...)
    if type(s) == "string" then need(#s * M.DECODE_ROOM) end
    return json_decode(s, ...)
end
M.decode = decode

local function sandbox_json()
    local j = {}
    for _, k in ipairs { "encode", "pretty", "array", "object", "is_array", "null" } do j[k] = json[k] end
    j.decode = decode
    j.empty_array = json._new_empty_array() -- its own: a write cannot reach the host's
    return j
end

-- A fresh environment per load: nothing in it is shared with the host,
-- the script or another plugin (the string metatable is the VM's, shared
-- by everyone: not handed out).
local function sandbox(label)
    local str = copy(string)
    -- not in its string table (it stays reachable as a method through the
    -- VM's one string metatable; it only gives bytecode, and nothing in a
    -- sandbox loads bytecode)
    str.dump = nil
    local mth = copy(math)
    mth.randomseed = nil -- the host's generator (retry jitter) is not the plugin's to reseed
    local env = {
        assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
        pcall = sandbox_pcall, xpcall = sandbox_xpcall, select = select, tonumber = tonumber,
        tostring = tostring, type = type, unpack = unpack, rawequal = rawequal, rawget = rawget,
        rawset = rawset, setmetatable = setmetatable,
        getmetatable = function(v) if type(v) == "string" then return nil end return getmetatable(v) end,
        string = str, table = copy(table), math = mth,
        os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
        weft = {
            json = sandbox_json(),
            error = deep_copy { new = errors.new, is = errors.is, raise = errors.raise, KINDS = errors.KINDS },
            log = plugin_log(label or "plugin"),
            time = copy(TIME),
            codec = CODEC,
        },
    }
    env._G = env
    return env
end
M.sandbox = sandbox

-- What an error a plugin raised says, without running any of its code
-- (no __tostring, no __index): strings as they are, weft error values by
-- their message, anything else by its type.
local function error_text(e)
    if type(e) == "string" then return e end
    if type(e) == "number" then return tostring(e) end
    if errors.is(e) then
        local m = rawget(e, "message")
        return type(m) == "string" and m or "error"
    end
    return "(a " .. type(e) .. " raised as an error)"
end

local function mb(n) return ("%g MB"):format(math.floor(n / 1048576 * 10 + 0.5) / 10) end

-- The result of a budgeted call: true, results... or nil, message. A
-- budget that ran out is counted for `plugin`.
local budget_total
local function budget_result(plugin, what, ok, ...)
    if ok then return true, ... end
    local e, trip, limit = ...
    if trip then
        budget_total = budget_total or require("weft.metrics").std.plugin_budget
        budget_total:inc(1, plugin, trip)
    end
    if trip == "instructions" then
        return nil, (("%s exceeded its CPU budget (%d instructions)"):format(what, limit):gsub("^ ", ""))
    elseif trip == "memory" then
        return nil, (("%s exceeded its memory budget (%s allocated)"):format(what, mb(limit)):gsub("^ ", ""))
    elseif trip == "time" then
        return nil, (("%s exceeded its time budget (%g ms)"):format(what, limit * 1000):gsub("^ ", ""))
    end
    return nil, what .. " failed: " .. error_text(e)
end

--- The outcome of budgeted code as M.call returns it (true, results... or
--- nil and a message naming `what`), from what the budget reported: `ok`,
--- then the error, the trip and the limit when it failed. A trip is counted
--- for `plugin`. For callers that run plugin code in spans (weft.policy).
M.budget_result = budget_result

--- Call plugin function `fname` of plugin `p` under the budget. Returns
--- true and its results, or nil and a message naming the plugin, the
--- function and the limit it ran into (no secret and no plugin code runs
--- to make it).
---@param p table a loaded plugin (host view)
---@param fname string
local function what_of(p, fname)
    return ("%s plugin %s (%s): %s"):format(p.kind or "provider", tostring(p.name), tostring(p.version or "?"), fname)
end

-- M.call's results: the message naming the plugin is made only for a
-- failure (a call that works allocates nothing for it).
local function call_result(p, fname, ok, ...)
    if ok then return true, ... end
    return budget_result(tostring(p.name), what_of(p, fname), ok, ...)
end

function M.call(p, fname, ...)
    local f = rawget(p, fname)
    if type(f) ~= "function" then return nil, what_of(p, fname) .. " is not a function" end
    return call_result(p, fname, bcall(f, ...))
end

--- Run `f(...)` (host code handling plugin data, such as encoding a body a
--- plugin returned) under the budget, so a metamethod of the plugin it
--- meets runs bounded too. Same returns as M.call; `what` names it.
function M.guard(plugin, what, f, ...)
    return budget_result(plugin, what, bcall(f, ...))
end

--- The limits of one plugin call: get, or set and get ({instructions = N
--- (10 M), memory = BYTES asked for (64 MB), time = SECONDS (0.25)}).
---@param limits? {instructions?: number, memory?: number, time?: number}
---@return {instructions: number, memory: number, time: number}
function M.budget(limits)
    return budget.limits(limits)
end

--- Headers a plugin may not set: they carry credentials or decide the
--- connection (the provider's configured auth header is refused too).
M.HOST_HEADERS = {
    authorization = true, ["proxy-authorization"] = true, ["x-api-key"] = true, ["x-goog-api-key"] = true,
    cookie = true, host = true, ["content-length"] = true, ["transfer-encoding"] = true, connection = true,
}

--- True when a plugin may not set header `lname` (lower case): one of
--- HOST_HEADERS, or `auth_header`, where the provider's credential goes.
---@param lname string
---@param auth_header? string
---@return boolean
function M.host_owned(lname, auth_header)
    return M.HOST_HEADERS[lname] == true or (auth_header ~= nil and lname == auth_header:lower())
end

-- (bad_path's check, without the memo)
local function check_path(path)
    if type(path) ~= "string" then return "path must be a string, got " .. type(path) end
    if path:byte(1) ~= 47 then return "path must start with /" end
    if #path > 8192 then return "path is longer than 8192 bytes" end
    if path:byte(2) == 47 then return "path must not start with //" end
    -- the usual path: letters, digits and "/_-.:" without a "/." anywhere
    if not path:find("[^%w/_%-%.:]") and not path:find("/.", 1, true) then return nil end
    local at = path:find("[^%w%-%._~!%$&'%(%)%*%+,;=:/%%]")
    if at then return ("path has a character that is not allowed (byte %d at %d)"):format(path:byte(at), at) end
    for pos in path:gmatch("()%%") do
        if not path:sub(pos + 1, pos + 2):match("^%x%x$") then return "path has a malformed %-escape" end
    end
    for seg in path:gmatch("/([^/]*)") do
        if seg == "." or seg == ".." then return "path has a dot segment" end
    end
end

-- Paths found good, so that the path of every call is one lookup: a
-- plugin's paths are few (reset past 256, so a plugin that makes a new
-- path per call cannot grow it).
local good_paths, n_good = {}, 0

--- nil when `path` is one a plugin may ask for, else why not: absolute,
--- RFC 3986 path characters only (minus '@'), well-formed %-escapes, no
--- '//' at the start, no dot segments. The origin is always the
--- configured base_url; the path can only add to its path.
---@param path any
---@return string? why
function M.bad_path(path)
    if good_paths[path] then return nil end
    local why = check_path(path)
    if why == nil then
        if n_good >= 256 then good_paths, n_good = {}, 0 end
        good_paths[path], n_good = true, n_good + 1
    end
    return why
end

--- nil when `q` is a query a plugin may send (without "?"), else why not.
---@param q any
---@return string? why
function M.bad_query(q)
    if type(q) ~= "string" then return "query must be a string, got " .. type(q) end
    if #q > 8192 then return "query is longer than 8192 bytes" end
    local at = q:find("[^%w%-%._~!%$&'%(%)%*%+,;=:/%?@%%]")
    if at then return ("query has a character that is not allowed (byte %d at %d)"):format(q:byte(at), at) end
    for pos in q:gmatch("()%%") do
        if not q:sub(pos + 1, pos + 2):match("^%x%x$") then return "query has a malformed %-escape" end
    end
end

-- Plain data from a value the other side of the boundary made (runtime/
-- lua_budget.c): tables copied with raw access (metatables dropped but
-- the JSON marks; at most 100,000 tables nested at most 64 deep),
-- strings, numbers, booleans and json.null kept; functions kept only when
-- `functions` is set (the plugin table itself, which keeps its shape);
-- elsewhere a table met twice is copied twice and a cycle is refused.
local plain = budget.copier({ [json._ARRAY_MT] = true, [json._OBJECT_MT] = true, [json._EMPTY_MT] = true },
    json.null)

--- A host copy of a plugin's value as plain data, or nil and why not.
---@param v any
---@param functions? boolean keep functions (a plugin's own table)
---@return any copy
---@return string? err
M.plain = plain

--- Directories searched, in order: `--plugins DIR` / WEFT_PLUGIN_PATH
--- entries (colon-separated), the user's ~/.config/weft/plugins, and the
--- plugins/ shipped with weft.
---@return string[]
function M.path()
    local dirs = {}
    for d in (os.getenv("WEFT_PLUGIN_PATH") or ""):gmatch("[^:]+") do dirs[#dirs + 1] = d end
    for _, d in ipairs(M.extra_dirs or {}) do dirs[#dirs + 1] = d end
    local home = os.getenv("HOME")
    if home then dirs[#dirs + 1] = home .. "/.config/weft/plugins" end
    dirs[#dirs + 1] = (package.weft_home or ".") .. "/plugins"
    return dirs
end

--- True when `path` is a plugin shipped with weft (under its own plugins/
--- directory): only those are trusted with defaults that decide where a
--- credential goes (`secret`, and `base_url` when a secret is sent).
---@param path string
---@return boolean
function M.shipped(path)
    local dir = (package.weft_home or ".") .. "/plugins/"
    return path:sub(1, #dir) == dir and not path:find("/../", #dir, true)
end

--- Header names no auth placement may use (a credential there would end
--- up in proxies' and servers' logs, or break the request).
M.AUTH_HEADERS_REFUSED = {
    host = true, cookie = true, ["set-cookie"] = true, ["content-length"] = true, ["content-type"] = true,
    ["transfer-encoding"] = true, connection = true, te = true, upgrade = true, expect = true,
}

--- nil when an auth placement ({header=, format=} or {query=}) is
--- well-formed, else {key, why}.
---@param a any
---@return table?
function M.bad_auth(a)
    if type(a) ~= "table" then return { nil, "must be {header = NAME, format = \"... {} ...\"} or {query = NAME}" } end
    for k in pairs(a) do
        if k ~= "header" and k ~= "format" and k ~= "query" then return { k, "unknown key (header, format, query)" } end
    end
    if a.header == nil and a.query == nil then return { nil, "must be {header = NAME, format = \"... {} ...\"} or {query = NAME}" } end
    if a.header ~= nil and a.query ~= nil then return { nil, "header and query: give one of them" } end
    for _, k in ipairs { "header", "query" } do
        local v = a[k]
        if v ~= nil and (type(v) ~= "string" or not v:match("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$")) then
            return { k, "must be a " .. (k == "header" and "header" or "parameter") .. " name, got " ..
                (type(v) == "string" and ("%q"):format(v) or type(v)) }
        end
    end
    if a.header and M.AUTH_HEADERS_REFUSED[a.header:lower()] then
        return { "header", "'" .. a.header:lower() .. "' cannot carry a credential" }
    end
    local f = a.format
    if f ~= nil then
        if type(f) ~= "string" then return { "format", "must be a string with {} once, got " .. type(f) } end
        local first = f:find("{}", 1, true)
        if not first or f:find("{}", first + 2, true) then return { "format", "must contain {} exactly once" } end
        if f:find("[%z\r\n]") then return { "format", "must not contain CR, LF or NUL" } end
    end
end

--- Add a directory searched before the others (`weft run --plugins DIR`).
---@param dir string
function M.add_dir(dir)
    M.extra_dirs = M.extra_dirs or {}
    table.insert(M.extra_dirs, 1, dir)
end

--- The file of plugin `name` of `kind`, or nil and the places looked at.
---@param kind "provider"|"policy"
---@param name string
---@return string? path
---@return string? looked
function M.find(kind, name)
    local sub = KINDS[kind]
    if not sub then error("weft.plugins.find: kind must be provider or policy", 2) end
    if type(name) ~= "string" or not name:match("^[%w_%-]+$") then
        error("weft.plugins.find: invalid plugin name " .. tostring(name), 2)
    end
    local tried = {}
    for _, d in ipairs(M.path()) do
        local p = d .. "/" .. sub .. "/" .. name .. ".lua"
        local f = io.open(p, "r")
        if f then
            f:close()
            return p
        end
        tried[#tried + 1] = p
    end
    return nil, table.concat(tried, ", ")
end

-- Keys of a policy model's configuration that are the host's: the policy,
-- its targets and the request defaults.
local POLICY_HOST_KEYS = { policy = true, targets = true, provider = true, model = true, system = true,
    max_tokens = true, temperature = true, top_p = true, stop = true, priority = true, timeout = true,
    extra = true, tags = true, metadata = true }

-- Why plugin API version `api` is not one this host loads, or nil: the
-- message names the versions it does load.
local function bad_api(api)
    if type(api) ~= "number" then
        return ("missing api (the plugin API version: this weft loads %d to %d)"):format(M.API_MIN, M.API)
    end
    if api ~= math.floor(api) or api < M.API_MIN or api > M.API then
        return ("plugin API version %s is not supported: this weft loads plugin API %d to %d%s"):format(
            tostring(api), M.API_MIN, M.API,
            api > M.API and " (the plugin was written for a newer weft)"
            or api < M.API_MIN and " (the plugin was written for an older weft: update it)" or "")
    end
end

--- Check a loaded plugin table. Returns true, or nil and what is wrong.
---@param p any
---@param expect_kind? string
function M.validate(p, expect_kind)
    if type(p) ~= "table" then return nil, "the file must return a table, got " .. type(p) end
    local why = bad_api(p.api)
    if why then return nil, why end
    if type(p.name) ~= "string" or not p.name:match("^[%w_%-]+$") then
        return nil, "name must be a string of letters, digits, _ and -"
    end
    if not KINDS[p.kind] then return nil, "kind must be \"provider\" or \"policy\"" end
    if expect_kind and p.kind ~= expect_kind then
        return nil, ("kind is %s, expected %s"):format(p.kind, expect_kind)
    end
    if p.schema ~= nil then
        if type(p.schema) ~= "table" then return nil, "schema must be a table" end
        for k, s in pairs(p.schema) do
            if type(k) ~= "string" or type(s) ~= "table" or not schema_type(s.type) then
                return nil, ("schema.%s must be {type = string|number|boolean|table|function, default = ...}"):format(
                    tostring(k))
            end
            if s.default ~= nil and not typed(s.default, s.type) then
                return nil, ("schema.%s: default is a %s, not a %s"):format(k, type(s.default), s.type)
            end
            if p.api >= 2 then
                for f in pairs(s) do
                    if not SCHEMA_FIELD_KEYS[f] then
                        return nil, ("schema.%s: unknown field '%s' (type, default, required, description, validate)"):format(
                            k, tostring(f))
                    end
                end
                if s.description ~= nil and type(s.description) ~= "string" then
                    return nil, ("schema.%s: description must be a string"):format(k)
                end
                if s.validate ~= nil and type(s.validate) ~= "function" then
                    return nil, ("schema.%s: validate must be a function(value, cfg) returning true, or nil and why"):format(k)
                end
            end
        end
    end
    if p.kind == "policy" then
        if type(p.run) ~= "function" then return nil, "a policy must have function run(req, targets, api, cfg, state)" end
        if p.check ~= nil and type(p.check) ~= "function" then return nil, "check must be a function" end
        if p.first ~= nil and type(p.first) ~= "function" then return nil, "first must be a function" end
        for k in pairs(p.schema or {}) do
            if POLICY_HOST_KEYS[k] then
                return nil, ("schema.%s: a policy option may not be named like a key of the host's (%s)"):format(k, k)
            end
        end
    end
    if p.kind == "provider" then
        for _, fn in ipairs { "encode", "decode", "classify" } do
            if type(p[fn]) ~= "function" then return nil, "a provider must have function " .. fn end
        end
        if p.event ~= nil and type(p.event) ~= "function" then return nil, "event must be a function" end
        if p.rate_limits ~= nil and type(p.rate_limits) ~= "function" then return nil, "rate_limits must be a function" end
        if p.batch ~= nil then
            local b = p.batch
            if type(b) ~= "table" then return nil, "batch must be a table of functions (see plugins/README.md)" end
            for _, fn in ipairs { "line", "submit", "submitted", "poll", "status", "results", "result", "cancel" } do
                if type(b[fn]) ~= "function" then return nil, "batch." .. fn .. " must be a function" end
            end
            if b.discount ~= nil and not (type(b.discount) == "number" and b.discount > 0 and b.discount <= 1) then
                return nil, "batch.discount must be a number in (0, 1]: the batch price over the normal one"
            end
            if b.ops ~= nil and type(b.ops) ~= "table" then return nil, "batch.ops must be a table {complete = true, ...}" end
        end
        local caps = p.capabilities
        if caps ~= nil and type(caps) ~= "table" then return nil, "capabilities must be a table" end
        if caps and caps.stream and type(p.event) ~= "function" then
            return nil, "a provider that can stream must have function event"
        end
        for _, f in ipairs { "base_url", "secret" } do
            if p[f] ~= nil and p[f] ~= false and type(p[f]) ~= "string" then
                return nil, f .. " must be a string (or false)"
            end
        end
        if type(p.base_url) == "string" and not p.base_url:match("^https?://") then
            return nil, "base_url must start with http:// or https://"
        end
        if type(p.secret) == "string" and not p.secret:match("^env:[%w_]+$") then
            return nil, "secret must be an environment reference such as env:NAME (or false): other sources are the configuration's"
        end
        if p.auth ~= nil then
            local why = M.bad_auth(p.auth)
            if why then return nil, "auth" .. (why[1] and ("." .. why[1]) or "") .. ": " .. why[2] end
        end
        if p.prices ~= nil then
            if type(p.prices) ~= "table" then return nil, "prices must be a table" end
            for m, pr in pairs(p.prices) do
                if type(m) ~= "string" or type(pr) ~= "table" or type(pr.input) ~= "number" or type(pr.output) ~= "number"
                   or not (pr.input >= 0 and pr.input < 1e6) or not (pr.output >= 0 and pr.output < 1e6) then
                    return nil, "prices." .. tostring(m) .. " must be {input = USD per 1M tokens, output = ...}, finite numbers >= 0"
                end
            end
        end
    end
    return true
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("*a")
    f:close()
    return s
end

-- A plugin that `extends` another gets the functions and fields it does
-- not define from it (loaded in its own sandbox, uncounted).
local loading_deps -- files a load in progress inherited from

-- Run a plugin file's chunk: a fresh sandbox, the JIT off for every
-- function it defines (so the budget's count hook fires in them), under
-- the budget. Returns the host's view of what it returned: a plain copy
-- read with raw access (its functions are the plugin's; later writes of
-- the plugin to its own module table do not reach the host). Raises a
-- message on failure.
local function run_chunk(chunk, label)
    setfenv(chunk, sandbox(label))
    jit_off(chunk, true)
    local ok, v = budget_result(label, "", bcall(chunk))
    if not ok then error((v:gsub("^ failed: ", "")), 0) end
    if type(v) ~= "table" then return v end
    local view, err = M.plain(v, true)
    if view == nil then error("the table it returns is not plain data: " .. err, 0) end
    return view
end

M.run_chunk = run_chunk

-- A list (a merge replaces it whole), not a record (merged key by key).
local function is_list(t)
    local mt = raw_getmetatable(t)
    return rawget(t, 1) ~= nil or mt == json._ARRAY_MT or mt == json._EMPTY_MT
end

-- Plugin API 2's `extends`: what `over` (the plugin) does not say is the
-- parent's (`base`), record by record (like a JSON Merge Patch, RFC
-- 7396): where both have a record the two merge, recursively; any other
-- value of `over` replaces the parent's whole (lists, functions, strings,
-- false); weft.json.null removes the parent's. Both are the loader's own
-- plain copies; only `over`'s tables are written to. A table of `over`
-- met again (a plugin's tables keep their shape: one table may be reached
-- by many paths) is merged once: the walk is linear in the tables, never
-- in the paths, and ends on cycles.
local function merge(over, base, seen)
    seen = seen or {}
    if seen[over] then return over end
    seen[over] = true
    for k, bv in next, base do
        local ov = rawget(over, k)
        if ov == nil then
            rawset(over, k, bv)
        elseif ov == json.null then
            rawset(over, k, nil)
        elseif type(ov) == "table" and type(bv) == "table" and not is_list(ov) and not is_list(bv) then
            merge(ov, bv, seen)
        end
    end
    return over
end

local function inherit(p, kind, depth)
    if type(p) ~= "table" or p.extends == nil then return p end
    if type(p.extends) ~= "string" then error("extends must be the name of a plugin", 0) end
    if depth > 4 then error("extends: chain too long (a cycle?)", 0) end
    local path = M.find(p.kind or kind or "provider", p.extends)
    if not path then error("extends: no plugin '" .. p.extends .. "'", 0) end
    if loading_deps then loading_deps[#loading_deps + 1] = path end
    local chunk, err = loadfile(path)
    if not chunk then error("extends: " .. err, 0) end
    local ok, base = pcall(run_chunk, chunk, path:match("([^/]+)%.lua$") or path)
    if not ok then error("extends: " .. path .. ": " .. tostring(base), 0) end
    if type(base) ~= "table" then error("extends: " .. path .. " does not return a table", 0) end
    local why = bad_api(base.api)
    if why then error("extends: " .. path .. ": " .. why, 0) end
    base = inherit(base, kind, depth + 1)
    if p.api >= 2 then return merge(p, base) end
    -- plugin API 1: what the plugin does not define, field by field
    for k, v in pairs(base) do
        if p[k] == nil then p[k] = v end
    end
    return p
end

--- Load and validate a plugin file in a fresh sandbox. Returns the plugin
--- table, or nil and a message naming the file (and the line, for a syntax
--- error or an error while loading). A failure is logged, counted and
--- announced to "reload" hooks, unless `quiet`: the caller reports it
--- itself (weft check prints it as its finding, once).
---@param path string
---@param expect_kind? string
---@param check? fun(p: table): boolean?, string? a further check of the new plugin
---@param source? string the file's text, when the caller has read it
---@param deps? string[] gets the paths of the files it extends (parent first)
---@param quiet? boolean
---@return table? plugin
---@return string? err
function M.load_file(path, expect_kind, check, source, deps, quiet)
    local label = path:match("([^/]+)%.lua$") or path
    if expect_kind then label = expect_kind .. "/" .. label end
    local function failed(msg)
        if not quiet then calls.plugin_loaded(label, false, msg) end
        return nil, msg
    end
    local chunk, err
    if source then chunk, err = loadstring(source, "@" .. path) else chunk, err = loadfile(path) end
    if not chunk then return failed(err) end
    local ok, p = pcall(run_chunk, chunk, label)
    -- the API first: what the rest of the table means depends on it
    local why = ok and type(p) == "table" and bad_api(p.api)
    if why then return failed(("%s: %s"):format(path, why)) end
    if ok then
        loading_deps = deps
        ok, p = pcall(inherit, p, expect_kind, 0)
        loading_deps = nil
    end
    if not ok then return failed(("%s: error while loading: %s"):format(path, tostring(p))) end
    local valid
    valid, why = M.validate(p, expect_kind)
    if valid and check then valid, why = check(p) end
    if not valid then return failed(("%s: %s"):format(path, why)) end
    calls.plugin_loaded(p.kind .. "/" .. p.name, true)
    return p
end

--- The configuration of plugin `p` from `cfg`: defaults filled in, types
--- checked, unknown keys refused, then each key's `validate` (when its
--- schema field has one) run on its value. Errors name the plugin, the key
--- (and `where`).
---@param p table
---@param cfg? table
---@param where? string where the configuration came from ("config.lua:12")
---@return table
function M.configure(p, cfg, where)
    cfg = cfg or {}
    local prefix = (where and (where .. ": ") or "") .. p.kind .. " " .. p.name .. ": "
    if type(cfg) ~= "table" then error(prefix .. "configuration must be a table", 2) end
    local out = {}
    local schema = p.schema or {}
    for k, v in pairs(cfg) do
        local s = schema[k]
        if not s then error(prefix .. "unknown key '" .. tostring(k) .. "'", 2) end
        if not typed(v, s.type) then
            error(("%s%s must be a %s, got %s"):format(prefix, k, (s.type:gsub("|", " or ")), type(v)), 2)
        end
        out[k] = v
    end
    for k, s in pairs(schema) do
        if out[k] == nil then
            if s.default ~= nil then
                out[k] = type(s.default) == "table" and copy(s.default) or s.default
            elseif s.required then
                error(prefix .. "missing required key '" .. k .. "'", 2)
            end
        end
    end
    -- the schema's validators, in key order: plugin code, so under the
    -- budget and on copies (of the value and of the whole configuration)
    local keys = {}
    for k, s in pairs(schema) do
        if out[k] ~= nil and type(s.validate) == "function" then keys[#keys + 1] = k end
    end
    if keys[1] == nil then return out end
    table.sort(keys)
    local view, why = plain(out, true)
    if view == nil then error(prefix .. "the configuration is not plain data: " .. why, 2) end
    for _, k in ipairs(keys) do
        local v = view[k]
        if type(v) == "table" then v = plain(v, true) end
        local ok, res, msg = budget_result(tostring(p.name), "validate", bcall(schema[k].validate, v, plain(view, true)))
        if not ok then error(prefix .. k .. ": " .. res, 2) end
        if res == nil or res == false then
            error(prefix .. k .. ": " .. (type(msg) == "string" and msg or "refused by the plugin's validate"), 2)
        end
    end
    return out
end

------------------------------------------------------------ the registry

-- Loaded plugins by "kind/name": {kind=, name=, path=, plugin=, n=, source=,
-- failures=, checks={}, watch=}. `plugin` is swapped (one assignment) when
-- a new version has been loaded and validated; a call holds the table it
-- started with, so it finishes on that version.
local registry = {}
M.registry = registry

--- Watch plugin files for changes (ev_stat) and reload them (default on).
M.watching = true

--- A changed file is reloaded once it has stayed the same for this many
--- seconds: a file saved in place (`>` redirection, some editors) is seen
--- half written first, and those states are not versions.
M.settle = 0.1

local reload_entry

-- Watch `path` (the plugin's file, or one it extends) for entry `e`.
local function watch(e, path)
    if not M.watching or e.watches[path] then return end
    local ok, w = pcall(require("weft._watch").new, path, 1)
    if not ok then
        log.warn("plugin file not watched", { plugin = e.kind .. "/" .. e.name, error = tostring(w) })
        return
    end
    e.watches[path] = w
    local T = require "weft._task"
    T.spawn(function()
        while e.watches[path] == w do
            local changed = w:wait()
            if not changed then return end -- closed, or the process is ending
            -- wait until the file stops changing (at most 50 periods: a file
            -- rewritten for ever is loaded as it is then)
            local before = read_file(path)
            for _ = 1, 50 do
                local _, cancelled = T.sleep(M.settle)
                if cancelled then return end
                local now = read_file(path)
                if now == before then break end
                before = now
            end
            if e.watches[path] ~= w then return end
            reload_entry(e, true)
        end
    end)
end

-- What decides whether a reload changes anything: the file's text and the
-- texts of the files it extends.
local function fingerprint(src, deps)
    local parts = { src }
    for _, d in ipairs(deps) do parts[#parts + 1] = read_file(d) or "" end
    return table.concat(parts, "\0")
end

--- The registry entry of plugin `name` of `kind`, loading it on first use
--- (so a file dropped into a plugin directory is usable at once). Returns
--- the entry, or nil and why not.
---@param kind "provider"|"policy"
---@param name string
---@return table? entry
---@return string? err
function M.get(kind, name)
    local key = kind .. "/" .. name
    local e = registry[key]
    if e then return e end
    local path, looked = M.find(kind, name)
    if not path then return nil, ("no %s plugin '%s' (looked in %s)"):format(kind, name, looked) end
    local src, rerr = read_file(path)
    if not src then return nil, path .. ": " .. tostring(rerr) end
    local deps = {}
    local p, err = M.load_file(path, kind, nil, src, deps)
    if not p then return nil, err end
    if p.name ~= name then
        return nil, ("%s: declares name '%s', expected '%s'"):format(path, p.name, name)
    end
    e = { kind = kind, name = name, path = path, plugin = p, n = 1, source = fingerprint(src, deps), deps = deps,
          failures = 0, checks = {}, watches = {}, shipped = M.shipped(path) }
    registry[key] = e
    watch(e, path)
    for _, d in ipairs(deps) do watch(e, d) end
    return e
end

--- Add a check every new version of entry `e` must pass before it is
--- swapped in (the model layer checks that the configurations using it
--- still hold). `fn(plugin)` returns true or nil and a message.
function M.add_check(e, fn)
    e.checks[#e.checks + 1] = fn
end

-- Load the file of `e` again; swap it in when it is good and different.
-- A refused version is logged at warn (the loaded one keeps serving), once
-- per text of the file; `watched`: the watcher found the change.
reload_entry = function(e, watched)
    local label = e.kind .. "/" .. e.name
    local src, rerr = read_file(e.path)
    if not src then
        e.failures = e.failures + 1
        calls.plugin_loaded(label, false, e.path .. ": " .. tostring(rerr) .. " (the loaded version keeps serving)", "warn")
        return nil, rerr
    end
    local fp = fingerprint(src, e.deps)
    if fp == e.source then return false, "unchanged" end
    if watched and fp == e.refused then return nil, e.refused_why end -- said once already
    local deps = {}
    local p, err = M.load_file(e.path, e.kind, function(np)
        if np.name ~= e.name then return nil, ("declares name '%s', expected '%s'"):format(np.name, e.name) end
        for _, check in ipairs(e.checks) do
            local ok, why = check(np)
            if not ok then return nil, why end
        end
        return true
    end, src, deps, true)
    if not p then
        e.failures = e.failures + 1
        e.refused, e.refused_why = fp, err
        calls.plugin_loaded(label, false, tostring(err) .. " (the loaded version keeps serving)", "warn")
        return nil, err
    end
    e.refused = nil
    for _, d in ipairs(deps) do watch(e, d) end
    e.plugin, e.source, e.deps, e.n = p, fingerprint(src, deps), deps, e.n + 1
    log.info("plugin reloaded", { plugin = label, version = p.version, load = e.n })
    return true
end

--- Load plugin files again now: all loaded plugins, or those named `name`
--- ("openai" or "provider/openai"). Returns {[kind/name] = true | false
--- (unchanged) | error message}. A broken file never replaces the loaded
--- version.
---@param name? string
---@return table<string, boolean|string>
function M.reload(name)
    local out = {}
    for key, e in pairs(registry) do
        if name == nil or name == key or name == e.name then
            local ok, err = reload_entry(e)
            if ok == nil then out[key] = err else out[key] = ok end
        end
    end
    return out
end

--- Forget every loaded plugin (and stop watching): tests and `weft check`.
function M.reset()
    for key, e in pairs(registry) do
        local ws = e.watches
        e.watches = {}
        for _, w in pairs(ws) do w:close() end
        registry[key] = nil
    end
end

return M
