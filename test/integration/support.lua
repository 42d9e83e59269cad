-- support.lua: shared helpers of the integration tests run by `weft run`.
--
-- Servers are separate processes started with their stdin on a pipe held by
-- this process: when the test ends (or crashes) the pipe closes and they
-- exit by themselves, so no test leaves a server behind.
local M = {}

local HELPERS = os.getenv("WEFT_TEST_HELPERS") or error("WEFT_TEST_HELPERS is not set (run through ctest)")
M.WEFT = os.getenv("WEFT") or error("WEFT is not set (run through ctest)")
M.HELPERS = HELPERS

local failures, checks = 0, 0

--- Record a check; prints TAP-like lines so ctest output says what failed.
function M.check(cond, what, detail)
    checks = checks + 1
    if cond then
        print("ok " .. checks .. " - " .. what)
    else
        failures = failures + 1
        print("not ok " .. checks .. " - " .. what .. (detail and (": " .. tostring(detail)) or ""))
    end
    return cond
end

--- Call fn and return the error it raised (or nil when it did not raise).
function M.raised(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then return nil end
    return err
end

--- End the test: non-zero exit when any check failed.
function M.done()
    print(("1..%d"):format(checks))
    if failures > 0 then
        error(("%d of %d checks failed"):format(failures, checks), 0)
    end
end

-- Wait (sleeping, never blocking the loop) up to 10 s for the first line
-- of file `out` to match `pattern`; returns the capture.
local function first_line(out, pipe, pattern, what)
    local deadline = weft.now() + 10
    while true do
        local f = io.open(out, "r")
        local line = f and f:read("*l")
        if f then f:close() end
        local v = line and line:match(pattern)
        if v then return v end
        if weft.now() > deadline then
            pipe:close()
            os.remove(out)
            error(what .. " did not start")
        end
        weft.sleep(0.02)
    end
end

--- Start a helper server printing "PORT <n>" as its first line. Returns
--- {port=, close=function}. Waits (sleeping, never blocking the loop) up to
--- 10 s for the port line.
function M.start_server(cmd)
    local out = os.tmpname()
    local pipe = assert(io.popen(cmd .. " > " .. out, "w"))
    local port = tonumber(first_line(out, pipe, "^PORT (%d+)", cmd))
    local srv = { port = port, url = "http://127.0.0.1:" .. port }
    function srv.close()
        if pipe then
            pipe:close() -- EOF on the server's stdin: it exits
            pipe = nil
            os.remove(out)
        end
    end
    return srv
end

--- `weft mock` in its own process (extra command-line arguments in
--- `args`). Returns {url=, close=function}; it is stopped by close() or
--- when this process ends (its guard reads our pipe until EOF).
function M.start_mock(args)
    local out = os.tmpname()
    local pipe = assert(io.popen(("sh -c '%s mock --port 0 %s > %s 2>/dev/null & pid=$!; cat > /dev/null; kill $pid'")
        :format(M.WEFT, args or "", out), "w"))
    local srv = { url = first_line(out, pipe, "^(http://[%d%.:]+)", "weft mock") }
    function srv.close()
        if pipe then
            pipe:close()
            pipe = nil
            os.remove(out)
        end
    end
    return srv
end

--- The fault-injecting server (test/integration/faultserver.c).
function M.faultserver()
    return M.start_server(HELPERS .. "/faultserver")
end

--- A port on which nothing listens (bound by a throw-away server, then
--- closed).
function M.closed_port()
    local srv = weft.http.serve { port = 0, handler = function() return { status = 200 } end }
    local port = srv.port
    srv:close()
    return port
end

--- Resident set size of this process in KiB (from /proc/self/status).
function M.rss_kib()
    local f = assert(io.open("/proc/self/status", "r"))
    local s = f:read("*a")
    f:close()
    return tonumber(s:match("VmRSS:%s+(%d+)"))
end

return M
