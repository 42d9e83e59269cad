--- weft.repl: `weft repl [--config FILE] [--plugins DIR] [--mock] [--history FILE]`.
---
--- An async-aware REPL on the event loop: each line runs in its own task
--- (a call that waits just works, like top-level await), Ctrl-C cancels the
--- running line, tasks started with weft.spawn keep running between lines,
--- and the loop keeps turning while a line is typed (timers, hot reloads).
--- Expressions print their values; tables are pretty-printed (depth, width,
--- cycles); secret handles print as <secret NAME>; errors print kind and
--- message (`:trace` shows the last traceback). Incomplete chunks continue
--- on the next line. History is kept in $XDG_STATE_HOME/weft/history
--- (~/.local/state/weft/history). Tab completes globals and fields; after
--- a colon (`m:st<TAB>`) only methods. Output a line left mid-line (a
--- stream's text written with io.write) is ended with a newline before the
--- REPL prints more or shows the next prompt. With a pipe as input, lines
--- run in order without prompts, and the exit status is 1 when any of them
--- failed (an error, a line that does not compile or is left unfinished at
--- the end of input, an unknown command, a cancelled line), 0 otherwise.
--- Everything the REPL prints (values, errors, tracebacks, command output,
--- and `print` in the lines it runs) has loaded secret values replaced by
--- <secret NAME>, as in logs and `weft run`'s errors.
local C = require "weft._repl"
local errors = require "weft.error"
local redact = require("weft._secrets").redact

local select, tostring, concat, rawget, rawset = select, tostring, table.concat, rawget, rawset
local type, getmetatable = type, getmetatable
local io = io
local stdout, stderr = io.stdout, io.stderr

local M = {}

-- Whether what was last written to stdout ended a line. A stream's text
-- (io.write(ev.text) in on_event) usually does not: the REPL ends the line
-- before it prints a value or an error, so neither they nor the next prompt
-- are glued onto the answer.
local at_line_start = true

local function track(...)
    for i = select("#", ...), 1, -1 do
        local s = select(i, ...)
        if type(s) == "number" or (type(s) == "string" and s ~= "") then
            at_line_start = type(s) == "string" and s:byte(-1) == 10
            return
        end
    end
end

-- A piece of a line is shown now, not when the line is ended (stdout is
-- line-buffered on a terminal): a stream's text appears as it arrives.
local function flushed(...)
    if not at_line_start then stdout:flush() end
    return ...
end

-- Watch what goes to stdout through io.write and stdout:write (the method
-- every file shares) while the REPL runs. Returns the function that puts
-- both back.
local function watch_stdout()
    local methods, io_write = getmetatable(stdout).__index, io.write
    local file_write = methods.write
    io.write = function(...)
        if io.output() ~= stdout then return io_write(...) end
        track(...)
        return flushed(io_write(...))
    end
    methods.write = function(f, ...)
        if f ~= stdout then return file_write(f, ...) end
        track(...)
        return flushed(file_write(f, ...))
    end
    return function() io.write, methods.write = io_write, file_write end
end

local function fresh_line()
    if not at_line_start then stdout:write("\n") end
    at_line_start = true
end

-- The REPL's only way out to the terminal: print's arguments, redacted.
-- It is also `print` while the REPL runs, so a line that prints a secret's
-- value (os.getenv of a loaded env: secret, say) shows <secret NAME>.
local function print(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    stdout:write(redact(concat(parts, "\t")), "\n")
end

local function warn(text) stderr:write(redact(text)) end

local USAGE = [[
usage: weft repl [--config FILE] [--plugins DIR] [--mock] [--history FILE|--no-history]
  --config FILE    configure providers and models from FILE (as weft run --config)
  --plugins DIR    search DIR for plugins first (repeatable)
  --mock           start weft mock in this process and configure openai, anthropic and
                   gemini against it (no API key needed)
  --history FILE   where the history is kept (default $XDG_STATE_HOME/weft/history)
]]

local HELP = [[
Lines are Lua; each runs in its own task (waiting calls just work). Expressions print their
value. Ctrl-C cancels the running line; Ctrl-D on an empty line quits.
  :help                this text
  :models              configured providers and model aliases
  :plugins             loaded plugins and their versions
  :reload [plugin]     load plugin files again now (a broken file never replaces a good one)
  :limits              the providers' rate limiters: levels, queues, admitted/refused
  :metrics [filter]    Prometheus text, only lines containing filter when given
  :log LEVEL           debug, info, warn, error or off
  :time EXPR           run EXPR and print how long it took
  :trace               the traceback of the last error
  :quit                leave (also Ctrl-D)]]

------------------------------------------------------------- printing

local function is_ident(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

--- Render a value for the prompt: strings quoted (loaded secret values in
--- them replaced by <secret NAME>), tables pretty-printed up to `depth`
--- levels and `width` entries per table, cycles marked; a table that fits
--- on one line (`line`, 72 columns) is written on one.
---@param v any
---@param opts? {depth?: integer, width?: integer, line?: integer}
function M.show(v, opts)
    opts = opts or {}
    local max_depth, max_width = opts.depth or 4, opts.width or 40
    local line = opts.line or 72
    local out, seen = {}, {}
    local function put(s) out[#out + 1] = s end
    local function show(x, depth, indent)
        local t = type(x)
        if t == "string" then
            -- redacted before quoting: %q escapes a value with quotes or
            -- newlines in it into a form redaction would not find
            put(("%q"):format(redact(x)):gsub("\\\n", "\\n"))
        elseif t ~= "table" then
            put(tostring(x))
        elseif seen[x] then
            put("<cycle>")
        elseif depth >= max_depth then
            put(next(x) == nil and "{}" or "{...}")
        else
            local mt = getmetatable(x)
            if mt and mt.__tostring and not (errors.is(x)) then
                put(tostring(x))
                return
            end
            seen[x] = true
            local keys, n = {}, #x
            for k in pairs(x) do
                if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then keys[#keys + 1] = k end
            end
            table.sort(keys, function(a, b)
                if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then return a < b end
                return type(a) < type(b)
            end)
            if n == 0 and #keys == 0 then
                put("{}")
                seen[x] = nil
                return
            end
            -- one line when it fits
            local total = n + #keys
            if total <= max_width then
                local mark = #out
                put("{ ")
                for i = 1, n do
                    show(x[i], depth + 1, indent)
                    put(", ")
                end
                for _, k in ipairs(keys) do
                    if is_ident(k) then put(k) else put("[") show(k, max_depth, indent) put("]") end
                    put(" = ")
                    show(x[k], depth + 1, indent)
                    put(", ")
                end
                out[#out] = " }"
                local text = table.concat(out, "", mark + 1)
                if #text + #indent <= line and not text:find("\n", 1, true) then
                    for j = #out, mark + 2, -1 do out[j] = nil end
                    out[mark + 1] = text
                    seen[x] = nil
                    return
                end
                for j = #out, mark + 1, -1 do out[j] = nil end
            end
            local inner = indent .. "  "
            put("{\n")
            local shown = 0
            for i = 1, n do
                if shown >= max_width then break end
                put(inner)
                show(x[i], depth + 1, inner)
                put(",\n")
                shown = shown + 1
            end
            for _, k in ipairs(keys) do
                if shown >= max_width then break end
                put(inner)
                if is_ident(k) then put(k) else put("[") show(k, max_depth, inner) put("]") end
                put(" = ")
                show(x[k], depth + 1, inner)
                put(",\n")
                shown = shown + 1
            end
            if total > shown then put(inner .. ("... (%d more)\n"):format(total - shown)) end
            put(indent .. "}")
            seen[x] = nil
        end
    end
    show(v, 0, "")
    return table.concat(out)
end

------------------------------------------------------------- commands

local last_trace

local function report(err)
    if errors.is(err) then
        print(("error: %s"):format(tostring(err)))
        last_trace = err.traceback
    else
        print("error: " .. tostring(err))
    end
end

local function providers()
    return require("weft.model").config().providers
end

local commands = {}

function commands.help() print(HELP) end

function commands.models()
    local cfg = require("weft.model").config()
    local names = {}
    for name in pairs(cfg.providers) do names[#names + 1] = name end
    table.sort(names)
    if #names == 0 then print("no providers configured (weft.configure{...}, --config, --mock)") end
    for _, name in ipairs(names) do
        local p = cfg.providers[name]
        print(("provider %-12s plugin %-18s %s"):format(name, p.plugin or name, p.base_url or "(plugin default URL)"))
    end
    local aliases = {}
    for a in pairs(cfg.models) do aliases[#aliases + 1] = a end
    table.sort(aliases)
    for _, a in ipairs(aliases) do
        local m = cfg.models[a]
        print(("model    %-12s = %s/%s"):format(a, m.provider, m.model))
    end
end

function commands.plugins()
    local reg = require("weft.plugins").registry
    local keys = {}
    for k in pairs(reg) do keys[#keys + 1] = k end
    table.sort(keys)
    if #keys == 0 then print("no plugin loaded yet (they load on first use)") end
    for _, k in ipairs(keys) do
        local e = reg[k]
        print(("%-28s version %-10s loads %d, failed reloads %d  %s"):format(k, tostring(e.plugin.version or "-"),
            e.n, e.failures, e.path))
    end
end

function commands.reload(arg)
    local res = weft.reload(arg ~= "" and arg or nil)
    local keys = {}
    for k in pairs(res) do keys[#keys + 1] = k end
    table.sort(keys)
    if #keys == 0 then print(arg ~= "" and ("no loaded plugin named " .. arg) or "no plugin loaded yet") end
    for _, k in ipairs(keys) do
        local v = res[k]
        print(("%-28s %s"):format(k, v == true and "reloaded" or v == false and "unchanged" or ("failed: " .. tostring(v))))
    end
end

function commands.limits()
    local model = require "weft.model"
    local names = {}
    for name in pairs(providers()) do names[#names + 1] = name end
    table.sort(names)
    if #names == 0 then print("no providers configured") end
    for _, name in ipairs(names) do
        local ok, inst = pcall(model.provider, name)
        if ok then
            local st = inst.limiter:state()
            local parts = {}
            for lname, l in pairs(st.limits) do
                parts[#parts + 1] = ("%s %.1f"):format(lname, l.level)
            end
            table.sort(parts)
            local q = 0
            for _, v in ipairs(st.queue) do q = q + v end
            print(("%-12s %s; waiting %d; admitted %d, refused %d"):format(name, table.concat(parts, ", "), q,
                st.admitted or 0, st.refused or 0))
        end
    end
end

function commands.metrics(filter)
    for line in weft.metrics.text():gmatch("[^\n]+") do
        if filter == "" or line:find(filter, 1, true) then print(line) end
    end
end

function commands.log(level)
    local ok, err = pcall(weft.log.level, level)
    if not ok then error(err, 0) end -- reported as before, and the line failed
    print("log level " .. level)
end

function commands.trace() print(last_trace or "no traceback") end

------------------------------------------------------------- running lines

local function pack(...) return { n = select("#", ...), ... } end

local function incomplete(err)
    return err ~= nil and (err:find("'<eof>'$") ~= nil or err:find("<eof>$") ~= nil)
end

-- Compile a line (or the lines so far): an expression first, then a
-- statement. Returns fn, or nil, err, is_incomplete.
local function compile(src)
    local fn, eerr = loadstring("return " .. src, "=stdin")
    if fn then
        -- run it as `select(1, ...)`: every value kept, and a call in the
        -- line is no tail call, so error("x") still says stdin:1
        return loadstring("return select(1, " .. src .. "\n)", "=stdin") or fn
    end
    local serr
    fn, serr = loadstring(src, "=stdin")
    if fn then return fn end
    return nil, serr, incomplete(serr) or incomplete(eerr)
end

-- Run fn in its own task; Ctrl-C (r:running) cancels it. Prints results.
-- Returns true when the line ran to its end.
local function run(r, fn, timed)
    local t0 = weft.now()
    local task = weft.spawn(function() return pack(fn()) end)
    r:running(task)
    local ok, res = pcall(task.wait, task)
    -- on a terminal, Ctrl-C's ^C echo was ended with a newline already
    if r:running(nil) and r:tty() then at_line_start = true end
    fresh_line()
    if not ok then
        if errors.is(res) and res.kind == "cancelled" then
            print("cancelled")
        else
            if errors.is(res) and not res.traceback then res.traceback = task:traceback() end
            if not errors.is(res) then last_trace = task:traceback() end
            report(res)
        end
    else
        for i = 1, res.n do print(M.show(res[i])) end
    end
    if timed then print(("%.3f ms"):format((weft.now() - t0) * 1000)) end
    return ok
end

local function state_dir()
    local base = os.getenv("XDG_STATE_HOME")
    if not base or base == "" then
        local home = os.getenv("HOME")
        if not home then return nil end
        base = home .. "/.local/state"
    end
    return base .. "/weft"
end

-- `--mock`: the mock in this process, the three dialects configured against it.
local function start_mock()
    local mock = weft.mock.start {}
    local keys = weft.mock.DEFAULT_KEYS
    local ps = {}
    for _, d in ipairs { "openai", "anthropic", "gemini" } do
        ps[d] = { base_url = mock.url, secret = weft.secrets.value("mock-" .. d, keys[d]) }
    end
    weft.configure {
        providers = ps,
        models = { gpt = "openai/gpt-4o-mini", claude = "anthropic/claude-3-5-haiku-latest",
                   gemini = "gemini/gemini-2.0-flash" },
    }
    return mock
end

function M.main(...)
    local args = { ... }
    local history, mock_wanted, no_history = nil, false, false
    local i = 1
    while i <= #args do
        local a = args[i]
        if a == "--config" or a == "--plugins" or a == "--history" then
            local v = args[i + 1]
            if not v then
                warn("weft repl: " .. a .. " needs a value\n" .. USAGE)
                return 2
            end
            if a == "--config" then
                local ok, err = pcall(require("weft.model").load_config, v)
                if not ok then
                    warn("weft: " .. tostring(err) .. "\n")
                    return 2
                end
            elseif a == "--plugins" then
                require("weft.plugins").add_dir(v)
            else
                history = v
            end
            i = i + 2
        elseif a == "--mock" then
            mock_wanted, i = true, i + 1
        elseif a == "--no-history" then
            no_history, i = true, i + 1
        elseif a == "--help" or a == "-h" then
            stdout:write(USAGE)
            return 0
        else
            warn("weft repl: unknown option " .. a .. "\n" .. USAGE)
            return 2
        end
    end
    if not history and not no_history then
        local dir = state_dir()
        if dir then
            os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
            history = dir .. "/history"
        end
    end
    -- info lines (secrets loaded, every call) would bury the answers at the
    -- prompt: warn unless WEFT_LOG says otherwise (`:log info` brings them back)
    if not os.getenv("WEFT_LOG") and weft.log.level() == "info" then weft.log.level("warn") end
    local mock = mock_wanted and start_mock() or nil
    if mock then rawset(_G, "mock", mock) end -- mock:set_faults{...}, mock:stats() at the prompt
    local global_print = rawget(_G, "print")
    rawset(_G, "print", print) -- the lines' print is redacted too, until the REPL ends
    local unwatch = watch_stdout()
    local r = C.open { history = not no_history and history or nil }
    local tty = r:tty()
    -- lines that failed: with a pipe as input, the exit status says so
    local failed = 0
    local function fail(msg)
        if msg then print(msg) end
        failed = failed + 1
    end
    if tty then
        print(("weft %s REPL. :help for commands, Ctrl-D to quit.%s"):format(weft._VERSION,
            mock and (" Mock provider at " .. mock.url .. " (models gpt, claude, gemini).") or ""))
    end
    local buf
    while true do
        local line = r:read(buf and ">> " or "> ")
        if tty then at_line_start = true end -- the Enter (or Ctrl-D) that ended it
        if line == nil then
            if buf and not tty then
                local _, err = compile(buf)
                fail("error: " .. err) -- the input ended inside a chunk
            end
            break
        end
        if not buf and line:match("^%s*:") then
            r:add_history(line)
            local cmd, rest = line:match("^%s*:(%a*)%s*(.-)%s*$")
            if cmd == "quit" or cmd == "q" then break end
            if cmd == "time" then
                local fn, err = compile(rest)
                if not fn then fail("error: " .. err) elseif not run(r, fn, true) then fail() end
            elseif commands[cmd] then
                local ok, err = pcall(commands[cmd], rest)
                if not ok then
                    report(err)
                    fail()
                end
            else
                fail("unknown command :" .. tostring(cmd) .. " (:help lists them)")
            end
        elseif line:match("^%s*$") and not buf then
            -- nothing
        else
            local src = buf and (buf .. "\n" .. line) or line
            local fn, err, more = compile(src)
            if not fn and more then
                buf = src
            else
                buf = nil
                r:add_history(src)
                if not fn then fail("error: " .. err) elseif not run(r, fn) then fail() end
            end
        end
    end
    r:close()
    unwatch()
    rawset(_G, "print", global_print)
    if mock then mock:close() end
    -- tasks started at the prompt end with the REPL
    C.exit()
    -- a script piped in reports its failures; at a terminal they were seen
    return (not tty and failed > 0) and 1 or 0
end

return M
