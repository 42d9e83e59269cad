--- weft.mock.cli: `weft mock [--host H] [--port N|0] [--profile FILE.lua] [--key KEY]
--- [--strict-models] [--batch-delay S] [--batch-window S] [--max-connections N]`.
---
--- Prints the mock's URL as the first line on stdout, then serves until
--- SIGINT/SIGTERM. A profile is a Lua file returning the options of
--- weft.mock.start (keys, limits, faults, context, strict_models, models,
--- seed, ...); flags override it. --key sets the expected key of all
--- three dialects. A bad argument or profile is reported as one line,
--- `weft mock: <what is wrong>`, with exit status 2 (no traceback).
local mock = require "weft.mock"

local M = {}

local format = string.format
local redact = require("weft._secrets").redact

local K = mock.DEFAULT_KEYS
local USAGE = [[
usage: weft mock [--host HOST] [--port N] [--profile FILE.lua] [--key KEY] [--strict-models]
                 [--batch-delay S] [--batch-window S] [--max-connections N]
  --host HOST        address to bind (default 127.0.0.1)
  --port N           port (default 0: pick a free one); the URL is printed first
  --profile FILE     Lua file returning weft.mock.start options (see "Profile" below)
  --key KEY          expected API key of all three dialects, instead of the default keys below
  --strict-models    answer a model name the mock does not know with the dialect's real 404
                     (OpenAI model_not_found, Anthropic not_found_error, Gemini NOT_FOUND)
  --batch-delay S    seconds a batch job (OpenAI Batches, Anthropic Message Batches) takes to
                     process all its requests (default 2: hours compressed)
  --batch-window S   seconds after which an unfinished batch job expires (default 60: "24h")
  --max-connections N
                     connections open at once, all of which may come from one address
                     (default 10000, a quarter of them at most from one address); raise it
                     to hold more calls open from one client, e.g. with the "hang" fault

Default keys (what a client must send unless --key or the profile's keys say otherwise):
  openai     Authorization: Bearer ]] .. K.openai .. [[

  anthropic  x-api-key: ]] .. K.anthropic .. [[ (or Authorization: Bearer), and an anthropic-version header
  gemini     x-goog-api-key: ]] .. K.gemini .. [[ (or ?key=)

Tool calls: a chat with tools ending in a user message gets a call, arguments {"text": <message>},
when tool_choice asks for one or the message starts with "call " ("call NAME" picks tool NAME).

Profile: a Lua file returning a table; every key is optional, an unknown one is an error.
  keys = { openai = "...", anthropic = "...", gemini = "..." }    expected keys
  limits = { rps =, rpm =, rpd =, tpm =, quota =, window = "bucket"|"fixed" }    per key and dialect
  faults = { rule, ... }             fault rules (below)
  context = { [model] = max_input_tokens }    a longer prompt gets the dialect's context-length 400
  strict_models = true               as --strict-models; models = { "my-model" } adds known names
  seed = 1                           seed of the fault and latency draws (same seed, same faults)
  max_log = 1000                     request log entries kept
  max_connections = 10000            as --max-connections
  batch = { delay =, window =, finalize =, cancel_delay = }    batch timing in seconds

Fault rules: the first rule whose dialect, model and endpoint (each optional) match a request
decides its fault. Keys:
  dialect = "openai"                 or "anthropic", "gemini"
  model = "gpt-4o"                   the request's model
  endpoint = "chat"                  openai: chat, embeddings, models, model, batch_item, ...;
                                     anthropic: messages, count_tokens, batch_item, ...;
                                     gemini: generateContent, streamGenerateContent, embedContent, ...
  sequence = { 429, 500, "ok" }      one fault per request in order; "ok" once used up
  probability = { [503] = 0.2, reset = 0.1 }    a fault drawn per request (chances add up to <= 1;
                                     the rest is "ok")
  latency = 250                      ms before answering; or { min = 100, max = 900 }
                                     or { median = 300, tail = 1.5, cap = 5000 } (heavy tail)
  retry_after = 2                    seconds in an injected 429's Retry-After (default 1)
  stream_delay_ms = 50               ms between stream events
  bytes = 1048576                    size of an "oversized" answer (default 80 MiB)
A fault is an HTTP status 400..599 (with the dialect's error body) or one of "ok", "reset"
(connection closed, no answer), "reset_mid_body", "hang", "truncate", "malformed" (invalid JSON
with a 200), "oversized", "mid_stream_error".
Examples:
  return { faults = { { dialect = "openai", probability = { [503] = 1.0 } } } }
  return { faults = { { model = "gpt-4o", sequence = { 429, 429, "ok" }, retry_after = 2 },
                      { dialect = "anthropic", latency = { min = 200, max = 800 } } } }
  curl -X POST $URL/_mock/faults -d '[{"dialect": "gemini", "probability": {"503": 0.3}}]'

Admin: POST /_mock/faults (JSON list of rules; 400 {"error": ...} when one is wrong),
GET /_mock/stats, GET /_mock/requests, POST /_mock/reset,
POST /_mock/batch (JSON {delay, window, finalize, cancel_delay}: batch timing)
Stats include closed_early (and closed_early_by_model): requests whose client went away
before the answer was complete (gave up during a latency fault or a stream)
]]

-- Report a usage or profile error: one line on stderr (redacted), the
-- exit status 2.
local function refuse(msg)
    io.stderr:write("weft mock: ", redact(tostring(msg)), "\n")
    return 2
end

-- The options of a profile file, or nil and what is wrong. The messages
-- name the profile's own file and line (the user's), nothing of weft.
local function load_profile(path)
    local chunk, err = loadfile(path)
    if not chunk then return nil, "cannot load profile: " .. tostring(err) end
    local ok, p = pcall(chunk)
    if not ok then
        local e = type(p) == "table" and p.message or p
        return nil, "profile " .. path .. " failed: " .. tostring(e)
    end
    if type(p) ~= "table" then
        return nil, format("profile %s must return a table of options, got %s", path, type(p))
    end
    return p
end

--- Run `weft mock` with its command-line arguments. Returns the exit
--- status for a usage error (2) or a server that cannot start (1);
--- serves until a signal otherwise.
---@param ... string
---@return integer?
function M.main(...)
    local args = { ... }
    local opts = {}
    local i = 1
    -- Usage errors return 2 (the exit status of `weft mock`) rather than
    -- calling os.exit, which would skip the host's clean shutdown.
    local function value(flag)
        i = i + 1
        return args[i]
    end
    local host, port, key, profile, strict, max_conns
    local batch = {}
    while i <= #args do
        local a = args[i]
        local takes = a == "--host" or a == "--port" or a == "--profile" or a == "--key" or a == "--batch-delay"
            or a == "--batch-window" or a == "--max-connections"
        local v = takes and value(a)
        if takes and (v == nil or v == "") then
            io.stderr:write("weft mock: ", a, " needs a value\n", USAGE)
            return 2
        end
        if a == "--host" then host = v
        elseif a == "--port" then
            port = tonumber(v)
            if not port or port < 0 or port > 65535 or port ~= math.floor(port) then
                io.stderr:write("weft mock: --port must be an integer from 0 to 65535\n")
                return 2
            end
        elseif a == "--profile" then profile = v
        elseif a == "--key" then key = v
        elseif a == "--batch-delay" or a == "--batch-window" then
            local s = tonumber(v)
            if not s or s < 0 or s ~= s or s == math.huge then
                io.stderr:write("weft mock: ", a, " must be a number of seconds >= 0\n")
                return 2
            end
            batch[a == "--batch-delay" and "delay" or "window"] = s
        elseif a == "--max-connections" then
            local most = mock.options.MAX_CONNECTIONS
            max_conns = tonumber(v)
            if not max_conns or max_conns < 1 or max_conns > most or max_conns ~= math.floor(max_conns) then
                io.stderr:write(format("weft mock: --max-connections must be an integer from 1 to %d\n", most))
                return 2
            end
        elseif a == "--strict-models" then strict = true
        elseif a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0
        else
            io.stderr:write("weft mock: unknown argument '", tostring(a), "'\n", USAGE)
            return 2
        end
        i = i + 1
    end
    if profile then
        local p, why = load_profile(profile)
        if not p then return refuse(why) end
        opts = p
    end
    opts.host = host or opts.host
    opts.port = port or opts.port or 0
    if key then opts.keys = { openai = key, anthropic = key, gemini = key } end
    if strict then opts.strict_models = true end
    opts.max_connections = max_conns or opts.max_connections
    if next(batch) then
        opts.batch = opts.batch or {}
        if type(opts.batch) == "table" then -- (else the check below says what is wrong)
            for k, v in pairs(batch) do opts.batch[k] = v end
        end
    end
    local _, why = mock.options.check(opts)
    if why then return refuse(profile and ("profile " .. profile .. ": " .. why) or why) end
    local ok, m = pcall(mock.start, opts)
    if not ok then -- checked options: the address (in use, unknown host)
        local e = type(m) == "table" and tostring(m.message) or tostring(m):gsub("^.-:%d+: ", "")
        io.stderr:write("weft mock: ", redact(e), "\n")
        return 1
    end
    io.stdout:write(m.url, "\n")
    io.stdout:flush()
    weft.log.info("weft mock listening", { url = m.url })
end

return M
