--- weft.serve.cli: `weft serve --config FILE [--host H] [--port N] [--script FILE]`.
---
--- Prints the gateway's URL as the first line on stdout once it listens,
--- then serves until SIGINT or SIGTERM, on which it stops accepting, lets
--- the calls in flight finish (at most `gateway.drain_timeout` seconds,
--- then cancels the rest) and exits 0. SIGHUP (and a change of the
--- configuration or script file) reloads the configuration, the hook
--- script and the plugins without dropping a call; a configuration that
--- does not load is logged and the old one stays. A bad argument or
--- configuration is one line, `weft serve: <what is wrong>`, exit status 2.
local serve = require "weft.serve"
local log = require "weft.log"

local M = {}

local format = string.format
local redact = require("weft._secrets").redact

local USAGE = [[
usage: weft serve --config FILE [--host HOST] [--port N] [--script FILE] [--no-watch]
  --config FILE   Lua file returning weft.configure's table (providers, models, redis)
                  plus `gateway` (keys, models, allow_provider_models, max_body_size,
                  max_header_size, timeout, drain_timeout, hook_timeout, watch, host, port)
  --host HOST     address to bind (default: the configuration's, else 127.0.0.1); a
                  non-loopback address needs gateway.keys
  --port N        port (default: the configuration's, else 8080; 0: any free port)
  --script FILE   Lua file returning {before = fn(ctx), after = fn(ctx, result)}: hooks
                  run around every call (guardrails, rewriting, routing)
  --no-watch      do not reload when the configuration or script file changes

Endpoints: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models (OpenAI);
POST /v1/messages (Anthropic); GET /healthz, /readyz, /metrics.
Signals: SIGTERM or SIGINT drains and exits 0 (a second one exits at once);
SIGHUP reloads the configuration, the script and the plugins.
]]

local function refuse(why)
    io.stderr:write("weft serve: ", redact(tostring(why)), "\n")
    return 2
end

function M.main(...)
    local args = { ... }
    local config, host, port, script, watch
    local i = 1
    while i <= #args do
        local a = args[i]
        local takes = a == "--config" or a == "--host" or a == "--port" or a == "--script"
        local v = takes and args[i + 1]
        if takes and (v == nil or v == "") then
            io.stderr:write("weft serve: ", a, " needs a value\n", USAGE)
            return 2
        end
        if a == "--config" then config = v
        elseif a == "--host" then host = v
        elseif a == "--port" then
            port = tonumber(v)
            if not port or port < 0 or port > 65535 or port ~= math.floor(port) then
                return refuse("--port must be an integer from 0 to 65535")
            end
        elseif a == "--script" then script = v
        elseif a == "--no-watch" then watch = false
        elseif a == "--help" or a == "-h" then io.stdout:write(USAGE) return 0
        else
            io.stderr:write("weft serve: unknown argument '", tostring(a), "'\n", USAGE)
            return 2
        end
        i = i + (takes and 2 or 1)
    end
    if not config then
        io.stderr:write("weft serve: --config FILE is required\n", USAGE)
        return 2
    end
    -- the signals first: one during start-up is kept for the loop below
    local S = require "weft._signal"
    local shutdown, hup = S.new("shutdown"), S.new("hup")
    local ok, gw = pcall(serve.start, { config = config, host = host, port = port, script = script, watch = watch })
    if not ok then
        shutdown:close()
        hup:close()
        local e = type(gw) == "table" and tostring(gw.message) or tostring(gw)
        return refuse(e)
    end
    io.stdout:write(gw.url, "\n")
    io.stdout:flush()
    log.info("weft serve listening", { url = gw.url, models = #gw.state.list, keys = gw.state.keys.count })
    local reloader = weft.spawn(function()
        while hup:wait() do
            local okr, why = gw:reload()
            pcall(weft.reload)
            if okr then log.info("gateway configuration reloaded", { reason = "SIGHUP", models = #gw.state.list })
            else log.error("gateway configuration not reloaded: the old one stays", { error = why }) end
        end
    end)
    local sig = shutdown:wait()
    local bound = gw.state.drain_timeout
    log.info("weft serve draining", { signal = sig, in_flight = gw.active, bound = bound })
    local finished, cancelled = gw:drain(bound)
    log.info("weft serve stopped", { finished = finished, cancelled = cancelled })
    gw:close()
    hup:close()
    shutdown:close()
    reloader:cancel()
    return 0
end

return M
