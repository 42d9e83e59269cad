--- weft._pipeline: the call pipeline (DESIGN.md, "The call pipeline")
--- behind weft.model: model:complete, model:stream and model:embed.
---
--- Each call, and each attempt of it, goes through these stages:
--- 1. resolve: `provider/model` to the provider's instance (weft._config)
---    and the current version of its plugin (held for the whole call: a
---    reload while it runs does not change it); the call is opened
---    (weft.calls);
--- 2. admit: an open circuit breaker refuses at once; then the rate
---    limiter (requests and estimated tokens, priority queue, deadline);
---    then the call goes through the breaker;
--- 3. encode (plugin), 4. send with auth rendered by the host from the
---    secrets store, timeouts enforced; 5. classify (plugin) into the error
---    taxonomy, rate-limit headers and Retry-After fed to the limiter;
--- 6. retry by kind with the provider's backoff policy (weft.retry);
--- 7. decode (plugin), 8. record: reconcile real token usage with the
---    limiter, finish the call (weft.calls: metrics, logs, hooks, cost).
--- Streams go through the same stages (weft._stream).
---
--- Data flows down and results flow back up: weft.http returns its time on
--- the wire with the response (and on the error it raises), the limiter
--- returns the time it queued the call, weft.retry records its backoff on
--- the call it is given; this module records them on the call. Nothing
--- below looks up "the current call".
---
--- A call is one context table, `ctx`, made by resolve and passed to every
--- stage (and to weft._boundary, weft._stream); no other state is kept:
---
---   ctx.inst          the provider instance: name, limiter, breaker,
---                     retry policy, timeouts, base_url (resolve)
---   ctx.entry         the plugin's registry entry (resolve)
---   ctx.plugin        the plugin version serving the whole call (resolve)
---   ctx.pcfg          the plugin's own plain copy of its options (resolve)
---   ctx.op            "complete" | "stream" | "embed" (resolve)
---   ctx.model_name    the request's model: what the host reads of it
---                     after resolve (the request itself is not kept
---                     for the whole call)
---   ctx.input_estimate
---                     the request's input tokens, estimated (resolve)
---   ctx.preq          the plugin's plain copy of it (resolve)
---   ctx.on_event      the stream's callback (resolve)
---   ctx.deadline      weft.now() time the call fails at, or nil (resolve)
---   ctx.priority      the request's priority (resolve; ctx is the
---                     limiter's acquire options)
---   ctx.requests, ctx.tokens
---                     1 and the estimate: what admission takes from the
---                     limiter (resolve; ctx is the limiters' cost table)
---   ctx.call          the weft.Call recording it (resolve; finished by record)
---   ctx.sent          the attempt's request went out (send; admit gives
---                     the request back to the limiter when it did not)
---   ctx.hint, ctx.should_retry
---                     the host's readings of a non-2xx answer (classify)
---   ctx.delivered     a streamed event reached on_event (weft._stream)
local plugins = require "weft.plugins"
local calls = require "weft.calls"
local retry = require "weft.retry"
local http = require "weft.http"
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"
local metrics = require "weft.metrics"
local config = require "weft._config"
local B = require "weft._boundary"
local stream = require "weft._stream"
local T = require "weft._task"

local type, pairs, ipairs, tostring, error, pcall, next, rawget =
    type, pairs, ipairs, tostring, error, pcall, next, rawget
local now = T.now
local ceil = math.ceil
local new_table = require "table.new"
local format = string.format
local plain = plugins.plain
local instance, auth_of, plugin_config = config.instance, config.auth_of, config.plugin_config
local excerpt, fail, plugin_name, plugin_fail, plugin_call, plain_result =
    B.excerpt, B.fail, B.plugin_name, B.plugin_fail, B.plugin_call, B.plain_result
local seconds, redact_json_text, tool_calls_of = B.seconds, B.redact_json_text, B.tool_calls_of

local M = {}

local REQUEST_KEYS = {
    messages = true, prompt = true, system = true, max_tokens = true, temperature = true, top_p = true,
    stop = true, tools = true, tool_choice = true, id = true, priority = true, deadline = true, timeout = true,
    extra = true, tags = true, metadata = true, cache = true,
}
local ROLES = { system = true, user = true, assistant = true, tool = true }

------------------------------------------------------------ requests

local function bad(msg) error(errors.new("invalid_request", msg), 0) end

