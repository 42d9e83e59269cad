--- weft.http: asynchronous HTTP client and server.
---
--- `weft.http.request{...}` suspends the calling task until the response
--- arrives and returns it for any status; only transport failures raise
--- (error values of kind transient, timeout, auth, invalid_request,
--- integration or cancelled). The response carries what the request
--- measured (`wire`, `first_byte`), and so does an error value it raises:
--- a caller that accounts the request to something (a weft.Call) records
--- them from there. `weft.http.serve{...}` runs each request's handler in
--- its own task.
local client = require "weft._http_client"
-- (weft.json gives the C decoder its array and object marks: a json = true
-- answer is decoded with them, whatever the script loaded first)
require "weft.json"

local type, error, pcall, xpcall, pairs, tostring = type, error, pcall, xpcall, pairs, tostring
local traceback = debug.traceback

local M = {}

local T = require "weft._task"
local now = T.now
local floor = math.floor
local errors = require "weft.error"
local std = require("weft.metrics").std
local record = require("weft.metrics").record
local STATUS_CLASS = { [1] = "1xx", [2] = "2xx", [3] = "3xx", [4] = "4xx", [5] = "5xx" }

---@class weft.http.Response
---@field status integer
---@field headers table<string, string|string[]> lower-case names; repeated headers are arrays
---@field body? string absent when json holds the decoded body
---@field json? any with opts.json: the decoded 2xx body
---@field json_error? string with opts.json: why a 2xx body (then in body) is not JSON
---@field http_version number
---@field aborted? boolean on_data returned false and the transfer was stopped
---@field wire number seconds on the wire: from sending to the end of the answer, less the time spent in on_data (the sum over the requests sent, when a 401 made it send again)
---@field first_byte? number seconds from sending to the first body data handed to on_data (on_data requests that received data)

---@class weft.http.RequestOptions
---@field url string
---@field method? string default GET, or POST when a body is given
---@field headers? table<string, string|string[]>
---@field body? string
---@field timeout? number total seconds (default 600)
---@field connect_timeout? number seconds (default 10)
---@field idle_timeout? number seconds without a byte received
---@field max_body? integer response size cap in bytes (default 64 MiB)
---@field ca_file? string CA bundle for TLS verification (verification is always on)
---@field ca_path? string directory of CA certificates (c_rehash layout)
---@field on_data? fun(chunk: string, head: {status: integer, headers: table}): boolean|nil called for each body chunk; return false to stop
---@field auth? {secret?: userdata, header?: string, format?: string, query?: string, basic?: {user: string|userdata, password: userdata}}|table[] credentials rendered by the host from secret handles: a header (default "authorization", format "{}" e.g. "Bearer {}"), a query parameter, or HTTP basic; a 401 answer triggers one refresh of the secret and one retry
---@field tls? {cert?: userdata, key?: userdata, ca?: userdata} mutual TLS: PEM client certificate and key (and CA) from the secrets store, passed to curl in memory
---@field redact? boolean secret values in the answer's headers and body are redacted
---@field json? boolean a 2xx body is decoded from the received bytes into res.json (no body string); text that is not JSON stays in res.body with res.json_error; res.headers is made when first read (so pairs(res) lists it only after that)

-- Options a request accepts: a misspelt one (`timout`) is an error, not a
-- silently ignored setting.
local REQUEST_KEYS = {
    url = true, method = true, headers = true, body = true, timeout = true,
    connect_timeout = true, idle_timeout = true, max_body = true, ca_file = true,
    ca_path = true, on_data = true, auth = true, tls = true, origin = true, path = true, query = true,
    redact = true, json = true,
}
local SERVE_KEYS = {
    handler = true, host = true, port = true, max_header_size = true, max_body_size = true,
    header_timeout = true, keepalive_timeout = true, max_connections = true,
    max_connections_per_address = true, backlog = true, background = true,
}

