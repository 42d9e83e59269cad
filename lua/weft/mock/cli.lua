--- weft.mock.cli: `weft mock [--host H] [--port N|0] [--profile FILE.lua] [--key KEY]
--- [--batch-delay S] [--batch-window S]`.
---
--- Prints the mock's URL as the first line on stdout, then serves until
--- SIGINT/SIGTERM. A profile is a Lua file returning the options of
--- weft.mock.start (keys, limits, faults, context, seed); flags override
--- it. --key sets the expected key of all three dialects.
local mock = require "weft.mock"

local M = {}

local USAGE = [[
usage: weft mock [--host HOST] [--port N] [--profile FILE.lua] [--key KEY]
  --host HOST        address to bind (default 127.0.0.1)
  --port N           port (default 0: pick a free one); the URL is printed first
  --profile FILE     Lua file returning weft.mock.start options (keys, limits, faults, seed,
                     context = { [model] = max_input_tokens }: a longer prompt gets the
                     dialect's context-length 400)
  --key KEY          expected API key for the OpenAI, Anthropic and Gemini dialects
  --batch-delay S    seconds a batch job (OpenAI Batches, Anthropic Message Batches) takes to
                     process all its requests (default 2: hours compressed)
  --batch-window S   seconds after which an unfinished batch job expires (default 60: "24h")
Admin: POST /_mock/faults (JSON list of rules), GET /_mock/stats, GET /_mock/requests, POST /_mock/reset,
POST /_mock/batch (JSON {delay, window, finalize, cancel_delay}: batch timing)
Stats include closed_early (and closed_early_by_model): requests whose client went away
before the answer was complete (gave up during a latency fault or a stream)
]]

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
    local host, port, key, profile
    local batch = {}
    while i <= #args do
        local a = args[i]
        local takes = a == "--host" or a == "--port" or a == "--profile" or a == "--key" or a == "--batch-delay"
            or a == "--batch-window"
        local v = takes and value(a)
        if takes and v == nil then
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
        elseif a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0
        else
            io.stderr:write("weft mock: unknown argument '", tostring(a), "'\n", USAGE)
            return 2
        end
        i = i + 1
    end
    if profile then
        local chunk, err = loadfile(profile)
        if not chunk then error("weft mock: cannot load profile: " .. err, 0) end
        local ok, p = pcall(chunk)
        if not ok then error("weft mock: profile failed: " .. tostring(p), 0) end
        if type(p) ~= "table" then error("weft mock: the profile must return a table of options", 0) end
        opts = p
    end
    opts.host = host or opts.host
    opts.port = port or opts.port or 0
    if key then opts.keys = { openai = key, anthropic = key, gemini = key } end
    if next(batch) then
        opts.batch = opts.batch or {}
        for k, v in pairs(batch) do opts.batch[k] = v end
    end
    local m = mock.start(opts)
    io.stdout:write(m.url, "\n")
    io.stdout:flush()
    weft.log.info("weft mock listening", { url = m.url })
end

return M