--- The request as the pipeline takes it: a string is one user message;
--- the model's defaults fill what `req` leaves out; every field checked
--- (kind invalid_request). The caller's tables are not changed.
---@param req string|weft.Request
---@param defaults table
---@param model string
---@param fresh? boolean a table `req` is the caller's plain data, made for this call alone
---@return weft.Request
local function normalize(req, defaults, model, fresh)
    local r
    -- all of r made here, of strings (and defaults that are not tables),
    -- or the caller's own plain data made for this call alone (`fresh`)
    local owned = type(req) == "string" or (fresh == true and type(req) == "table")
    if type(req) == "string" then
        -- (made here: no request table to copy)
        r = { model = model, messages = { { role = "user", content = req } } }
    elseif type(req) == "table" then
        r = { model = model }
        for k, v in pairs(req) do
            if not REQUEST_KEYS[k] then bad("unknown request field '" .. tostring(k) .. "'") end
            r[k] = v
        end
    else
        bad("a request is a string or a table, got " .. type(req))
    end
    for k, v in pairs(defaults) do
        if r[k] == nil then
            r[k] = v
            local tv = type(v) -- (a table is the model's, shared by its calls)
            if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then owned = false end
        end
    end
    local msgs = r.messages
    if r.prompt ~= nil then
        if type(r.prompt) ~= "string" then bad("prompt must be a string") end
        msgs = msgs or {}
        local copy = {}
        for i, m in ipairs(msgs) do copy[i] = m end
        copy[#copy + 1] = { role = "user", content = r.prompt }
        msgs, r.prompt = copy, nil
    end
    if type(msgs) ~= "table" or msgs[1] == nil then bad("messages must be a non-empty list (or give a prompt)") end
    for i, m in ipairs(msgs) do
        if type(m) ~= "table" then bad("messages[" .. i .. "] must be a table") end
        if not ROLES[m.role] then bad("messages[" .. i .. "].role must be system, user, assistant or tool") end
        if m.content ~= nil and type(m.content) ~= "string" then bad("messages[" .. i .. "].content must be a string") end
        if m.content == nil and not m.tool_calls then bad("messages[" .. i .. "] has no content") end
    end
    r.messages = msgs
    if r.system ~= nil and type(r.system) ~= "string" then bad("system must be a string") end
    if r.max_tokens ~= nil and (type(r.max_tokens) ~= "number" or r.max_tokens < 1) then bad("max_tokens must be a number >= 1") end
    if r.temperature ~= nil and type(r.temperature) ~= "number" then bad("temperature must be a number") end
    if r.stop ~= nil and type(r.stop) ~= "string" and type(r.stop) ~= "table" then bad("stop must be a string or a list") end
    if r.tools ~= nil and type(r.tools) ~= "table" then bad("tools must be a list") end
    if r.extra ~= nil and type(r.extra) ~= "table" then bad("extra must be a table") end
    if r.id ~= nil and type(r.id) ~= "string" then bad("id must be a string") end
    if r.tags ~= nil and type(r.tags) ~= "table" then bad("tags must be a list of strings") end
    if r.metadata ~= nil and type(r.metadata) ~= "table" then bad("metadata must be a table") end
    local pr = r.priority
    if pr ~= nil and not (pr == "high" or pr == "normal" or pr == "low"
                          or (type(pr) == "number" and pr >= 1 and pr == math.floor(pr))) then
        bad("priority must be \"high\", \"normal\", \"low\" or a level 1..n, got " .. tostring(pr))
    end
    if r.timeout ~= nil and not (type(r.timeout) == "number" and r.timeout > 0) then bad("timeout must be seconds > 0") end
    if r.deadline ~= nil and type(r.deadline) ~= "number" then bad("deadline must be a weft.now() time (a number)") end
    if r.cache ~= nil and r.cache ~= true and r.cache ~= false and r.cache ~= "refresh" then
        bad("cache must be true, false or \"refresh\"")
    end
    return r, owned
end

--- (normalize's second result: r is all made here, of plain data, so a
--- call of its own may hand it to the plugin without a copy: M.run's
--- `owned`)
M.normalize_owned = normalize
M.normalize = function(req, defaults, model) return (normalize(req, defaults, model)) end
--- The fields a request may have (docs/api.md lists each).
M.REQUEST_KEYS = REQUEST_KEYS

-- Tokens a request may use, for admission: ~4 bytes a token of input, and
-- the output allowance.
local function input_estimate(r)
    local n = #(r.system or "")
    for _, m in ipairs(r.messages or {}) do n = n + #(m.content or "") + 12 end
    for _, t in ipairs(r.input or {}) do n = n + #t end
    return ceil(n / 4)
end
local function estimate(r)
    return input_estimate(r) + (r.max_tokens or (r.input and 0 or 256))
end

------------------------------------------------------------ resolve

-- The plugin's copy of a normalized request: weft.plugins.plain's, made
-- here for the request's usual shape (scalars, and messages of scalar
-- fields) at half its cost; any other table goes through plain, and
-- anything that is not plain data sends the whole request there (which
-- refuses it, saying why).
local function request_copy(r)
    local c = {}
    for k, v in next, r do
        local tv = type(v)
        if k == "messages" and tv == "table" then
            local ms = {}
            for i = 1, #v do
                local m = v[i]
                local cm = {}
                for mk, mv in next, m do
                    local t = type(mv)
                    if type(mk) ~= "string" then
                        return plain(r)
                    elseif t == "table" then
                        local err
                        mv, err = plain(mv)
                        if mv == nil then return nil, err end
                    elseif t ~= "string" and t ~= "number" and t ~= "boolean" then
                        return plain(r)
                    end
                    cm[mk] = mv
                end
                ms[i] = cm
            end
            c.messages = ms
        elseif tv == "table" then
            local err
            v, err = plain(v)
            if v == nil then return nil, err end
            c[k] = v
        elseif tv == "string" or tv == "number" or tv == "boolean" then
            c[k] = v
        else
            return plain(r)
        end
    end
    return c
end

-- The plugin's own plain copy of instance `inst`'s options for plugin
-- version `p` (made once per version), or an invalid_request error.
local function plugin_options(inst, p)
    local pcfg = inst.cfgs[p]
    if pcfg then return pcfg end
    local err
    pcfg, err = plugin_config(p, inst.raw)
    if not pcfg then bad("providers." .. inst.name .. ": " .. err) end
    -- the plugin's own copy: nothing of the user's configuration tables
    pcfg, err = plain(pcfg)
    if not pcfg then bad("providers." .. inst.name .. ": the plugin options are not plain data: " .. err) end
    inst.cfgs[p] = pcfg
    return pcfg
end
M.plugin_options = plugin_options

-- The call context of `model` (a weft.Model) for `op` and the normalized
-- request, the call opened. Refuses (invalid_request) an operation the
-- plugin cannot do, and plugin options or a request that are not plain
-- data, before any call is recorded.
local function resolve(model, op, req, on_event, owned)
    local inst = instance(model.provider)
    local entry = inst.entry
    local p = entry.plugin -- this call's version, whatever is loaded meanwhile
    local caps = p.capabilities or {}
    if caps[op == "stream" and "stream" or op] == false or (op == "stream" and not p.event) then
        bad(format("provider %s (plugin %s) cannot %s", inst.name, p.name, op))
    end
    local pcfg = plugin_options(inst, p)
    -- The plugin sees a copy of the request: the caller's tables are never
    -- handed to plugin code (which could change them).
    -- (none when the request is the call's own and plain by construction:
    -- normalize made all of it, and the host reads nothing of it once a
    -- plugin has run)
    local preq, perr = req, nil
    if not owned then
        preq, perr = request_copy(req)
        if not preq then bad("the request is not plain data (" .. perr .. ")") end
    end
    local deadline = req.deadline or (req.timeout and now() + req.timeout) or nil
    return {
        -- (not the request itself: what the host reads of it later is
        -- taken here, so that it is not kept alive for the whole call)
        inst = inst, entry = entry, plugin = p, pcfg = pcfg, op = op, model_name = req.model, preq = preq,
        on_event = on_event, deadline = deadline, priority = req.priority, requests = 1, tokens = estimate(req),
        input_estimate = input_estimate(req), sent = false,
        call = calls.open(inst.name, req.model, op, req.id),
    }
end

------------------------------------------------------------ admit

-- An open breaker refuses at once (no wait in the limiter's queue), then
-- the limiter admits. Returns the seconds the call queued, recorded on
-- the call as waiting (not weft's overhead), as is the queueing of an
-- admission that failed (its error's `waited`).
local function admit(ctx)
    local inst = ctx.inst
    local br = inst.breaker
    if br then br:check() end
    -- the fleet's breaker (weft.shared_breaker): open elsewhere, or this call is the one probe
    local sb = inst.shared_breaker
    local shared = inst.shared
    -- (checked in the shared limits' admission script when it is attached there)
    ctx.probe = sb and not (shared and shared.breaker) and sb:check() or nil
    local lim = inst.limiter
    -- (ctx is the cost and the options: requests, tokens, priority and
    -- deadline; no table per call)
    local ok, waited = pcall(lim.acquire, lim, ctx, ctx)
    if not ok and ctx.probe then
        sb:after(true, false, nil) -- the probe never went out: the next call probes
        ctx.probe = nil
    end
    if not ok then
        if errors.is(waited) and waited.waited then ctx.call:wait_time(waited.waited) end
        error(waited, 0)
    end
    if shared then
        -- then the limits every process shares (weft.shared_limits): its slot
        local sok, swaited, sbooked, sprobe = pcall(shared.admit, shared, ctx, ctx.deadline, ctx.priority)
        ctx.shared_tokens = sbooked
        if sok and shared.breaker then ctx.probe = sprobe end
        if not sok then
            if ctx.probe then
                inst.shared_breaker:after(true, false, nil)
                ctx.probe = nil
            end
            lim:reconcile(ctx.tokens, 0)
            lim:refund(ctx.requests)
            ctx.call:wait_time(waited)
            error(swaited, 0)
        end
        waited = waited + swaited
    end
    ctx.call:wait_time(waited)
    return waited
end

------------------------------------------------------------ encode

-- "METHOD URL" of the attempt's request (no query), for its errors.
local function shown_of(ctx)
    if not ctx.path then return nil end
    return excerpt(ctx.method .. " " .. ctx.inst.base_url .. ctx.path, 300)
end
M.shown_of = shown_of

local bad_path, bad_query = plugins.bad_path, plugins.bad_query
local refused_total = metrics.std.plugin_refused

-- A request of a plugin the host will not send: logged and counted.
local function refused(ctx, reason, what)
    log.warn("plugin request refused", { plugin = ctx.plugin.name, provider = ctx.inst.name, reason = reason,
                                         detail = excerpt(what) })
    refused_total:inc(1, ctx.plugin.name, reason)
end

-- The request encode describes -> the options of weft.http.request on the
-- provider's configured origin. Everything a plugin returned is read raw
-- and checked; nothing is sent when something is wrong.
-- The host's headers of a request to which the plugin adds none, by
-- operation: the same table for every such request of the pipeline (from
-- encode, which hands them to weft.http only, which reads them).
local HOST_HEADERS = {
    complete = { ["content-type"] = "application/json", accept = "application/json" },
    embed = { ["content-type"] = "application/json", accept = "application/json" },
    stream = { ["content-type"] = "application/json", accept = "text/event-stream" },
}

local function request_of(ctx, enc, auth, shared)
    if type(enc) ~= "table" then plugin_fail(ctx, "encode must return {path=, body=, ...}, got " .. type(enc)) end
    local path, query, method = rawget(enc, "path"), rawget(enc, "query"), rawget(enc, "method")
    local why = bad_path(path) or (query ~= nil and bad_query(query)) or nil
    if why then
        refused(ctx, "path", why)
        plugin_fail(ctx, "encode: refused: " .. why .. " (the origin is the configured base_url)")
    end
    if method ~= nil and (type(method) ~= "string" or not method:match("^%u+$") or #method > 16) then
        plugin_fail(ctx, "encode: method must be an upper-case HTTP method")
    end
    local op = ctx.op
    local eh = rawget(enc, "headers")
    local headers = shared and (eh == nil or (type(eh) == "table" and next(eh) == nil)) and HOST_HEADERS[op]
    if not headers then
        headers = { ["content-type"] = "application/json", accept = op == "stream" and "text/event-stream" or "application/json" }
    end
    if eh ~= nil and headers ~= HOST_HEADERS[op] then
        if type(eh) ~= "table" then plugin_fail(ctx, "encode: headers must be a table") end
        local own = auth and auth.header
        for k, v in next, eh do
            if type(k) ~= "string" or not k:match("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$") then
                plugin_fail(ctx, "encode: header names must be HTTP tokens")
            end
            local lk = k:lower()
            if plugins.host_owned(lk, own) then -- credentials and the connection are the host's
                refused(ctx, "header", "header " .. lk)
                plugin_fail(ctx, "encode: refused: header '" .. lk .. "' is the host's (credentials and the connection are not the plugin's)")
            end
            if type(v) ~= "string" or v:find("[%z\r\n]") then
                plugin_fail(ctx, "encode: header '" .. lk .. "' must be a string without CR, LF or NUL")
            end
            headers[lk] = v
        end
    end
    local body = rawget(enc, "body")
    if type(body) == "table" then
        -- the host's encoder on the plugin's tables: under the plugin's
        -- budget, so nothing of the plugin runs unbounded
        local ok, text = plugins.guard(ctx.plugin.name, plugin_name(ctx) .. ": encoding the body", json.encode, body)
        if not ok then plugin_fail(ctx, "encode: the body cannot be sent as JSON: " .. tostring(text):gsub("^.-: encoding the body failed: ", "")) end
        body = text
    elseif body ~= nil and type(body) ~= "string" then
        plugin_fail(ctx, "encode: body must be a table or a string, got " .. type(body))
    end
    -- a base_url ending in the path's first segment (".../v1", the habit
    -- of OpenAI SDK users) does not repeat it: ".../v1" + "/v1/chat/..."
    -- goes to ".../v1/chat/..."
    local dup = ctx.inst.base_dup
    if dup and path:sub(1, #dup + 1) == dup .. "/" then path = path:sub(#dup + 1) end
    method = method or "POST"
    -- what the errors of this request show (no query: it may carry the
    -- key), made when one is raised (shown_of)
    ctx.method, ctx.path = method, path
    -- (weft.http's own defaults are left out, so that a POST with a body
    -- and its timeout stays in LuaJIT's 8-slot hash: the table is held
    -- for as long as the request is in flight)
    local opts = { origin = ctx.inst.base_url, path = path, headers = headers, body = body, auth = auth,
                   redact = true }
    if method ~= "POST" or body == nil then opts.method = method end
    if query ~= nil then opts.query = query end
    return opts
end
M.request_of = request_of

-- The plugin's request (encode) as weft.http.request options, with the
-- host's auth and the attempt's timeout (what is left of the deadline).
local function encode(ctx, remaining)
    local inst = ctx.inst
    local auth = auth_of(inst, ctx.plugin)
    local opts = request_of(ctx, plugin_call(ctx, "encode", ctx.op, ctx.preq, ctx.pcfg), auth, true)
    local timeout = inst.timeout
    if remaining and remaining < timeout then timeout = remaining end
    if timeout <= 0 then fail(ctx, "timeout", "deadline reached before the attempt") end
    opts.timeout = timeout
    -- an answer decode (below) reads: decoded by weft.http from its bytes
    local op = ctx.op
    if op == "complete" or op == "embed" then opts.json = true end
    local ct = inst.connect_timeout
    if ct ~= http.DEFAULT_CONNECT_TIMEOUT then opts.connect_timeout = ct end
    return opts
end

------------------------------------------------------------ send

-- libcurl sends a request again by itself when a reused connection turns
-- out dead before any answer: what the server saw counts as attempts.
local function count_resends(ctx, n)
    if type(n) == "number" and n > 1 then ctx.call:resent(n - 1) end
end

-- Send the request; what weft.http measured (time on the wire, the
-- provider's quota headers) goes on the call before any plugin sees the
-- answer. A failed stream raises with its partial result (weft._stream).
local function send(ctx, opts, st)
    ctx.sent = true
    local ok, res = pcall(http.request, opts)
    local call = ctx.call
    if not ok then
        if errors.is(res) then
            call:http(res)
            count_resends(ctx, res.sends)
            if st then stream.failed(ctx, st, res) end
        end
        error(res, 0)
    end
    call:http(res)
    count_resends(ctx, res.sends)
    return res
end

------------------------------------------------------------ classify

-- Feed the answer's rate-limit state to the limiter and the quota gauge:
-- the plugin reads its provider's headers (rate_limits), else the host's
-- reading of the common ones (x-ratelimit-*, anthropic-ratelimit-*). Only
-- sane numbers reach the limiter: a plugin cannot block its provider for
-- ever with an infinite reset or a negative remaining.
local quota_gauge = metrics.std.quota
local UNITS = { "requests", "tokens" }
local rate = require("weft._http_client").rate
local function observe_limits(ctx, res, body)
    local inst = ctx.inst
    if not ctx.plugin.rate_limits then
        if res.status >= 300 then
            inst.limiter:observe(res.headers, res.status) -- (a 429's Retry-After too)
            return
        end
        -- read from the answer's header lines, not its headers table (a
        -- json answer's is made only when something reads it)
        local rr, rt, _, _, sr, st = rate(res, true)
        local lim = inst.limiter
        if rr then lim:report("requests", rr, sr) end
        if rt then lim:report("tokens", rt, st) end
        return
    end
    local rl = plugin_call(ctx, "rate_limits", res.status, res.headers, body or "", ctx.pcfg)
    if type(rl) ~= "table" then return end
    -- read raw (no metamethod of the plugin runs), numbers only
    local lim = inst.limiter
    for i = 1, 2 do
        local unit = UNITS[i]
        local u = rawget(rl, unit)
        local rem = type(u) == "table" and seconds(rawget(u, "remaining"), 1e15)
        if rem then
            lim:report(unit, rem, seconds(rawget(u, "reset"), 86400 * 31))
            -- (the series kept on the instance: no label lookup per answer)
            local qs = inst.quota_series
            if not qs then
                qs = {}
                inst.quota_series = qs
            end
            local g = qs[unit]
            if not g then
                g = quota_gauge:labels(inst.name, unit)
                qs[unit] = g
            end
            g:set(rem)
        end
    end
    local wait = seconds(rawget(rl, "retry_after"), 86400)
    if wait then lim:report(nil, nil, nil, wait) end
end

-- A non-2xx answer -> the error the plugin classifies it as. The host's
-- readings of the headers (ctx.hint, ctx.should_retry; the call's quota
-- headers in weft.http) were all taken before any plugin saw the table:
-- whatever a plugin does to it, the host does not read it again.
local function http_failure(ctx, res, body)
    local c = plain_result(ctx, "classify",
        plugin_call(ctx, "classify", res.status, res.headers, body, ctx.pcfg))
    if type(c) ~= "table" then c = {} end
    local kind = (type(c.kind) == "string" and errors.KINDS[c.kind]) and c.kind or "integration"
    local ra = seconds(c.retry_after, 86400)
    local code = c.code
    if type(code) ~= "string" and type(code) ~= "number" then code = nil end
    local msg = type(c.message) == "string" and c.message or body
    local reason = c.reason
    if type(reason) ~= "string" or #reason > 64 or not reason:match("^[%w_]+$") then reason = nil end
    local shown = shown_of(ctx)
    local where = shown and (" (" .. shown .. ")") or ""
    error(errors.new(kind, format("%s HTTP %d%s: %s", ctx.plugin.name, res.status, where, excerpt(msg)), {
        status = res.status, provider = ctx.inst.name, model = ctx.model_name, code = code, reason = reason,
        url = shown,
        retry_after = ra or ctx.hint, should_retry = ctx.should_retry, sends = res.sends,
    }), 0)
end

-- The host's own readings of an answer, before any plugin sees it.
local function host_readings(ctx, res)
    if res.status >= 300 then
        ctx.hint, ctx.should_retry = retry.hint(res), retry.should_retry(res.headers)
    else
        ctx.hint, ctx.should_retry = nil, nil
    end
end

-- The host's readings, the limiter fed, and a non-2xx answer raised as
-- the error the plugin classifies it as; `body` is the answer's body as a
-- plugin may see it (redacted), for a non-2xx answer.
local function classify(ctx, res, body)
    host_readings(ctx, res)
    if res.status >= 300 then
        observe_limits(ctx, res, body)
        http_failure(ctx, res, body or "")
    end
    observe_limits(ctx, res, nil)
end
M.classify = classify

--- A non-2xx answer raised as the error the plugin classifies it as,
--- without feeding the limiter (weft.batch: a batch API's answers say
--- nothing about the provider's synchronous quotas).
---@param ctx table
---@param res weft.http.Response
---@param body? string the body as a plugin may see it (redacted)
function M.raise_failure(ctx, res, body)
    host_readings(ctx, res)
    if res.status >= 300 then http_failure(ctx, res, body or "") end
end

------------------------------------------------------------ decode

-- decode's result as the host's own table: the fields the host knows,
-- read raw and checked; any other field is the plugin's and is copied as
-- plain data.
local RESULT_FIELDS = { text = true, finish_reason = true, model = true, id = true, usage = true,
                        tool_calls = true, vectors = true }
local function raw_string(ctx, fname, t, k)
    local v = rawget(t, k)
    if v ~= nil and type(v) ~= "string" then plugin_fail(ctx, format("%s: %s must be a string, got %s", fname, k, type(v))) end
    return v
end
local function raw_usage(u)
    if type(u) ~= "table" then return nil end
    local i, o = seconds(rawget(u, "input"), 1e15) or 0, seconds(rawget(u, "output"), 1e15) or 0
    return { input = i, output = o }
end

local function checked_result(ctx, out)
    -- (made at the size record fills it to: no rehash on the way)
    local r = new_table(0, 16)
    r.text, r.finish_reason = raw_string(ctx, "decode", out, "text"), raw_string(ctx, "decode", out, "finish_reason")
    r.model, r.id = raw_string(ctx, "decode", out, "model"), raw_string(ctx, "decode", out, "id")
    r.usage = raw_usage(rawget(out, "usage"))
    local tc = rawget(out, "tool_calls")
    if tc ~= nil then r.tool_calls = tool_calls_of(ctx, "decode", plain_result(ctx, "decode", tc)) end
    local vs = rawget(out, "vectors")
    if vs ~= nil then
        vs = plain_result(ctx, "decode", vs)
        if type(vs) ~= "table" then plugin_fail(ctx, "decode: vectors must be a list") end
        for i = 1, #vs do
            local v = vs[i]
            if type(v) ~= "table" then plugin_fail(ctx, "decode: vectors[" .. i .. "] must be a list of numbers") end
            for j = 1, #v do
                if type(v[j]) ~= "number" then plugin_fail(ctx, "decode: vectors[" .. i .. "] must be a list of numbers") end
            end
        end
        r.vectors = vs
    end
    for k, v in next, out do
        if not RESULT_FIELDS[k] then
            if type(k) ~= "string" then plugin_fail(ctx, "decode: result keys must be strings") end
            r[k] = plain_result(ctx, "decode", v)
        end
    end
    return r
end
M.checked_result = checked_result

-- The text of an answer weft.http decoded, for an error message.
local function answer_text(res)
    if res.body then return res.body end
    local ok, s = pcall(json.encode, res.json)
    return ok and s or "(not shown: " .. type(res.json) .. ")"
end

-- A 2xx answer (not streamed) -> the normalized result (plugin decode).
local function decode(ctx, res)
    local p = ctx.plugin
    -- weft.http decoded it from the bytes it received (json = true),
    -- strings that held escapes redacted too
    local decoded = res.json
    if type(decoded) ~= "table" then
        fail(ctx, "integration", format("%s answered %d with a body that is not %s: %s", p.name, res.status,
            res.json_error and "JSON (" .. res.json_error .. ")" or "a JSON object", excerpt(answer_text(res))),
            { status = res.status })
    end
    local out, why = plugin_call(ctx, "decode", ctx.op, decoded, ctx.preq, ctx.pcfg)
    if type(out) ~= "table" then
        fail(ctx, "integration", format("%s: cannot decode the answer (%s): %s", p.name,
            type(why) == "string" and excerpt(why) or "decode returned nothing", excerpt(answer_text(res))),
            { status = res.status })
    end
    return checked_result(ctx, out)
end

------------------------------------------------------------ an attempt

-- One admitted attempt: encode, send, classify, decode.
local function exchange(ctx, remaining)
    local opts = encode(ctx, remaining)
    if ctx.op == "stream" then
        local st = stream.receive(ctx, opts)
        local res = send(ctx, opts, st)
        classify(ctx, res, stream.error_body(st))
        return stream.result(ctx, st)
    end
    local res = send(ctx, opts)
    classify(ctx, res, res.status >= 300 and redact_json_text(res.body) or nil)
    return decode(ctx, res)
end

-- The part of an attempt after the limiter admitted it: the time left
-- after the queue (none left is the caller's deadline, not the provider's
-- health: refused before the breaker counts it); then through the breaker
-- (which may take a half-open probe).
local function admitted(ctx, remaining, waited)
    if remaining then
        remaining = remaining - waited
        if remaining <= 0 then fail(ctx, "timeout", "deadline reached before the attempt") end
    end
    local br = ctx.inst.breaker
    if not br then return exchange(ctx, remaining) end
    local ok, refused = br:admit()
    -- It opened (or its half-open probe is out) while this call waited in
    -- the queue: the admitted request goes to the next waiter (attempt).
    if not ok then error(refused, 0) end
    local sb = ctx.inst.shared_breaker
    if not sb then return br:run(exchange, ctx, remaining) end
    local rok, res = pcall(br.run, br, exchange, ctx, remaining)
    sb:after(ctx.probe, rok, res)
    ctx.probe = nil
    if not rok then error(res, 0) end
    return res
end

local function attempt(ctx, _, remaining)
    local waited = admit(ctx)
    -- This attempt now holds a request and the estimated tokens: a failed
    -- attempt gives back the tokens it did not use (all of them, but a
    -- broken stream's partial usage), so retries do not count the estimate
    -- again and again, and the request when nothing was sent (refused by
    -- the breaker or the deadline, a plugin's encode that failed).
    ctx.sent = false
    local ok, out = pcall(admitted, ctx, remaining, waited)
    if not ok then
        local inst = ctx.inst
        local pt = type(out) == "table" and out.partial
        local u = pt and pt.usage
        if not u and ctx.sent and errors.is(out) and out.kind == "cancelled" and (tonumber(out.wire) or 0) > 0 then
            -- abandoned while on the wire (a hedge that lost, a caller that
            -- gave up): the provider read the request. Its input is counted
            -- (an estimate: the answer that would say is gone).
            u = { input = ctx.input_estimate, output = 0 }
            pt = pt or {}
            out.partial, pt.usage, pt.estimated = pt, u, true
        end
        if u then
            -- what a failed attempt used (a broken stream's usage, or the
            -- estimate above) is the call's too: tokens and cost recorded,
            -- and said on the error (partial.cost) for whoever accounts it
            local before = ctx.call.cost or 0
            ctx.call:usage(u.input, u.output)
            pt.cost = (ctx.call.cost or 0) - before
        end
        inst.limiter:reconcile(ctx.tokens, u and (u.input + u.output) or 0)
        if inst.shared then
            inst.shared:reconcile(ctx.shared_tokens or ctx.tokens, u and (u.input + u.output) or 0, ctx.tokens)
        end
        if not ctx.sent then inst.limiter:refund(ctx.requests) end
        error(out, 0)
    end
    return out
end

------------------------------------------------------------ record

-- A call that succeeded: real token usage reconciled with the limiter and
-- recorded (tokens, cost), the result completed, the call finished.
local function record(ctx, out, t0)
    local inst, call = ctx.inst, ctx.call
    local u = out.usage
    if u then
        inst.limiter:reconcile(ctx.tokens, u.input + u.output)
        if inst.shared then inst.shared:reconcile(ctx.shared_tokens or ctx.tokens, u.input + u.output, ctx.tokens) end
        call:usage(u.input, u.output)
    end
    out.usage = u or { input = 0, output = 0 }
    out.provider = inst.name
    out.model = out.model or ctx.model_name
    out.attempts = call.attempts
    out.call_id = call.id
    local p = ctx.plugin
    out.plugin_version = p.version and tostring(p.version) or tostring(ctx.entry.n)
    call:finish()
    out.latency = now() - t0
    out.ttft = call.ttft
    out.cost = call.cost
    return out
end

-- A call that failed: its error completed, the call finished; raises it.
local function record_failure(ctx, err)
    local call = ctx.call
    if errors.is(err) then
        err.provider = err.provider or ctx.inst.name
        err.model = err.model or ctx.model_name
        err.attempts = err.attempts or call.attempts
        err.call_id = call.id
    end
    call:finish(err)
    error(err, 0)
end

------------------------------------------------------------ a call

-- weft.retry's attempt function: the run's options are the call's ctx.
local function attempt_of(n, remaining, _, ctx) return attempt(ctx, n, remaining) end

--- Run one call of `model` through the stages, its attempts retried by
--- the provider's policy: the normalized result, or raises an error value.
---@param model weft.Model
---@param op "complete"|"stream"|"embed"
---@param req table the normalized request (normalize; embed's own for embed)
---@param on_event? fun(ev: table): boolean? the stream's callback
---@param owned? boolean req is this call's alone and plain data (normalize's second result): the plugin gets it without a copy
---@return weft.Result
function M.run(model, op, req, on_event, owned)
    local ctx = resolve(model, op, req, on_event, owned)
    req = nil -- (held by nothing for the rest of the call: ctx has what is needed of it)
    local t0 = now()
    -- ctx is the run's options too (its call and deadline): no closure
    -- and no options table per call
    local ok, out = pcall(retry.run, ctx.inst.policy, attempt_of, ctx)
    if not ok then record_failure(ctx, out) end
    return record(ctx, out, t0)
end

return M
