--- weft._boundary: what the stages of the call pipeline (weft._pipeline,
--- weft._stream) share at the plugin boundary: calling the call's provider
--- plugin under its budget, reading what it returns as the host's own
--- plain, checked copy, redacting what it is handed, and the error values
--- that name the call's provider and model (or the plugin at fault).
---
--- Every function takes the call context `ctx` (see weft._pipeline) and
--- reads ctx.inst, ctx.model_name and ctx.plugin.
local plugins = require "weft.plugins"
local json = require "weft.json"
local errors = require "weft.error"
local redact = require("weft._secrets").redact

local type, ipairs, tostring, tonumber, error, pcall, next = type, ipairs, tostring, tonumber, error, pcall, next
local format = string.format
local plain = plugins.plain

local M = {}

--- The first `n` (200) bytes of `s` as text, redacted.
---@param s any
---@param n? integer
---@return string
local function excerpt(s, n)
    return redact(tostring(s or ""):sub(1, n or 200))
end

--- Raise an error value of the call's provider and model.
---@param ctx table
---@param kind string
---@param msg string
---@param fields? table
local function fail(ctx, kind, msg, fields)
    fields = fields or {}
    fields.provider, fields.model = ctx.inst.name, ctx.model_name
    error(errors.new(kind, msg, fields), 0)
end

--- "provider plugin NAME (VERSION)" of the call's plugin.
---@param ctx table
---@return string
local function plugin_name(ctx)
    local p = ctx.plugin
    return format("provider plugin %s (%s)", p.name, tostring(p.version or "?"))
end

--- A plugin broke the contract: raise an integration error naming it.
---@param ctx table
---@param what string
---@param fields? table
local function plugin_fail(ctx, what, fields)
    fail(ctx, "integration", excerpt(plugin_name(ctx) .. ": " .. what, 600), fields)
end

--- Call a plugin function under its budget (weft.plugins.call): its
--- failure, whatever it raised, is an integration error naming it.
---@param ctx table
---@param fname string
local function plugin_call(ctx, fname, ...)
    local ok, a, b = plugins.call(ctx.plugin, fname, ...)
    if not ok then fail(ctx, "integration", excerpt(a, 600)) end
    return a, b
end

--- What a plugin function returned, as the host's own plain copy (raw
--- reads: no metamethod of the plugin runs), or an integration error.
---@param ctx table
---@param fname string
---@param v any
local function plain_result(ctx, fname, v)
    if v == nil then return nil end
    local c, why = plain(v)
    if c == nil then plugin_fail(ctx, fname .. " returned something that is not plain data: " .. why) end
    return c
end

--- A seconds value from a plugin the host can act on, else nil (numbers
--- and numeric strings only: nothing of the plugin runs to convert it).
---@param v any
---@param max number
---@return number?
local function seconds(v, max)
    local tv = type(v)
    if tv == "string" then v = tonumber(v) elseif tv ~= "number" then return nil end
    if v and v >= 0 and v <= max then return v end
end

--- Redaction happens on bytes; a JSON text may also spell a secret with
--- \u escapes, which only shows once decoded. Strings of a decoded value
--- (the host's own table) are redacted in place; true when one changed.
---@param v table
---@param depth integer 0 at the top
---@return boolean
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

--- A JSON text for a plugin: redacted as bytes (done already) and, when it
--- holds \u escapes, as decoded strings too (then written again).
---@param s any
---@return any
local function redact_json_text(s)
    if type(s) ~= "string" or not s:find("\\u", 1, true) then return s end
    local ok, d = pcall(json.decode, s)
    if ok and type(d) == "table" and redact_decoded(d, 0) then return json.encode(d) end
    return s
end

--- Tool calls as the host hands them on: {id?, name, arguments} strings.
---@param ctx table
---@param fname string the plugin function they came from
---@param list any
---@return {id?: string, name?: string, arguments: string}[]?
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

M.excerpt, M.fail, M.plugin_name, M.plugin_fail, M.plugin_call, M.plain_result = excerpt, fail, plugin_name,
    plugin_fail, plugin_call, plain_result
M.seconds, M.redact_decoded, M.redact_json_text, M.tool_calls_of = seconds, redact_decoded, redact_json_text,
    tool_calls_of

return M