--- The connect timeout of a request that gives none, in seconds
--- (runtime/lua_http_client.c's DEFAULT_CONNECT_TIMEOUT).
M.DEFAULT_CONNECT_TIMEOUT = client.DEFAULT_CONNECT_TIMEOUT

local function shallow_copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

-- Secrets used by a request, in one list (no other table per request):
-- handle k at list[2k - 1], its version when last sent at list[2k].
-- First those of its auth placements (rendered into headers, the query or
-- basic auth: what a 401 rejects), then those of its tls options. All are
-- loaded again when expired; only the first `nauth` are looked at after a
-- 401. Returns the list, nauth and the count.
local function add_secret(list, n, h)
    if h == nil then return n end
    list[2 * n + 1] = h
    return n + 1
end
local function auth_secrets(list, n, it)
    if type(it) ~= "table" then return n end
    n = add_secret(list, n, it.secret)
    local b = it.basic
    if type(b) == "table" then
        n = add_secret(list, n, b.password)
        if type(b.user) == "userdata" then n = add_secret(list, n, b.user) end
    end
    return n
end
-- Lists of requests that ended, for the next ones: no table per request
-- (a request that raises leaves its list to the collector).
local free_lists, nfree = {}, 0
local function release_list(list, n)
    for i = 1, 2 * n do list[i] = nil end
    if nfree < 64 then
        nfree = nfree + 1
        free_lists[nfree] = list
    end
end
local function request_secrets(opts)
    local list, n
    if nfree > 0 then
        list = free_lists[nfree]
        free_lists[nfree] = nil
        nfree = nfree - 1
    else
        list = {}
    end
    n = 0
    local a = opts.auth
    if type(a) == "table" then
        if a[1] ~= nil then
            for i = 1, #a do n = auth_secrets(list, n, a[i]) end
        else
            n = auth_secrets(list, n, a)
        end
    end
    local nauth = n
    local t = opts.tls
    if type(t) == "table" then
        n = add_secret(list, add_secret(list, add_secret(list, n, t.cert), t.key), t.ca)
    end
    return list, nauth, n
end

local secrets_mod
local function secrets()
    secrets_mod = secrets_mod or require "weft.secrets"
    return secrets_mod
end

local request1

-- After a 401: count the rejection of each auth secret once, load again
-- those whose source can give a new value, and say whether any value now
-- differs from the one sent (the version request_secrets' list holds). A
-- value loaded by someone else while this request was on the wire counts
-- too; an env: secret is never loaded again (the same value would be
-- sent again), and a refresh that read the same value changes nothing.
local function renew_rejected(used, nauth)
    local S = secrets()
    local seen, changed = {}, false
    for k = 1, nauth do
        local h, sent = used[2 * k - 1], used[2 * k]
        if type(h) == "userdata" and S.is(h) and not seen[h.name] then
            seen[h.name] = true
            h:_rejected()
            std.secrets:inc(1, "rejected")
            if h.version == sent and S.refreshable(h) then pcall(S.refresh, h) end
            if h.version ~= sent and h.loaded then changed = true end
        end
    end
    return changed
end

-- Add `wire` seconds spent by earlier requests of the same
-- weft.http.request to a response or error value (one that has its own).
local function add_wire(r, wire)
    if type(r) == "table" and r.wire then r.wire = r.wire + wire end
    return r
end

--- Send a request and wait for the response. The response (and an error
--- value raised for a transport failure) carries `wire` and `first_byte`
--- (see weft.http.Response).
---@param opts weft.http.RequestOptions
---@return weft.http.Response
function M.request(opts)
    if type(opts) ~= "table" or (opts.auth == nil and opts.tls == nil) then return request1(opts) end
    local used, nauth, n = request_secrets(opts)
    local S = secrets()
    -- Every secret must be loaded when the host renders it. A refresh waits
    -- (single flight), and on a slow or busy host a short-lived token loaded
    -- by someone else's refresh can expire again before this task renders
    -- it: then load it again and send again (three rounds at most; a token
    -- that cannot outlive that fails with kind auth).
    local res
    local wire = 0 -- of the rounds that failed
    for round = 1, 3 do
        for k = 1, n do
            local h = used[2 * k - 1]
            local loaded, version = S._state(h) -- (nothing: not a handle)
            if loaded == false then
                S.refresh(h)
                version = h.version
            end
            if version then used[2 * k] = version end
        end
        local ok, r = pcall(request1, opts)
        if ok then
            res = r
            break
        end
        if round == 3 or not (errors.is(r) and r.kind == "auth"
                              and tostring(r.message):find("is not loaded or has expired", 1, true)) then
            error(add_wire(r, wire), 0)
        end
        if type(r) == "table" and r.wire then wire = wire + r.wire end
    end
    add_wire(res, wire)
    -- The provider rejected the credential: resend once (never a loop),
    -- and only with a value other than the one it rejected.
    if res.status == 401 and nauth > 0 and renew_rejected(used, nauth) then
        wire = res.wire
        local ok, r = pcall(request1, opts)
        if not ok then error(add_wire(r, wire), 0) end
        res = add_wire(r, wire)
    end
    release_list(used, n)
    return res
end

-- Series handles by method and outcome: a cached handle costs a third of
-- a lookup by label values, on every request.
local by_outcome, by_method = {}, {}

-- Record a finished request in weft_http_requests_total and
-- weft_http_request_duration_seconds; returns its wire time.
local function account(method, t0, in_cb, outcome)
    local wire = now() - t0 - in_cb
    local m = by_outcome[method]
    if not m then
        m = {}
        by_outcome[method] = m
        by_method[method] = std.http_latency:labels(method)
    end
    local s = m[outcome]
    if not s then
        s = std.http:labels(method, outcome)
        m[outcome] = s
    end
    record(s, 1, by_method[method], wire)
    return wire
end

-- What a failed request measured, on the error value it raises.
local function measured(err, wire, first)
    if errors.is(err) then err.wire, err.first_byte = wire, first end
    return err
end

request1 = function(opts)
    if type(opts) ~= "table" then
        error("weft.http.request: expected a table of options, got " .. type(opts), 2)
    end
    for k in pairs(opts) do
        if not REQUEST_KEYS[k] then
            error("weft.http.request: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local on_data = opts.on_data
    if on_data ~= nil then
        if type(on_data) ~= "function" then
            error("weft.http.request: on_data must be a function", 2)
        end
        opts = shallow_copy(opts)
        opts.on_data = nil
        opts.stream = true
    end
    local method = opts.method or (opts.body ~= nil and "POST" or "GET")
    local t0 = now()
    local in_cb = 0 -- time spent in on_data (the script's, not the wire's)
    local first -- seconds to the first body data
    local x, err = client.start(opts)
    if not x then
        error(measured(err, account(method, t0, in_cb, type(err) == "table" and err.kind or "error")), 0)
    end
    while true do
        -- wait() returns the event the transfer woke the task with (made at the
        -- resume); nothing when there was none to deliver: ask again.
        local ev, a, b = x:wait()
        if ev == nil and a == nil then
            -- woken: loop and collect the event
        elseif ev == "done" then
            a.wire = account(method, t0, in_cb, STATUS_CLASS[floor(a.status / 100)] or "other")
            a.first_byte = first
            return a
        elseif ev == "data" then
            local c0 = now()
            if not first then first = c0 - t0 end
            local ok, keep = pcall(on_data, a, b)
            in_cb = in_cb + (now() - c0)
            if not ok then
                x:cancel()
                error(measured(keep, account(method, t0, in_cb, "cancelled"), first), 0)
            end
            if keep == false then
                x:cancel()
                return { status = b.status, headers = b.headers, body = "", aborted = true, first_byte = first,
                         wire = account(method, t0, in_cb, STATUS_CLASS[floor(b.status / 100)] or "other") }
            end
        else
            error(measured(a, account(method, t0, in_cb, type(a) == "table" and a.kind or "error"), first), 0)
        end
    end
end




local function on_handler_error(e)
    if errors.is(e) and e.kind == "cancelled" then return e end
    return traceback(tostring(e), 2)
end

local function trampoline(handler)
    return function(req, res)
        local ok, v = xpcall(handler, on_handler_error, req, res)
        if not ok then
            -- A cancelled handler (Ctrl-C, server shutdown) is not a failure
            -- of the handler; anything else is logged with its traceback.
            local log = require "weft.log"
            if errors.is(v) and v.kind == "cancelled" then
                log.debug("http handler cancelled", { path = req.path, method = req.method })
            else
                log.error("http handler failed", { path = req.path, method = req.method, error = v })
            end
        end
        res:_complete(ok, v)
    end
end

--- Start an HTTP/1.1 server. Returns a server object with `srv.port` (the
--- bound port), `srv.host`, `srv:close()` (stop accepting; requests being
--- answered finish) and `srv:stats()`. Each request runs
--- `handler(req, res)` in its own task. The handler returns
--- `{status=, headers=, body=}`, or streams: `res:start(status, headers)`,
--- `res:write(chunk)` (waits while the client is slow to read; returns a
--- falsy value once the client is gone), `res:finish()`; `res:abort()`
--- drops the connection with a TCP reset; `res:gone()` is true once the
--- client closed its connection before the answer was complete (noticed
--- while the handler runs, like nginx's 499: a handler that waits may
--- check it before doing more work for nobody). A handler that raises gets a 500
--- (or an aborted stream) and is logged.
---
--- Limits (options, all optional): `max_header_size` (bytes, default 64 KiB;
--- 431 above), `max_body_size` (bytes, default 16 MiB; 413 above),
--- `header_timeout` (seconds to receive a request, default 30; 408),
--- `keepalive_timeout` (idle seconds between requests, default 60),
--- `max_connections` (default 10000) and `max_connections_per_address`
--- (default a quarter of max_connections; an IPv6 client counts by its /64).
--- At either cap a new connection replaces an idle one that has not sent a
--- whole request head (the longest idle, of the most connected address),
--- or is closed at once when none is idle. A client that pipelines requests
--- without reading the answers is not read from while more than 256 KiB of
--- its answers are unsent (reading resumes below 64 KiB), so no client can
--- make the server buffer without bound. `srv:stats()` returns
--- `{connections=, accepted=, requests=, active=, rejected=, evicted=,
--- paused=}`: open connections, accepted since start, requests dispatched,
--- handlers running, newcomers closed at a cap, idle connections evicted,
--- connections paused for unread output.
---
--- An open server keeps the process running once the script has returned
--- (`weft run` says so on stderr after a second): `srv:close()` or
--- `weft.exit()` ends it. With `background = true` it does not (a
--- /metrics endpoint beside a script): the process ends with the script.
---@param opts weft.http.ServeOptions
---@return userdata server
function M.serve(opts)
    if type(opts) ~= "table" then
        error("weft.http.serve: expected a table of options, got " .. type(opts), 2)
    end
    if type(opts.handler) ~= "function" then
        error("weft.http.serve: handler must be a function", 2)
    end
    for k in pairs(opts) do
        if not SERVE_KEYS[k] then
            error("weft.http.serve: unknown option '" .. tostring(k) .. "'", 2)
        end
    end
    local o = shallow_copy(opts)
    o.handler = trampoline(opts.handler)
    local srv, err = require("weft._http_server").serve(o)
    if not srv then error(err, 0) end
    return srv
end

return M
