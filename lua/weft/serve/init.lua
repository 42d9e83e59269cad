--- weft.serve: an OpenAI- and Anthropic-compatible gateway over weft's
--- models and policies (`weft serve`).
---
--- Every program that speaks the OpenAI or Anthropic API gets weft's limits,
--- retries, fallbacks, cache, secrets and metrics by pointing its base URL
--- here. Each request runs through `weft.model(name)` (an alias or policy
--- of the configuration, or `provider/model` when allowed); the answer, the
--- stream events and the errors are written in the client's dialect
--- whatever provider served them.
---
---   local gw = require("weft.serve").start { config = "gateway.lua", port = 0 }
---   gw.url, gw:reload(), gw:drain(30), gw:close()
---
--- The configuration file returns weft.configure's table plus `gateway`:
---   keys                   virtual keys (weft.serve.keys); none: no
---                          authentication, refused on a non-loopback address
---   allow_provider_models  true: clients may name "provider/model" (false)
---   models                 the names served (default: every alias and policy
---                          model of `models`)
---   max_body_size          request body bytes (8 MiB; 413 above)
---   max_header_size        request head bytes (32 KiB; 431 above)
---   timeout                seconds a call may take, all attempts (none)
---   drain_timeout          seconds SIGTERM waits for calls in flight (30)
---   hook_timeout           seconds a hook may take (10)
---   stream_head_after      seconds a stream waits for its first token before
---                          its head goes out, with a ping every 15 s (5;
---                          false: the head waits for the first token)
---   watch                  reload when the file changes (true)
---   host, port             where to listen (127.0.0.1, 8080; flags win)
---
--- Endpoints: POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models
--- (OpenAI); POST /v1/messages (Anthropic; GET /v1/models answers in
--- Anthropic's form when the request has an `anthropic-version` header);
--- GET /healthz (alive), /readyz (configuration loaded, not draining, and a
--- provider that is not known to be down: its breaker not open), /metrics.
---
--- Errors carry `x-weft-error-kind` (weft's error kind, or the gateway's:
--- unauthenticated, forbidden, model_not_found, not_found, too_large,
--- unavailable, internal) and, when weft knows the wait, `Retry-After`.
--- Answers carry `x-weft-call-id`, `x-weft-provider` and `x-weft-attempts`.
local json = require "weft.json"
local errors = require "weft.error"
local log = require "weft.log"
local metrics = require "weft.metrics"
local secrets = require "weft.secrets"
local model_mod = require "weft.model"
local keys_mod = require "weft.serve.keys"
local OPENAI = require "weft.serve.openai"
local ANTHROPIC = require "weft.serve.anthropic"

local type, pairs, ipairs, tostring, pcall, format, ceil, floor, max =
    type, pairs, ipairs, tostring, pcall, string.format, math.ceil, math.floor, math.max
local sort, concat = table.sort, table.concat

local M = {}

M.DEFAULT_PORT = 8080
M.DEFAULTS = { max_body_size = 8 * 1024 * 1024, max_header_size = 32 * 1024, drain_timeout = 30, hook_timeout = 10,
               stream_head_after = 5 }

local GATEWAY_KEYS = { keys = true, allow_provider_models = true, models = true, max_body_size = true,
                       max_header_size = true, timeout = true, drain_timeout = true, hook_timeout = true,
                       stream_head_after = true,
                       watch = true, host = true, port = true }

-- ------------------------------------------------------------ metrics

local m_requests = metrics.counter("weft_gateway_requests_total",
    "Gateway requests by virtual key, dialect, endpoint and status.", { "key", "dialect", "endpoint", "status" })
local m_seconds = metrics.histogram("weft_gateway_request_duration_seconds",
    "Gateway request duration, to the last byte of the answer.", { "dialect", "endpoint" })
local m_tokens = metrics.counter("weft_gateway_tokens_total", "Tokens of gateway calls by virtual key.",
    { "key", "direction" })
local m_cost = metrics.counter("weft_gateway_cost_usd_total", "USD cost of gateway calls by virtual key.", { "key" })
local m_gone = metrics.counter("weft_gateway_client_gone_total",
    "Gateway calls cancelled because the client went away.", { "key" })
local m_budget = metrics.gauge("weft_gateway_budget_remaining_usd", "What is left of a virtual key's budget.",
    { "key", "period" })
local m_inflight = metrics.gauge("weft_gateway_in_flight", "Gateway requests being answered.")
local record = metrics.record
local owned_call = model_mod.owned_call
local function owned_stream(m, req, on_event) return owned_call(m, "stream", req, on_event) end
-- the gauge is set when the metrics are read, not on every request
local live = setmetatable({}, { __mode = "k" })
metrics.collect(live, function(gws)
    local n = 0
    for g in pairs(gws) do n = n + g.active end
    m_inflight:set(n)
end)
local m_reloads = metrics.counter("weft_gateway_reloads_total", "Configuration reloads by outcome.", { "outcome" })

-- ------------------------------------------------------ configuration

local function is_loopback(host)
    return host == "127.0.0.1" or host == "::1" or host == "localhost" or (host or ""):match("^127%.") ~= nil
end

local function check_gateway(g)
    if g == nil then return {} end
    if type(g) ~= "table" then error("gateway: expected a table", 0) end
    for k in pairs(g) do
        if not GATEWAY_KEYS[k] then
            error(format("gateway.%s: unknown key (keys, models, allow_provider_models, max_body_size, "
                .. "max_header_size, timeout, drain_timeout, hook_timeout, stream_head_after, watch, host, port)",
                tostring(k)), 0)
        end
    end
    for _, k in ipairs { "max_body_size", "max_header_size", "timeout", "drain_timeout", "hook_timeout",
                         "stream_head_after" } do
        local v = g[k]
        if v ~= nil and not (k == "stream_head_after" and v == false)
            and (type(v) ~= "number" or v <= 0 or v ~= v or v == math.huge) then
            error(format("gateway.%s: expected a number > 0", k), 0)
        end
    end
    if g.models ~= nil and type(g.models) ~= "table" then error("gateway.models: expected a list of names", 0) end
    return g
end

--- Load a gateway configuration file: returns weft.configure's part and
--- the `gateway` part (checked). Raises a string naming the file.
function M.load(path)
    local chunk, err = loadfile(path)
    if not chunk then error("config: " .. tostring(err), 0) end
    local ok, cfg = pcall(chunk)
    if not ok then error(format("config: %s: %s", path, tostring(cfg)), 0) end
    if type(cfg) ~= "table" then error(format("config: %s must return a table, got %s", path, type(cfg)), 0) end
    local rest = {}
    for k, v in pairs(cfg) do if k ~= "gateway" then rest[k] = v end end
    local ok2, g = pcall(check_gateway, cfg.gateway)
    if not ok2 then error(format("config: %s: %s", path, tostring(g)), 0) end
    return rest, g
end

-- The names served: the configuration's aliases and policy models, or
-- the gateway's own list.
local function served_names(rest, g)
    local set, list = {}, {}
    local src = g.models
    if src then
        for i, n in ipairs(src) do
            if type(n) ~= "string" then error(format("gateway.models[%d]: expected a string", i), 0) end
            set[n] = true
        end
    else
        for n in pairs(rest.models or {}) do set[n] = true end
    end
    for n in pairs(set) do list[#list + 1] = n end
    sort(list)
    return set, list
end

-- Apply a configuration: weft.configure, then the gateway's own state.
-- Everything that can be refused is checked before weft.configure runs, so
-- a configuration that raises leaves the running one as it was.
local function build_state(gw, rest, g, where)
    local set, list = served_names(rest, g)
    local keys = keys_mod.new(g.keys, gw.state and gw.state.keys, gw.clock)
    if keys.count == 0 and not is_loopback(gw.host) then
        error(format("gateway: no keys configured: refusing to serve on %s (a non-loopback address) without "
            .. "authentication; define gateway.keys", tostring(gw.host)), 0)
    end
    -- (weft.configure adds to what was configured before: what this
    -- configuration serves is what its own file names)
    for n in pairs(set) do
        local prov = n:match("^([%w_%-]+)/.")
        local known = (rest.models and rest.models[n] ~= nil)
            or (prov and rest.providers and rest.providers[prov] ~= nil)
        if not known then
            error(format("gateway.models: '%s' is neither a model of the configuration nor provider/model of a "
                .. "configured provider", n), 0)
        end
    end
    model_mod.configure(rest, where)
    local cfg = model_mod.config()
    keys_mod.share(keys, cfg.redis)
    local st = { served = set, list = list, keys = keys, g = g, models = {}, providers = {}, aliases = {},
                 generation = (gw.state and gw.state.generation or 0) + 1 }
    for p in pairs(rest.providers or {}) do st.providers[p] = true end
    for a in pairs(rest.models or {}) do st.aliases[a] = true end
    for _, f in ipairs { "max_body_size", "max_header_size", "drain_timeout", "hook_timeout", "stream_head_after" } do
        st[f] = g[f] or M.DEFAULTS[f]
    end
    if g.stream_head_after == false then st.stream_head_after = nil end -- (the head waits for the first token)
    local old = gw.state
    if old and (st.max_body_size ~= old.max_body_size or st.max_header_size ~= old.max_header_size) then
        log.warn("gateway: max_body_size and max_header_size take effect when weft serve starts again")
        st.max_body_size, st.max_header_size = old.max_body_size, old.max_header_size
    end
    st.timeout = g.timeout
    st.allow_provider_models = g.allow_provider_models == true
    return st
end

-- ------------------------------------------------------------ answers

local function retry_after_of(e)
    local ra = errors.is(e) and e.retry_after
    if type(ra) == "number" and ra > 0 and ra < 1e9 then return tostring(max(1, ceil(ra))) end
    return nil
end

local function fail(d, kind, message, extra)
    local status, body = d.error(kind, secrets.redact(tostring(message)))
    local h = { ["content-type"] = "application/json", ["x-weft-error-kind"] = kind }
    if extra then for k, v in pairs(extra) do h[k] = v end end
    return { status = status, headers = h, body = body }
end

-- The gateway's own failures (a hook that failed or timed out) as values
-- the answer functions understand, next to weft's error values.
local function gw_error(kind, message) return { gw_kind = kind, message = message } end

local CLIENT_KINDS = { invalid_request = true, rate_limited = true, quota_exhausted = true, auth = true,
                       transient = true, integration = true, timeout = true, circuit_open = true, cancelled = true }

-- The kind a client is told of for error `e`.
local function kind_of(e)
    if type(e) == "table" and e.gw_kind then return e.gw_kind end
    if errors.is(e) then
        if CLIENT_KINDS[e.kind] then return e.kind end
        if e.kind == "budget_exceeded" then return "integration" end
    end
    return "internal"
end

-- The message a client gets for a failed call: what weft said, less what
-- is the gateway's own business (its provider credentials).
local UPSTREAM = { transient = "failed", integration = "answered what weft could not use", timeout = "timed out",
                   rate_limited = "is rate limiting this gateway", quota_exhausted = "says this gateway's quota is spent",
                   circuit_open = "is unavailable (its circuit breaker is open)" }

local function client_message(e)
    if type(e) == "table" and e.gw_kind then return e.message end
    if not errors.is(e) then return "the gateway failed to answer" end
    if e.kind == "auth" then
        return format("the gateway's credentials for provider %s were refused", tostring(e.provider or "?"))
    end
    if e.kind == "cancelled" then return "the call was cancelled (the gateway is shutting down)" end
    local what = e.provider and UPSTREAM[e.kind] -- (a hook's or the gateway's own errors are as raised)
    if what then
        -- the provider's own words may name hosts, organizations or
        -- accounts of the gateway's: kept for its log, not the client
        local m = format("the provider %s %s", tostring(e.provider or "?"), what)
        if e.status then m = m .. format(" (HTTP %d)", e.status) end
        if e.attempts and e.attempts > 1 then m = m .. format(" after %d attempts", e.attempts) end
        return m
    end
    return tostring(e.message or e.kind)
end

-- The error answer for a failed call or hook.
local function fail_with(d, e)
    return fail(d, kind_of(e), client_message(e), { ["retry-after"] = retry_after_of(e) })
end

local function ok_headers(r, ctype)
    return { ["content-type"] = ctype, ["x-weft-call-id"] = tostring(r.call_id or ""),
             ["x-weft-provider"] = tostring(r.provider or ""), ["x-weft-attempts"] = tostring(r.attempts or 1) }
end

-- ------------------------------------------------------------- hooks

-- Run hook `fn` in a task of its own, at most `limit` seconds. Returns
-- its results, or raises the error the client should get: a weft error
-- value the hook raised is the client's; anything else is the gateway's.
local function run_hook(which, fn, limit, ...)
    local t = weft.spawn(fn, ...)
    local ok, a, b = pcall(t.wait, t, limit)
    if ok then return a, b end
    local still = t:cancel()
    if still and errors.is(a) and a.kind == "timeout" then
        log.error("gateway hook timed out", { hook = which, seconds = limit })
        error(gw_error("unavailable", format("the gateway's %s hook did not finish in %g s", which, limit)), 0)
    end
    if errors.is(a) then error(a, 0) end -- (cancelled too: the request is, not the hook)
    log.error("gateway hook failed", { hook = which, error = tostring(a) })
    error(gw_error("internal", format("the gateway's %s hook failed", which)), 0)
end

-- ------------------------------------------------------------ handler

local function dialect_of(req)
    local p, m = req.path, req.method
    local ep, id = ANTHROPIC.route(m, p)
    if ep == "chat" then return ANTHROPIC, ep end
    if ep and req.headers["anthropic-version"] then return ANTHROPIC, ep, id end
    ep, id = OPENAI.route(m, p)
    if ep then return OPENAI, ep, id end
    return nil
end

local function visible(st, k, list)
    local out = {}
    for _, n in ipairs(list) do if not k or keys_mod.allows(k, n) then out[#out + 1] = n end end
    return out
end

local function estimate_tokens(body, r)
    return ceil(#body / 4) + (r.max_tokens or 256)
end

local function usage_of(r)
    local u = type(r) == "table" and r.usage or nil
    if type(u) ~= "table" then return 0, 0 end
    return tonumber(u.input) or 0, tonumber(u.output) or 0
end

-- A request's admission against its key (`adm`: {k, kname, est, booked,
-- settled}) is settled exactly once: `settle` with what the call used (a
-- result, or an error's `partial`: a broken or abandoned stream's usage,
-- or the input of a request the provider read), or `refund` when nothing
-- was sent. The handler refunds what a Lua error left unsettled.
local function settle(st, adm, r)
    if adm.settled then return end
    adm.settled = true
    -- what every target call used (a policy's policy_usage), else the
    -- answer's usage, else a failure's partial usage
    local i, o, c = 0, 0, 0
    if type(r) == "table" then
        local pu = r.policy_usage
        if type(pu) == "table" then
            i, o, c = tonumber(pu.input) or 0, tonumber(pu.output) or 0, tonumber(pu.cost) or 0
        else
            local used = r
            if not r.usage and type(r.partial) == "table" then used = r.partial end
            i, o = usage_of(used)
            c = type(used.cost) == "number" and used.cost or 0
        end
    end
    local k, kname = adm.k, adm.kname
    if k and k.limits then keys_mod.reconcile(st.keys, k, adm.booked, adm.est, i + o) end
    if k then
        keys_mod.spend(st.keys, k, c)
        local rem = keys_mod.remaining(st.keys, k)
        if rem then
            if rem.day then m_budget:set(rem.day, kname, "day") end
            if rem.month then m_budget:set(rem.month, kname, "month") end
        end
    end
    if i > 0 then m_tokens:inc(i, kname, "input") end
    if o > 0 then m_tokens:inc(o, kname, "output") end
    if c > 0 then m_cost:inc(c, kname) end
end

local function refund(st, adm)
    if adm.settled then return end
    adm.settled = true
    if adm.k and adm.k.limits then keys_mod.refund(st.keys, adm.k, adm.booked, adm.est) end
end

-- Whether the provider of `model` (a provider model, not a policy) speaks
-- dialect `d` (its plugin, or the plugin it extends).
local function serves_natively(model, d)
    if getmetatable(model) == nil or not model.provider or model.policy then return false end
    local ok, inst = pcall(model_mod.provider, model.provider)
    local p = ok and inst and inst.entry and inst.entry.plugin
    return p ~= nil and (d.PLUGINS[p.name] == true or d.PLUGINS[p.extends or false] == true)
end

-- Whether `name` may be served: a name of the configuration, or with
-- allow_provider_models a "provider/model" of a configured provider (never
-- a shipped plugin's defaults: its vendor URL and environment key).
local function servable(st, name)
    if st.served[name] then return true end
    if not st.allow_provider_models then return false end
    local prov = name:match("^([%w_%-]+)/.")
    return prov ~= nil and st.providers[prov] == true and not st.aliases[name]
end

-- The fields of request `b` that weft's form has no place for and that
-- change the answer (`d.NATIVE` marks them true), or nil.
local function native_fields(b, marks, is_default)
    local out
    for f, matters in pairs(marks) do
        local v = b[f]
        -- a value that asks for nothing (false, 0, {}, the default) is no request
        if v ~= nil and v ~= json.null and not is_default(f, v) then
            if type(matters) == "string" then
                return nil, format("%s: %s are not supported by this gateway", f, matters)
            end
            if matters then
                out = out or {}
                out[f] = v
            end
        end
    end
    return out
end

local stream_call -- below

local function not_found(d, name)
    return fail(d, "model_not_found", format("The model `%s` does not exist or you do not have access to it.", name))
end

local function handle(gw, req, res, d, ep, id, adm)
    local st = gw.state
    if not d then
        if req.path == "/healthz" then return { status = 200, headers = { ["content-type"] = "text/plain" }, body = "ok\n" } end
        if req.path == "/readyz" then return gw:ready_answer() end
        if req.path == "/metrics" and req.method == "GET" then
            return { status = 200, headers = { ["content-type"] = "text/plain; version=0.0.4" }, body = metrics.text() }
        end
        return fail(OPENAI, "not_found", format("Unknown request URL: %s %s", req.method, req.path)), "-", "unknown"
    end
    -- the virtual key
    local k
    if st.keys.count > 0 then
        local presented = d.key_of(req.headers)
        k = presented and st.keys:find(presented)
        if not k then
            return fail(d, "unauthenticated", presented and "Invalid API key." or "Missing API key."),
                "unauthenticated", ep
        end
    end
    local kname = k and k.name or "-"
    if ep == "models" then
        return { status = 200, headers = { ["content-type"] = "application/json" },
                 body = d.models_response(visible(st, k, st.list)) }, kname, ep
    end
    if ep == "model" then
        if st.served[id] and (not k or keys_mod.allows(k, id)) then
            return { status = 200, headers = { ["content-type"] = "application/json" }, body = d.model_response(id) },
                kname, ep
        end
        return not_found(d, id), kname, ep
    end
    -- the request body
    local ok, b = pcall(json.decode, req.body)
    if not ok or type(b) ~= "table" or b[1] ~= nil then
        return fail(d, "invalid_request", "The request body is not a JSON object."), kname, ep
    end
    local name = b.model
    if type(name) ~= "string" or name == "" then
        return fail(d, "invalid_request", "model: a model name is required"), kname, ep
    end
    if not servable(st, name) then return not_found(d, name), kname, ep end
    if k and not keys_mod.allows(k, name) then
        if d == ANTHROPIC then
            return fail(d, "forbidden", format("This API key is not allowed to use the model `%s`.", name)), kname, ep
        end
        return not_found(d, name), kname, ep
    end
    if k then
        local period, budget, spent = keys_mod.over_budget(st.keys, k)
        if period then
            return fail(d, "quota_exhausted", format("This API key has spent its %s budget (%.4f of %.4f USD).",
                period, spent, budget)), kname, ep
        end
    end
    local r, why, native
    local texts
    if ep == "embeddings" then
        texts, why = d.embed_input(b)
    else
        r, why = d.chat_request(b)
        if not why then native, why = native_fields(b, d.NATIVE, d.is_default) end
    end
    if why then return fail(d, "invalid_request", why), kname, ep end
    local est = estimate_tokens(req.body, r or {})
    adm.k, adm.kname, adm.est, adm.st = k, kname, est, st
    if k and k.limits then
        local okl, e = pcall(keys_mod.admit, st.keys, k, est, k.priority)
        if not okl then
            adm.settled = true -- (nothing was admitted)
            if errors.is(e) and e.kind == "rate_limited" then
                local ra = retry_after_of(e)
                return fail(d, "rate_limited", format("Rate limit reached for API key '%s'. Please try again in %ss.",
                    kname, ra or "1"), { ["retry-after"] = ra or "1" }), kname, ep
            end
            return fail_with(d, e), kname, ep
        end
        adm.booked = e
    end
    local call_req, stream = r or texts, b.stream == true
    local hooks, ctx = gw.hooks, nil
    if hooks then
        -- what a hook sees: the client's headers without its credentials
        local hdrs = {}
        for hk, hv in pairs(req.headers) do
            if hk ~= "authorization" and hk ~= "x-api-key" then hdrs[hk] = hv end
        end
        ctx = { dialect = d.name, endpoint = ep, key = k and k.name or nil, model = name, request = call_req,
                stream = stream, headers = hdrs }
    end
    if hooks and hooks.before then
        local okh, e = pcall(run_hook, "before", hooks.before, st.hook_timeout, ctx)
        if not okh then
            refund(st, adm)
            return fail_with(d, e), kname, ep
        end
        -- a hook may route only to what the key may use and the gateway serves
        if type(ctx.model) == "string" and ctx.model ~= name then
            if not servable(st, ctx.model) or (k and not keys_mod.allows(k, ctx.model)) then
                refund(st, adm)
                log.error("gateway before hook routed to a model it may not use", { model = ctx.model, key = kname })
                return fail(d, "internal", "the gateway's before hook failed"), kname, ep
            end
            name = ctx.model
        end
        call_req = ctx.request
    end
    -- the model objects of this configuration, made once
    local model = st.models[name]
    if model == nil then
        local okm, m = pcall(model_mod.model, name)
        if not okm then
            refund(st, adm)
            return not_found(d, name), kname, ep
        end
        model = m
        st.models[name] = m
    end
    if native then
        -- fields weft's form has no place for that change the answer: the
        -- provider's body fields when it speaks the client's dialect, else
        -- refused
        if serves_natively(model, d) then
            local extra = call_req.extra or {}
            for f, v in pairs(native) do extra[f] = v end
            call_req.extra = extra
        else
            refund(st, adm)
            local f = next(native)
            return fail(d, "invalid_request", format("%s: not supported for the model `%s` by this gateway "
                .. "(it is only passed on to a provider speaking the %s API)", f, name, d.name)), kname, ep
        end
    end
    if ep ~= "embeddings" then
        if k and k.priority and call_req.priority == nil then call_req.priority = k.priority end
        if st.timeout and call_req.timeout == nil then call_req.timeout = st.timeout end
    end
    if not res:cancel_on_gone() then -- the client already left
        refund(st, adm)
        m_gone:inc(1, kname)
        return nil, kname, ep, "499"
    end
    local shown = b.model -- the name the client asked for
    if stream and ep == "chat" then
        local answer, status = stream_call(gw, d, res, model, call_req, ctx, adm, shown, b, name)
        return answer, kname, ep, status
    end
    local okc, result
    if ep == "embeddings" then
        okc, result = pcall(model.embed, model, call_req, { timeout = st.timeout, priority = k and k.priority })
    elseif hooks then
        okc, result = pcall(model.complete, model, call_req)
    else
        -- the request is this call's own plain data
        okc, result = pcall(owned_call, model, "complete", call_req)
    end
    -- what the call used is the key's, whatever happens to the answer now
    settle(st, adm, result)
    if okc and hooks and hooks.after then
        local okh, e = pcall(run_hook, "after", hooks.after, st.hook_timeout, ctx, result)
        if not okh then okc, result = false, e end
    end
    if not okc then
        if res:gone() then
            m_gone:inc(1, kname)
            return nil, kname, ep, "499"
        end
        if kind_of(result) == "internal" and not (type(result) == "table" and result.gw_kind) then
            log.error("gateway call failed", { model = name, error = tostring(result) })
        end
        return fail_with(d, result), kname, ep
    end
    local body = ep == "embeddings" and d.embed_response(result, shown, b) or d.chat_response(result, shown)
    return { status = 200, headers = ok_headers(result, "application/json"), body = body }, kname, ep
end

-- A streamed chat: the head is sent with the first piece, so a call that
-- fails before it still gets a whole error answer.
function stream_call(gw, d, res, model, call_req, ctx, adm, shown, b, name)
    local st, kname = adm.st, adm.kname -- (the state the request began with, whatever a reload did since)
    local s = d.stream(shown, b)
    local started, gone, busy = false, false, false
    local head = { ["content-type"] = "text/event-stream; charset=utf-8", ["cache-control"] = "no-cache" }
    -- (two tasks may write: this one and the waiting-for-the-first-token
    -- pinger below; one write at a time)
    local function send(chunk)
        while busy do weft.sleep(0.002) end
        if gone then return false end
        busy = true
        local ok, wrote = pcall(function()
            if not started then
                started = true
                if not res:start(200, head) then return false end
            end
            return res:write(chunk) and true or false
        end)
        busy = false
        if not ok then error(wrote, 0) end
        if not wrote then gone = true end
        return wrote
    end
    -- A first token that is slow to come (a reasoning model, a queue): the
    -- head goes out after stream_head_after seconds, then a ping every 15 s,
    -- so that no idle timeout on the way cuts the stream; a failure after
    -- that is the dialect's error event.
    local texting, pinger = false, nil
    if st.stream_head_after then
        pinger = weft.spawn(function()
            weft.sleep(st.stream_head_after)
            if texting or gone then return end
            send(s.open())
            while not texting and not gone do
                weft.sleep(15)
                if not texting then send(s.ping()) end
            end
        end)
    end
    local restarted = false
    local okc, result = pcall(ctx and model.stream or owned_stream, model, call_req, function(ev)
        if ev.type == "text" and ev.text ~= "" then
            texting = true
            return send(s.text(ev.text))
        end
        -- a policy starting over on another target (stream_failure =
        -- "restart"): what the client has cannot be taken back
        if ev.type == "restart" and started then
            restarted = true
            return false
        end
        return true
    end)
    texting = true
    if pinger then pinger:cancel() end
    while busy do weft.sleep(0.002) end
    settle(st, adm, result)
    if restarted and not gone then
        send(s.fail("transient", "the stream failed after part of the answer was sent and the policy started "
            .. "it over on another target; use stream_failure = \"continue\" or \"error\" for streams through "
            .. "this gateway"))
        res:finish()
        return nil, "502"
    end
    if okc and ctx and gw.hooks and gw.hooks.after then
        local okh, e = pcall(run_hook, "after", gw.hooks.after, st.hook_timeout, ctx, result)
        if not okh then okc, result = false, e end
    end
    if gone or res:gone() or (okc and result.aborted) then
        m_gone:inc(1, kname)
        return nil, "499"
    end
    if not okc then
        local kind = kind_of(result)
        if kind == "internal" and not (type(result) == "table" and result.gw_kind) then
            log.error("gateway stream failed", { model = name, error = tostring(result) })
        end
        if not started then return fail_with(d, result), nil end
        send(s.fail(kind, client_message(result)))
        res:finish()
        return nil, "502"
    end
    if not started then head["x-weft-call-id"] = tostring(result.call_id or "") end
    if send(s.finish(result)) then res:finish() end
    return nil, "200"
end

-- ------------------------------------------------------------ gateway

local Gateway = {}
Gateway.__index = Gateway

function Gateway:ready_answer()
    local why
    if self.draining then why = "draining"
    elseif not self.state then why = "no configuration" end
    if not why then
        local any, known = false, 0
        for pname in pairs(model_mod.config().providers) do
            known = known + 1
            local okp, inst = pcall(model_mod.provider, pname)
            local br = okp and inst and inst.breaker
            local state = br and br.state and br:state()
            if not (type(state) == "table" and state.state == "open") then any = true break end
        end
        if known > 0 and not any then why = "every provider's breaker is open" end
    end
    if why then
        return { status = 503, headers = { ["content-type"] = "text/plain" }, body = "not ready: " .. why .. "\n" }
    end
    return { status = 200, headers = { ["content-type"] = "text/plain" }, body = "ready\n" }
end

-- The series of the request counter and duration of a key, dialect,
-- endpoint and status, made once (label lookups cost more than the update).
local series = {}
local function series_of(kname, dn, ep, status)
    local a = series[kname]
    if not a then a = {} series[kname] = a end
    local b = a[dn]
    if not b then b = {} a[dn] = b end
    local c = b[ep]
    if not c then c = { seconds = m_seconds:labels(dn, ep) } b[ep] = c end
    local s = c[status]
    if not s then s = m_requests:labels(kname, dn, ep, status) c[status] = s end
    return s, c.seconds
end

-- The server's handler: counts, times and labels every request.
local function handler_of(gw)
    return function(req, res)
        local t0 = weft.now()
        local task = weft.current()
        local d, ep, id = dialect_of(req)
        gw.tasks[task] = true
        gw.active = gw.active + 1
        local adm = { kname = "-" }
        local ok, answer, kname, ep2, status = pcall(handle, gw, req, res, d, ep, id, adm)
        gw.tasks[task] = nil
        gw.active = gw.active - 1
        if not ok then
            refund(adm.st or gw.state, adm)
            if errors.is(answer) and answer.kind == "cancelled" then
                if res:gone() then m_gone:inc(1, adm.kname) end
                error(answer, 0)
            end
            log.error("gateway request failed", { path = req.path, error = tostring(answer) })
            answer = fail(d or OPENAI, "internal", "the gateway failed to answer")
            kname = adm.kname
        end
        if d then
            status = status or (answer and tostring(answer.status or 200)) or "200"
            local sr, sd = series_of(kname or "-", d.name, ep2 or ep, status)
            record(sr, 1, sd, weft.now() - t0)
        end
        return answer
    end
end

--- Load (again) the configuration file and the hook script; the running
--- state is replaced only when both load. Returns true, or false and why.
function Gateway:reload()
    local ok, why = pcall(function()
        local rest, g
        if self.config_path then
            rest, g = M.load(self.config_path)
        else
            rest, g = self.config_table.rest, check_gateway(self.config_table.gateway)
        end
        local hooks = self.hooks
        if self.script_path then hooks = M.load_script(self.script_path) end
        local where = self.config_path and model_mod.source_of(self.config_path, 1) or nil
        local st = build_state(self, rest, g, where)
        self.state, self.hooks = st, hooks
    end)
    if ok then
        m_reloads:inc(1, "success")
        return true
    end
    m_reloads:inc(1, "error")
    return false, tostring(why)
end

--- Stop accepting, wait at most `bound` seconds (the configuration's
--- drain_timeout) for the calls in flight, then cancel the rest. Returns
--- how many finished and how many were cancelled.
function Gateway:drain(bound)
    bound = bound or (self.state and self.state.drain_timeout) or M.DEFAULTS.drain_timeout
    self.draining = true
    if self.server then self.server:close() end
    local start, waiting = weft.now(), self.active
    while self.active > 0 and weft.now() - start < bound do weft.sleep(0.02) end
    local cancelled = 0
    for t in pairs(self.tasks) do
        if t:cancel() then cancelled = cancelled + 1 end
    end
    local t1 = weft.now()
    while self.active > 0 and weft.now() - t1 < 5 do weft.sleep(0.01) end
    if self.state then self.state.keys:flush() end -- (the spend still on its way to Redis)
    return waiting - cancelled, cancelled
end

function Gateway:close()
    self.draining = true
    if self.server then self.server:close() end
    if self.watchers then for _, w in ipairs(self.watchers) do w:close() end end
end

--- Load a hook script: a Lua file returning {before = fn?, after = fn?}.
--- `before(ctx)` runs before the call: it may change `ctx.request` (weft's
--- request form), `ctx.model` (route elsewhere), or raise a weft.error to
--- refuse the request with that error (a string error is a 500). `after(ctx,
--- result)` runs after it, may change `result` (not what a stream already
--- sent) or raise the same way. Each runs in a task of its own, for at most
--- hook_timeout seconds.
function M.load_script(path)
    local chunk, err = loadfile(path)
    if not chunk then error("script: " .. tostring(err), 0) end
    local ok, hooks = pcall(chunk)
    if not ok then error(format("script: %s: %s", path, tostring(hooks)), 0) end
    if hooks == nil then hooks = {} end
    if type(hooks) ~= "table" then error(format("script: %s must return a table {before =, after =}", path), 0) end
    for k, v in pairs(hooks) do
        if (k ~= "before" and k ~= "after") or type(v) ~= "function" then
            error(format("script: %s: unknown or non-function entry '%s' (before, after)", path, tostring(k)), 0)
        end
    end
    return hooks
end

--- Start the gateway. `opts`: `config` (a file path) or `cfg` (a table as
--- the file returns), `script` (a hook file) or `hooks`, `host`, `port`,
--- `clock` (wall seconds, for the budgets), `watch` (reload on file change;
--- default the configuration's, true). Raises a string on a bad
--- configuration, an error value when the address cannot be used.
function M.start(opts)
    local gw = setmetatable({ tasks = {}, active = 0, clock = opts.clock, watchers = {} }, Gateway)
    live[gw] = true
    local rest, g
    if opts.config then
        gw.config_path = opts.config
        rest, g = M.load(opts.config)
    else
        gw.config_table = { rest = {}, gateway = opts.cfg and opts.cfg.gateway }
        for k, v in pairs(opts.cfg or {}) do if k ~= "gateway" then gw.config_table.rest[k] = v end end
        rest, g = gw.config_table.rest, check_gateway(gw.config_table.gateway)
    end
    gw.host = opts.host or g.host or "127.0.0.1"
    local port = opts.port or g.port or M.DEFAULT_PORT
    if opts.script then
        gw.script_path = opts.script
        gw.hooks = M.load_script(opts.script)
    else
        gw.hooks = opts.hooks
    end
    local where = gw.config_path and model_mod.source_of(gw.config_path, 1) or nil
    gw.state = build_state(gw, rest, g, where)
    gw.server = weft.http.serve {
        host = gw.host, port = port, handler = handler_of(gw),
        max_body_size = gw.state.max_body_size, max_header_size = gw.state.max_header_size,
    }
    gw.port = gw.server.port
    local h = gw.host:find(":", 1, true) and ("[" .. gw.host .. "]") or gw.host
    gw.url = format("http://%s:%d", h, gw.port)
    local watch = opts.watch
    if watch == nil then watch = g.watch ~= false end
    if watch then
        local W = require "weft._watch"
        for _, p in ipairs { gw.config_path, gw.script_path } do
            if p then
                local w = W.new(p)
                gw.watchers[#gw.watchers + 1] = w
                weft.spawn(function()
                    while w:wait() do
                        weft.sleep(0.05) -- an editor's write comes in pieces
                        local okr, why = gw:reload()
                        if okr then log.info("gateway configuration reloaded", { file = p, reason = "file change" })
                        else log.error("gateway configuration not reloaded: the old one stays", { file = p, error = why }) end
                    end
                end)
            end
        end
    end
    return gw
end

return M
