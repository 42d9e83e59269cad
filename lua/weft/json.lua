--- weft.json: JSON with deliberate choices.
---
--- Decoding is weft's own C decoder (runtime/lua_json.c); encoding too
--- (runtime/lua_json.c for the compact form, this file for pretty/sorted
--- output and for the error messages): upstream lua-cjson 2.1.0 (Debian's)
--- cannot keep an empty array apart from an empty object, escapes "/" as
--- "\/", keeps only 14 significant digits, and its decoder needs a second
--- pass to find empty containers. `json.null` is still `cjson.null`, and
--- scripts can `require "cjson"`. The choices:
---
--- * null: JSON `null` decodes to `json.null` (a sentinel, the same value as
---   `cjson.null`), so object keys and array positions are never lost;
---   `json.null` encodes as `null`. Lua `nil` cannot sit inside an array:
---   a hole is an encode error, not a silent `null`.
--- * empty array vs empty object: `decode` marks the empty arrays and
---   objects it produces, so `encode(decode(s))` keeps `[]` and `{}` apart
---   (`{"tools":[]}` round-trips). Tables you build are classified by their
---   keys: 1..n without holes is an array, all-string keys is an object, an
---   unmarked empty table is an object `{}`. Use `json.array(t)` (or
---   `json.empty_array`) and `json.object(t)` to say which explicitly.
---   Mixed integer and string keys, sparse arrays and other key types are
---   encode errors naming the path (`$.messages[2].content`).
--- * numbers: integers with |n| < 2^53 are written with all their digits;
---   other numbers with the shortest of %.14g/%.17g that reads back exactly.
---   NaN and infinities are encode errors; `decode` rejects NaN/Infinity
---   literals. Integers beyond 2^53 lose precision on decode (they are Lua
---   numbers, i.e. doubles): carry such ids as strings.
--- * decode is strict JSON (no comments, trailing commas, leading zeros,
---   hex, NaN or Infinity; \u escapes with valid surrogate pairs), but
---   takes raw control characters inside strings as lua-cjson did. When a
---   key repeats, the last one wins.
--- * strings are bytes: `"`, `\` and control characters are escaped, `/` is
---   not, and non-ASCII bytes are copied as they are (no UTF-8 validation).
--- * cycles, nesting deeper than 1000, and functions, userdata or threads
---   are encode errors.
local cjson = require "cjson"

local type, pairs, next, error, tostring, tonumber = type, pairs, next, error, tostring, tonumber
-- The marks' metatables are protected (__metatable): getmetatable on a
-- marked table gives their name, and they cannot be read or replaced from
-- a plugin's sandbox. This module reads and sets them raw.
local getmetatable, raw_setmetatable = debug.getmetatable, debug.setmetatable
local function setmetatable(t, mt)
    raw_setmetatable(t, mt) -- returns true, not t
    return t
end
local rawget, pcall, select = rawget, pcall, select
local concat, sort = table.concat, table.sort
local find, gsub, format, sub, byte, rep = string.find, string.gsub, string.format, string.sub,
    string.byte, string.rep
local floor, huge = math.floor, math.huge

local MAX_DEPTH = 1000
local INT_LIMIT = 2 ^ 53


local M = {}

--- The JSON null sentinel (equal to cjson.null).
M.null = cjson.null

local ARRAY_MT = { __name = "weft.json.array", __metatable = "weft.json.array" }
local OBJECT_MT = { __name = "weft.json.object", __metatable = "weft.json.object" }
local EMPTY_MT = {
    __name = "weft.json.empty_array", __metatable = "weft.json.empty_array",
    __newindex = function() error("json.empty_array is read-only; use json.array()", 2) end,
}

--- Mark `t` (or a new table) as a JSON array; returns it.
---@param t? table
---@return table
function M.array(t)
    if t == nil then return setmetatable({}, ARRAY_MT) end
    if type(t) ~= "table" then error("json.array: expected a table, got " .. type(t), 2) end
    local mt = getmetatable(t)
    if mt ~= nil and mt ~= ARRAY_MT and mt ~= OBJECT_MT then
        error("json.array: the table already has a metatable", 2)
    end
    return setmetatable(t, ARRAY_MT)
end

--- Mark `t` (or a new table) as a JSON object; returns it.
---@param t? table
---@return table
function M.object(t)
    if t == nil then return setmetatable({}, OBJECT_MT) end
    if type(t) ~= "table" then error("json.object: expected a table, got " .. type(t), 2) end
    local mt = getmetatable(t)
    if mt ~= nil and mt ~= ARRAY_MT and mt ~= OBJECT_MT then
        error("json.object: the table already has a metatable", 2)
    end
    return setmetatable(t, OBJECT_MT)
end

--- A shared, read-only empty array.
M.empty_array = setmetatable({}, EMPTY_MT)

-- For the plugin sandbox (weft.plugins): its own read-only empty array,
-- and the marks, to keep them on plain copies of plugin data.
function M._new_empty_array() return setmetatable({}, EMPTY_MT) end
M._ARRAY_MT, M._OBJECT_MT, M._EMPTY_MT = ARRAY_MT, OBJECT_MT, EMPTY_MT

local cencode = require("weft._json").encoder(ARRAY_MT, OBJECT_MT, EMPTY_MT, M.null)

--- True when `t` is marked as an array (by json.array or decode).
---@return boolean
function M.is_array(t)
    local mt = getmetatable(t)
    return mt == ARRAY_MT or mt == EMPTY_MT
end

----------------------------------------------------------------- encoding

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\127"] = "\\u007f" }
for i = 0, 31 do
    local c = string.char(i)
    if not ESC[c] then ESC[c] = format("\\u%04x", i) end
end

local function quote(s)
    if find(s, '[%c"\\]') then s = gsub(s, '[%c"\\]', ESC) end
    return '"' .. s .. '"'
end

-- Object keys repeat from one document to the next ("model", "content"):
-- their quoted form is cached (bounded; cleared when full).
local key_cache, key_cache_n = {}, 0
local function quote_key(k)
    local q = key_cache[k]
    if q then return q end
    q = quote(k)
    if key_cache_n >= 4096 then key_cache, key_cache_n = {}, 0 end
    key_cache[k] = q
    key_cache_n = key_cache_n + 1
    return q
end

local function path_of(stack, depth, last)
    local parts = { "$" }
    for i = 2, depth do -- stack[1] is the root's (absent) key
        local k = stack[i]
        parts[#parts + 1] = type(k) == "number" and ("[" .. k .. "]") or ("." .. tostring(k))
    end
    if last ~= nil then
        parts[#parts + 1] = type(last) == "number" and ("[" .. last .. "]") or ("." .. tostring(last))
    end
    return concat(parts)
end

local function number_text(v, stack, depth, key)
    if v ~= v or v == huge or v == -huge then
        error(format("json.encode: cannot encode %s at %s", tostring(v), path_of(stack, depth, key)), 0)
    end
    if v == floor(v) and v > -INT_LIMIT and v < INT_LIMIT then
        return format("%d", v)
    end
    for digits = 14, 16 do
        local s = format("%." .. digits .. "g", v)
        if tonumber(s) == v then return s end
    end
    return format("%.17g", v)
end

local encode_value

-- Encoder state passed down the recursion: buf, n (in st.n), stack, seen.
local function encode_table(t, st, depth, key)
    if depth >= MAX_DEPTH then
        error("json.encode: nesting deeper than " .. MAX_DEPTH .. " at " .. path_of(st.stack, depth - 1, key), 0)
    end
    if st.seen[t] then
        error("json.encode: cycle at " .. path_of(st.stack, depth - 1, key), 0)
    end
    st.seen[t] = true
    local stack, buf = st.stack, st.buf
    stack[depth] = key
    local mt = getmetatable(t)
    local n = #t
    local is_array
    if mt == ARRAY_MT or mt == EMPTY_MT then
        is_array = true
    elseif mt == OBJECT_MT then
        is_array = false
    elseif n > 0 then
        is_array = true
    else
        is_array = false
    end
    local pretty = st.indent
    local nl, ind, ind_in
    if pretty then
        ind = rep(pretty, depth - 1)
        ind_in = ind .. pretty
        nl = "\n"
    end

    if is_array then
        -- Every key must be 1..n with no hole.
        local count = 0
        for k in pairs(t) do
            if type(k) == "number" and k > n and k == floor(k) then
                error("json.encode: sparse array (holes) at " .. path_of(stack, depth), 0)
            end
            if type(k) ~= "number" or k < 1 or k ~= floor(k) then
                error(format("json.encode: %s key %s in an array at %s",
                    type(k) == "string" and "mixed integer and string keys:" or "invalid",
                    quote(tostring(k)), path_of(stack, depth)), 0)
            end
            count = count + 1
        end
        if count ~= n then
            error("json.encode: sparse array (holes) at " .. path_of(stack, depth), 0)
        end
        if n == 0 then
            st.n = st.n + 1
            buf[st.n] = "[]"
        else
            st.n = st.n + 1
            buf[st.n] = "["
            for i = 1, n do
                if i > 1 then st.n = st.n + 1; buf[st.n] = "," end
                if pretty then st.n = st.n + 1; buf[st.n] = nl .. ind_in end
                encode_value(t[i], st, depth, i)
            end
            if pretty then st.n = st.n + 1; buf[st.n] = nl .. ind end
            st.n = st.n + 1
            buf[st.n] = "]"
        end
    else
        local keys, nk = nil, 0
        for k in pairs(t) do
            if type(k) ~= "string" then
                error(format("json.encode: %s key %s in an object at %s",
                    type(k) == "number" and "mixed integer and string keys:" or "non-string",
                    tostring(k), path_of(stack, depth)), 0)
            end
            nk = nk + 1
            if st.sort then
                keys = keys or {}
                keys[nk] = k
            end
        end
        if nk == 0 then
            st.n = st.n + 1
            buf[st.n] = "{}"
        else
            st.n = st.n + 1
            buf[st.n] = "{"
            local sep = pretty and ": " or ":"
            local first = true
            if keys then
                sort(keys)
                for i = 1, nk do
                    local k = keys[i]
                    if not first then st.n = st.n + 1; buf[st.n] = "," end
                    first = false
                    st.n = st.n + 1
                    buf[st.n] = (pretty and (nl .. ind_in) or "") .. quote_key(k) .. sep
                    encode_value(t[k], st, depth, k)
                end
            else
                for k, v in pairs(t) do
                    if not first then st.n = st.n + 1; buf[st.n] = "," end
                    first = false
                    st.n = st.n + 1
                    if pretty then
                        buf[st.n] = nl .. ind_in .. quote_key(k) .. sep
                    else
                        buf[st.n] = quote_key(k) .. sep
                    end
                    encode_value(v, st, depth, k)
                end
            end
            if pretty then st.n = st.n + 1; buf[st.n] = nl .. ind end
            st.n = st.n + 1
            buf[st.n] = "}"
        end
    end
    st.seen[t] = nil
end

encode_value = function(v, st, depth, key)
    local tv = type(v)
    local buf = st.buf
    if tv == "string" then
        st.n = st.n + 1
        buf[st.n] = quote(v)
    elseif tv == "number" then
        st.n = st.n + 1
        buf[st.n] = number_text(v, st.stack, depth, key)
    elseif tv == "boolean" then
        st.n = st.n + 1
        buf[st.n] = v and "true" or "false"
    elseif tv == "table" then
        encode_table(v, st, depth + 1, key)
    elseif v == M.null or v == nil then
        st.n = st.n + 1
        buf[st.n] = "null"
    else
        error(format("json.encode: cannot encode a %s at %s", tv, path_of(st.stack, depth, key)), 0)
    end
end

---@class weft.json.EncodeOptions
---@field pretty? boolean indent with two spaces (implies sort_keys)
---@field sort_keys? boolean write object keys in sorted order (deterministic output)

--- Encode a Lua value as JSON text. Raises on values JSON cannot hold
--- (see the module's notes); the message names the path.
---@param v any
---@param opts? weft.json.EncodeOptions
---@return string
function M.encode(v, opts)
    if opts == nil then
        -- the C encoder (same rules); nil means it refused: the Lua one
        -- below raises the error that names the path
        local s = cencode(v)
        if s then return s end
    end
    local st = { buf = {}, n = 0, stack = {}, seen = {} }
    if opts ~= nil then
        if type(opts) ~= "table" then error("json.encode: options must be a table", 2) end
        if opts.pretty then
            st.indent = "  "
            st.sort = true
        end
        if opts.sort_keys then st.sort = true end
    end
    local ok, err = pcall(encode_value, v, st, 0, nil)
    if not ok then error(err, 2) end
    return concat(st.buf, "", 1, st.n)
end

----------------------------------------------------------------- decoding

-- runtime/lua_json.c: one pass, empty containers marked as they are met
local cdecode = require("weft._json").decoder(ARRAY_MT, OBJECT_MT)

--- Decode JSON text. Returns the value, or nil and a message saying where
--- the text is invalid. Empty arrays and objects come back marked (see
--- the module's notes); JSON null is `json.null`.
---@param s string
---@return any value
---@return string? err
function M.decode(s)
    if type(s) ~= "string" then
        error("json.decode: expected a string, got " .. type(s), 2)
    end
    local v, err = cdecode(s)
    if err then return nil, "invalid JSON: " .. err end
    return v
end

--- Shorthand for encode(v, {pretty = true}).
---@param v any
---@return string
function M.pretty(v)
    local ok, s = pcall(M.encode, v, { pretty = true })
    if not ok then error(s, 2) end
    return s
end

return M
