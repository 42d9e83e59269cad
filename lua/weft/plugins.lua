--- weft.plugins: finding, loading and validating plugins (provider
--- adapters and orchestration policies) in a sandbox.
---
--- A plugin is a Lua file returning a table:
---
--- ```lua
--- return {
---     api = 1,                      -- the plugin API version it was written for
---     name = "openai",              -- unique within its kind
---     kind = "provider",            -- "provider" or "policy"
---     version = "1.2.0",            -- optional, shown in logs and results
---     schema = {                    -- its configuration: key -> {type=, default=, required=}
---         base_url = { type = "string", default = "https://api.openai.com" },
---         timeout = { type = "number", default = 60 },
---     },
---     -- and its functions (a provider: encode, decode, classify, ...)
--- }
--- ```
---
--- The file runs in its own environment: the safe parts of the standard
--- library (string, table, math, os.time/clock/date, pairs, pcall, ...),
--- and `weft` limited to json, error and log. No io, os.execute, debug,
--- load/loadstring/dofile/require, no globals shared with the script or
--- other plugins. Loads are counted in weft_plugin_loads_total and
--- announced to "reload" hooks.
local calls = require "weft.calls"
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"

local type, pairs, ipairs, tostring, setmetatable, getmetatable, loadfile, setfenv, pcall, error =
    type, pairs, ipairs, tostring, setmetatable, getmetatable, loadfile, setfenv, pcall, error

local M = {}

--- The plugin API version this host implements, and the oldest it loads.
M.API = 1
M.API_MIN = 1

local KINDS = { provider = "providers", policy = "policies" }
local SCHEMA_TYPES = { string = true, number = true, boolean = true, table = true, ["function"] = true }

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

-- A fresh environment per load: copies, so one plugin cannot change what
-- another sees (string's metatable is shared by the VM and stays so).
local function sandbox()
    local env = {
        assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
        xpcall = xpcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
        unpack = unpack, rawequal = rawequal, rawget = rawget, rawset = rawset,
        setmetatable = setmetatable,
        -- the string metatable is the VM's, shared by everyone: not handed out
        getmetatable = function(v) if type(v) == "string" then return nil end return getmetatable(v) end,
        string = copy(string), table = copy(table), math = copy(math),
        os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
        weft = { json = copy(json), error = copy(errors), log = copy(log) },
    }
    env._G = env
    return env
end
M.sandbox = sandbox

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

--- Check a loaded plugin table. Returns true, or nil and what is wrong.
---@param p any
---@param expect_kind? string
function M.validate(p, expect_kind)
    if type(p) ~= "table" then return nil, "the file must return a table, got " .. type(p) end
    if type(p.api) ~= "number" then return nil, "missing api (the plugin API version, " .. M.API .. ")" end
    if p.api > M.API or p.api < M.API_MIN then
        return nil, ("plugin API version %s is not supported (this weft loads %d to %d)"):format(
            tostring(p.api), M.API_MIN, M.API)
    end
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
            if type(k) ~= "string" or type(s) ~= "table" or not SCHEMA_TYPES[s.type] then
                return nil, ("schema.%s must be {type = string|number|boolean|table|function, default = ...}"):format(
                    tostring(k))
            end
            if s.default ~= nil and type(s.default) ~= s.type then
                return nil, ("schema.%s: default is a %s, not a %s"):format(k, type(s.default), s.type)
            end
        end
    end
    if p.kind == "provider" then
        for _, fn in ipairs { "encode", "decode", "classify" } do
            if type(p[fn]) ~= "function" then return nil, "a provider must have function " .. fn end
        end
    end
    return true
end

--- Load and validate a plugin file in a fresh sandbox. Returns the plugin
--- table, or nil and a message naming the file (and the line, for a syntax
--- error or an error while loading).
---@param path string
---@param expect_kind? string
---@return table? plugin
---@return string? err
function M.load_file(path, expect_kind)
    local label = path:match("([^/]+)%.lua$") or path
    local chunk, err = loadfile(path)
    if not chunk then
        calls.plugin_loaded(label, false, err)
        return nil, err
    end
    setfenv(chunk, sandbox())
    local ok, p = pcall(chunk)
    if not ok then
        local msg = ("%s: error while loading: %s"):format(path, tostring(p))
        calls.plugin_loaded(label, false, msg)
        return nil, msg
    end
    local valid, why = M.validate(p, expect_kind)
    if not valid then
        local msg = ("%s: %s"):format(path, why)
        calls.plugin_loaded(label, false, msg)
        return nil, msg
    end
    calls.plugin_loaded(p.kind .. "/" .. p.name, true)
    return p
end

--- The configuration of plugin `p` from `cfg`: defaults filled in, types
--- checked, unknown keys refused. Errors name the key (and `where`).
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
        if type(v) ~= s.type then
            error(("%s%s must be a %s, got %s"):format(prefix, k, s.type, type(v)), 2)
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
    return out
end

return M
