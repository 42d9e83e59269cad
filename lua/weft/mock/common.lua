--- weft.mock.common: what the mock's dialects share: the tokenizer, the
--- deterministic answers and tool calls, embeddings, header value formats,
--- SSE output.
local ffi = require "ffi"
local json = require "weft.json"

local type, ipairs = type, ipairs
local floor, min = math.floor, math.min
local format, gmatch, concat = string.format, string.gmatch, table.concat

local M = {}

--- Count tokens the mock's way: every maximal run of letters/digits is one
--- token, every other non-space byte is one token.
---@param text string
---@return integer
function M.count_tokens(text)
    local n = 0
    for _ in gmatch(text, "%w+") do n = n + 1 end
    for _ in gmatch(text, "[^%w%s]") do n = n + 1 end
    return n
end

--- Split text into its tokens, each with the whitespace before it, so that
--- concatenating the pieces gives the text back.
---@param text string
---@return string[]
function M.pieces(text)
    local out = {}
    local pos, len = 1, #text
    while pos <= len do
        local s, e = text:find("^%s*%w+", pos)
        if not s then s, e = text:find("^%s*[^%w%s]", pos) end
        if not s then -- trailing whitespace joins the last piece
            if #out > 0 then out[#out] = out[#out] .. text:sub(pos) else out[1] = text:sub(pos) end
            break
        end
        out[#out + 1] = text:sub(s, e)
        pos = e + 1
    end
    return out
end

--- The reply to `prompt`: "echo: " .. prompt, cut to `max_tokens` tokens.
--- Returns text, output tokens, cut (boolean), pieces.
function M.answer(prompt, max_tokens)
    local full = "echo: " .. prompt
    local pieces = M.pieces(full)
    if max_tokens and max_tokens >= 0 and #pieces > max_tokens then
        local cut = {}
        for i = 1, max_tokens do cut[i] = pieces[i] end
        return concat(cut), max_tokens, true, cut
    end
    return full, #pieces, false, pieces
end

--- The tool a chat request gets a call of instead of a text answer, or nil
--- (the dialects decide first that the last message is the user's and that
--- tool_choice does not say "none"). `names`: the request's tool names in
--- order; `forced`: the name its tool_choice names, true when it asks for
--- some tool (OpenAI "required", Anthropic {type = "any"}), nil otherwise;
--- `prompt`: the last user message's text. A named tool is called as it
--- is; else, when a tool is asked for or the prompt starts with "call ",
--- the tool named by the word after "call " if the request has it, else
--- its first tool.
---@param names string[]
---@param forced string|boolean|nil
---@param prompt string
---@return string?
function M.tool_to_call(names, forced, prompt)
    if #names == 0 then return nil end
    if type(forced) == "string" then return forced end
    if not forced and prompt:sub(1, 5) ~= "call " then return nil end
    local asked = prompt:match("^call%s+([%w_%-]+)")
    for _, n in ipairs(names) do
        if n == asked then return n end
    end
    return names[1]
end

--- The arguments of the mock's tool call for `prompt`: the JSON text
--- `{"text": prompt}`. Returns it, the output tokens of the call (those
--- of the tool's name and of the arguments) and the arguments' pieces
--- (what a stream sends, one piece an event).
---@param name string
---@param prompt string
---@return string arguments
---@return integer output_tokens
---@return string[] pieces
function M.tool_arguments(name, prompt)
    local args = json.encode { text = prompt }
    local pieces = M.pieces(args)
    return args, M.count_tokens(name) + #pieces, pieces
end

--- A deterministic unit vector for `text` (dimension `dim`, default 8),
--- rounded to 6 decimals.
function M.embedding(text, dim, words)
    dim = dim or 8
    if words then return M.words_embedding(text, dim) end
    -- FNV-style hash mod 2^32, exact in doubles: h * 16777619 would need 56
    -- bits (1-byte texts collided), so multiply by 2^24 + 403 in two parts.
    local h = 2166136261
    for i = 1, #text do h = ((h % 256) * 16777216 + h * 403 + text:byte(i)) % 4294967296 end
    local v, norm = {}, 0
    for i = 1, dim do
        h = (h * 1103515245 + 12345) % 2147483648
        local x = (h / 2147483648) * 2 - 1
        v[i] = x
        norm = norm + x * x
    end
    norm = math.sqrt(norm)
    for i = 1, dim do v[i] = floor(v[i] / norm * 1e6 + 0.5) / 1e6 end
    return v
end

--- A bag-of-words unit vector (dimension `dim`): every lowercase word adds
--- one to a bucket chosen by its hash, so texts that share words are close
--- (the embedding model "mock-words-embedding" answers with it: what a
--- semantic cache needs to be tested against).
function M.words_embedding(text, dim)
    local v = {}
    for i = 1, dim do v[i] = 0 end
    for w in tostring(text):lower():gmatch("[%w]+") do
        local h = 2166136261
        for i = 1, #w do h = (h * 16777619 + w:byte(i)) % 4294967296 end
        local b = h % dim + 1
        v[b] = v[b] + 1
    end
    local norm = 0
    for i = 1, dim do norm = norm + v[i] * v[i] end
    norm = math.sqrt(norm)
    if norm == 0 then norm = 1 end
    for i = 1, dim do v[i] = floor(v[i] / norm * 1e6 + 0.5) / 1e6 end
    return v
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- Standard base64 of a byte string.
function M.base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local c1, c2 = floor(n / 262144) % 64, floor(n / 4096) % 64
        local c3, c4 = floor(n / 64) % 64, n % 64
        out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1) ..
            (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
    end
    return concat(out)
end

--- Base64 of the vector as little-endian float32 (OpenAI's
--- encoding_format "base64"; x86 is little-endian).
function M.float32_base64(v)
    local buf = ffi.new("float[?]", #v)
    for i = 1, #v do buf[i - 1] = v[i] end
    return M.base64(ffi.string(buf, 4 * #v))
end

--- Seconds until a limit of the mock (see weft.mock: `limit`, `period`,
--- `level` at time `t`; `fixed` with the window's `start`) is whole again:
--- a token bucket refilled, or the end of a fixed window something was
--- used in. The x-ratelimit-reset-* headers report it.
function M.reset_in(b)
    if b.level >= b.limit then return 0 end
    if b.fixed then return b.start + b.period - b.t end
    return (b.limit - b.level) / (b.limit / b.period)
end

--- A Go time.Duration string, as OpenAI's reset headers use: "12ms",
--- "1.5s", "6m0s", "1h2m3s".
function M.go_duration(seconds)
    if seconds < 0 then seconds = 0 end
    if seconds < 1 then
        local ms = floor(seconds * 1000 + 0.5)
        return ms .. "ms"
    end
    local h = floor(seconds / 3600)
    local m = floor((seconds % 3600) / 60)
    local s = seconds - h * 3600 - m * 60
    local ss = format("%.3f", s):gsub("%.?0+$", "")
    if ss == "" then ss = "0" end
    if h > 0 then return format("%dh%dm%ss", h, m, ss) end
    if m > 0 then return format("%dm%ss", m, ss) end
    return ss .. "s"
end

--- An RFC 3339 UTC timestamp for wall time `t` (seconds since the epoch).
function M.rfc3339(t)
    return os.date("!%Y-%m-%dT%H:%M:%SZ", floor(t))
end

local seq = 0
--- A new id with a prefix ("chatcmpl-", "msg_", ...).
function M.id(prefix)
    seq = seq + 1
    return format("%s%08x%06x", prefix, floor(weft.time()) % 4294967296, seq % 16777216)
end

--- Write SSE events with `delay` seconds between them. `events` are raw
--- event texts (already framed). Returns false when the client left.
function M.write_events(res, events, delay)
    for i = 1, #events do
        if delay and delay > 0 and i > 1 then weft.sleep(delay) end
        if not res:write(events[i]) then return false end
    end
    return true
end

return M
