--- weft.batch: the providers' batch APIs (OpenAI Files + Batches,
--- Anthropic Message Batches) for work that can wait hours at half price.
---
--- ```lua
--- local out = weft.batch("openai/gpt-4o-mini", {
---     "Summarize: ...", { messages = {...}, max_tokens = 200 }, ...
--- }, { poll = 30 })
--- print(out.status, out.ok, out.failed, out.cost)   -- "completed", counts, USD
--- for key, r in pairs(out.results) do print(key, r.text) end
--- for key, e in pairs(out.errors) do print(key, e.kind, e.message) end
---
--- local job = weft.batch.submit(model, requests, opts)  -- returns once the job exists
--- print(job.id)                  -- the provider's id: keep it to resume
--- job:status()                   -- one poll: {state, status, total, done, succeeded, failed, message?, id}
--- job:cancel()                   -- ask the provider to stop it
--- local out = job:wait()         -- poll until it ends, then the results
--- local job2 = weft.batch.resume(model, job.id, requests, opts) -- in a later run
--- ```
---
--- `requests` is a list (keys 1..n, sent as custom ids "1".."n") or a
--- table keyed by custom ids (1 to 64 letters, digits, `_` or `-`), each a
--- request as model:complete takes it (a string or a table; the model's
--- defaults fill it) or, with `op = "embed"`, a text or a list of texts.
--- Results come back by custom id, whatever order the provider writes them
--- in: `out.results[key]` is the normalized result of requests[key]
--- (text, usage, cost at the batch price, custom_id), `out.errors[key]` a
--- weft.error (kind by the error taxonomy; a request the provider never ran
--- is kind `timeout` with reason "batch_expired" or kind `cancelled` with
--- reason "batch_cancelled", whether the provider wrote a line for it or
--- not; one missing from the results of a completed job, or whose line the
--- plugin cannot read, is an `integration` error with reason
--- "missing_result").
---
--- The provider's plugin does the wire format (its `batch` table, see
--- plugins/README.md); the host sends every request to the provider's
--- configured origin with its credentials. Steps that create something
--- (the upload, the job) are not retried once they may have reached the
--- provider (a second job would run and bill the work twice); polls and
--- downloads are retried by the provider's retry policy, and a poll that
--- still fails (transient, timeout, rate limited) is a missed poll: the
--- wait goes on. Batch requests skip the provider's rate limiter and
--- breaker (they have their own quotas at the provider) and do not feed
--- them; uploads and downloads may take TRANSFER_TIMEOUT (900 s). Results
--- are downloaded whole (up to 1 GiB a file).
---
--- Waiting: a poll every `poll` seconds (default 10), the interval growing
--- by half up to `max_poll` (default 60) while nothing changes; progress
--- (done/total as the provider counts them: Anthropic counts nothing as
--- done before the whole job has ended; errors, the provider's status,
--- elapsed) on stderr as
--- weft.map shows it (a redrawn line on a terminal, else a log line every
--- 5 s; `progress = false` or `weft run --quiet` turn it off) and to
--- `on_progress(status)`. `timeout` (seconds) bounds the wait: a timeout
--- error then carries `batch_id`, the job goes on at the provider and
--- `weft.batch.resume` picks it up. A job that fails as a whole (its input
--- refused) raises an error with the provider's message.
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
local pipeline = require "weft._pipeline"
local T = require "weft._task"

local type, pairs, ipairs, tostring, tonumber, error, pcall, next, rawget, select =
    type, pairs, ipairs, tostring, tonumber, error, pcall, next, rawget, select
local format, concat, floor, min, max = string.format, table.concat, math.floor, math.min, math.max
local now = T.now
local plain = plugins.plain
local fail, plugin_fail, plain_result, excerpt, redact_decoded, redact_json_text =
    B.fail, B.plugin_fail, B.plain_result, B.excerpt, B.redact_decoded, B.redact_json_text

local M = {}

local outcomes = metrics.counter("weft_batch_requests_total",
    "Requests of provider batch jobs, by outcome (success or the error kind).", { "provider", "model", "outcome" })

local STATES = { running = true, cancelling = true, ended = true, failed = true }
local BATCH_FUNCTIONS = { "line", "submit", "submitted", "poll", "status", "results", "result", "cancel" }
M.FUNCTIONS = BATCH_FUNCTIONS

-- The steps that create something are not sent again once they may have
-- reached the provider; these failures say they did not.
local NOT_SENT = { refused = true, connect = true, dns = true, connect_timeout = true }
-- Failures after which a creating step may have been done by the provider.
local MAYBE_DONE = { transient = true, timeout = true, integration = true }
-- Poll failures a wait outlives.
local MISSED_POLL = { transient = true, timeout = true, rate_limited = true, circuit_open = true }

--- Seconds an upload or a results download may take (at least the
--- provider's timeout).
M.TRANSFER_TIMEOUT = 900

local function bad(msg) error(errors.new("invalid_request", "weft.batch: " .. msg), 0) end

------------------------------------------------------------ the context

-- Like a call's context (weft._pipeline) for the boundary helpers: the
-- provider instance, the plugin version serving the whole job, its
-- options, the operation.
local function context(model, op)
    if type(model) == "string" then model = require("weft.model").model(model) end
    if type(model) ~= "table" or type(model.provider) ~= "string" or model.targets ~= nil then
        bad("expected a provider model (\"provider/model\" or its alias), not a policy model")
    end
    local inst = config.instance(model.provider)
    local p = inst.entry.plugin
    local caps = p.capabilities or {}
    if caps[op] == false then bad(format("provider %s (plugin %s) cannot %s", inst.name, p.name, op)) end
    local b = rawget(p, "batch")
    if type(b) ~= "table" then
        bad(format("provider %s (plugin %s) has no batch API", inst.name, tostring(p.name)))
    end
    local ops = rawget(b, "ops")
    if type(ops) == "table" and not rawget(ops, op) then
        bad(format("provider %s (plugin %s) cannot %s in a batch", inst.name, p.name, op))
    end
    local d = tonumber(rawget(b, "discount")) or 1
    if not (d > 0 and d <= 1) then d = 1 end
    local ctx = { inst = inst, entry = inst.entry, plugin = p, batch = b, op = op, model = model,
                  model_name = model.model, pcfg = pipeline.plugin_options(inst, p),
                  auth = config.auth_of(inst, p), discount = d }
    local price = calls.price(inst.name, model.model)
    if price then ctx.price = { input = price.input * d, output = price.output * d } end
    return ctx
end

-- Call the plugin's batch function `fname` under its budget; its failure
-- is an integration error naming it. The job's state is handed over as a
-- fresh copy each time (`plain(job.state)`): the host's stays the host's,
-- a plugin cannot hang a metatable on it.
local function bcall(ctx, fname, ...)
    local f = rawget(ctx.batch, fname)
    local what = format("provider plugin %s (%s): batch.%s", tostring(ctx.plugin.name),
        tostring(ctx.plugin.version or "?"), fname)
    if type(f) ~= "function" then fail(ctx, "integration", what .. " is not a function") end
    local ok, a, b = plugins.guard(tostring(ctx.plugin.name), what, f, ...)
    if not ok then fail(ctx, "integration", excerpt(a, 600)) end
    return a, b
end

-- The plugin's result of batch.fname as the host's plain copy; a table
-- is required unless `optional`.
local function bresult(ctx, fname, v, why)
    if v == nil then
        plugin_fail(ctx, "batch." .. fname .. " returned nothing" .. (type(why) == "string" and (": " .. why) or ""))
    end
    local c = plain_result(ctx, "batch." .. fname, v)
    if type(c) ~= "table" then plugin_fail(ctx, "batch." .. fname .. " must return a table") end
    return c
end

------------------------------------------------------------ requests

-- The items of a job: {key, custom_id, req (the plugin's copy)} in a fixed
-- order (a list's order; a map's by custom id).
local function items_of(ctx, requests)
    if type(requests) ~= "table" or next(requests) == nil then bad("requests must be a non-empty list or map") end
    local keys, list = {}, requests[1] ~= nil
    if list then
        local n = #requests
        for k in pairs(requests) do
            if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
                bad("requests: a list with holes or other keys (use a map keyed by custom ids)")
            end
        end
        for i = 1, n do keys[i] = i end
    else
        for k in pairs(requests) do
            if type(k) ~= "string" or #k > 64 or not k:match("^[%w_%-]+$") then
                bad(format("requests: custom id %q must be 1 to 64 letters, digits, '_' or '-'", tostring(k)))
            end
            keys[#keys + 1] = k
        end
        table.sort(keys)
    end
    local model, op = ctx.model, ctx.op
    local items = {}
    for i, k in ipairs(keys) do
        local r = requests[k]
        local req
        if op == "embed" then
            local texts = type(r) == "string" and { r } or r
            if type(texts) ~= "table" or texts[1] == nil then bad(format("requests[%s]: expected a text or a list of texts", tostring(k))) end
            for j, t in ipairs(texts) do
                if type(t) ~= "string" then bad(format("requests[%s][%d] is a %s, not a string", tostring(k), j, type(t))) end
            end
            req = { model = model.model, input = texts }
        else
            local ok, v = pcall(pipeline.normalize, r, model.defaults, model.model)
            if not ok then
                if errors.is(v) then v.message = format("weft.batch: requests[%s]: %s", tostring(k), v.message) end
                error(v, 0)
            end
            req = v
        end
        local preq, why = plain(req)
        if not preq then bad(format("requests[%s] is not plain data (%s)", tostring(k), why)) end
        items[i] = { key = k, custom_id = tostring(k), req = preq }
    end
    return items
end

-- One item as a line of the job's input (JSON text): the plugin's encode,
-- checked like a call's request, then its batch.line.
local function line_of(ctx, item)
    local enc = B.plugin_call(ctx, "encode", ctx.op, item.req, ctx.pcfg)
    pipeline.request_of(ctx, enc, ctx.auth) -- the path, headers and body a call would be refused for
    local body = plain_result(ctx, "encode", rawget(enc, "body"))
    local line = bresult(ctx, "line", bcall(ctx, "line", item.custom_id, ctx.op,
        { method = rawget(enc, "method") or "POST", path = rawget(enc, "path"), body = body }, ctx.pcfg))
    local ok, text = pcall(json.encode, line)
    if not ok then plugin_fail(ctx, "batch.line: the line cannot be sent as JSON: " .. tostring(text)) end
    return text, rawget(enc, "path")
end

-- A multipart/form-data body: the plugin's form fields, then the lines as
-- a JSONL file.
local function multipart(ctx, input, lines)
    local content = concat(lines, "\n")
    local boundary
    repeat -- one that the content does not hold
        boundary = format("weft-%08x%08x", floor(math.random() * 0xffffffff), floor(now() * 1e6) % 0xffffffff)
    until not content:find(boundary, 1, true)
    local out = {}
    local form = input.form or {}
    if type(form) ~= "table" then plugin_fail(ctx, "batch.submit: input.form must be a table of strings") end
    local names = {}
    for k in pairs(form) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do
        local v = form[k]
        if type(k) ~= "string" or not k:match("^[%w_%-%.%[%]]+$") or type(v) ~= "string" or v:find("[\r\n]") then
            plugin_fail(ctx, "batch.submit: input.form must map field names to strings without CR or LF")
        end
        out[#out + 1] = format('--%s\r\ncontent-disposition: form-data; name="%s"\r\n\r\n%s\r\n', boundary, k, v)
    end
    local field, filename = input.field or "file", input.filename or "weft-batch.jsonl"
    if type(field) ~= "string" or not field:match("^[%w_%-]+$") or type(filename) ~= "string"
        or not filename:match("^[%w_%-%.]+$") then
        plugin_fail(ctx, "batch.submit: input.field and input.filename must be plain names")
    end
    out[#out + 1] = format('--%s\r\ncontent-disposition: form-data; name="%s"; filename="%s"\r\ncontent-type: application/jsonl\r\n\r\n',
        boundary, field, filename)
    out[#out + 1] = content
    out[#out + 1] = format("\n\r\n--%s--\r\n", boundary)
    return concat(out), "multipart/form-data; boundary=" .. boundary
end

-- The lines inside a JSON body: {"<key>": [lines], ...the plugin's body}.
local function array_body(ctx, input, body, lines)
    local key = input.key
    if type(key) ~= "string" or not key:match("^[%w_]+$") then plugin_fail(ctx, "batch.submit: input.key must be a plain name") end
    local rest = "}"
    if body ~= nil then
        if type(body) ~= "table" then plugin_fail(ctx, "batch.submit: with input.as = \"array\" the body must be a table") end
        local s = json.encode(body)
        if s:sub(1, 1) ~= "{" and s ~= "[]" then plugin_fail(ctx, "batch.submit: the body must be an object") end
        if s ~= "{}" and s ~= "[]" then rest = "," .. s:sub(2) end
    end
    return '{"' .. key .. '":[' .. concat(lines, ",") .. "]" .. rest, "application/json"
end

-- Send one request of the plugin's (a step): checked like a call's,
-- retried by the provider's policy (a creating step only when it surely
-- did not reach the provider). Returns the answer's JSON (a table the
-- plugin may see) or, with `raw`, its body text.
local function send(ctx, call, step, what, opts)
    opts = opts or {}
    local input = rawget(step, "input")
    local req = { method = rawget(step, "method"), path = rawget(step, "path"), query = rawget(step, "query"),
                  headers = rawget(step, "headers"), body = input == nil and rawget(step, "body") or nil }
    local hopts = pipeline.request_of(ctx, req, ctx.auth)
    if input ~= nil then
        if not opts.lines then plugin_fail(ctx, "batch." .. what .. ": only the steps that create the job take an input") end
        if type(input) ~= "table" then plugin_fail(ctx, "batch." .. what .. ": input must be a table") end
        local body, ctype
        if input.as == "file" then body, ctype = multipart(ctx, input, opts.lines)
        elseif input.as == "array" then body, ctype = array_body(ctx, input, rawget(step, "body"), opts.lines)
        else plugin_fail(ctx, "batch." .. what .. ": input.as must be \"file\" or \"array\"") end
        hopts.body, hopts.headers["content-type"] = body, ctype
    end
    if hopts.method == "GET" or hopts.method == "DELETE" then hopts.headers["content-type"] = nil end
    if opts.raw then hopts.max_body = opts.max_body or 1024 * 1024 * 1024 end
    local inst = ctx.inst
    -- an upload or a results file can take far longer than a completion
    local limit = (input ~= nil or opts.raw) and max(inst.timeout, M.TRANSFER_TIMEOUT) or inst.timeout
    local res = retry.run(inst.policy, function(_, remaining)
        local t = limit
        if remaining and remaining < t then t = remaining end
        if t <= 0 then fail(ctx, "timeout", "weft.batch: the wait's deadline was reached") end
        hopts.timeout, hopts.connect_timeout = t, inst.connect_timeout
        local ok, r = pcall(function()
            local ok2, res = pcall(http.request, hopts)
            if not ok2 then
                if errors.is(res) then call:http(res) end
                error(res, 0)
            end
            call:http(res)
            pipeline.raise_failure(ctx, res, res.status >= 300 and redact_json_text(res.body) or nil)
            return res
        end)
        if not ok then
            if opts.once and errors.is(r) and r.status == 409 then r.should_retry = false end
            if opts.creates and errors.is(r) and MAYBE_DONE[r.kind] and not NOT_SENT[r.reason] then
                r.should_retry = false -- it may exist already: not made twice
                r.message = r.message .. " (weft.batch did not send it again: the provider may have made it; check its list)"
            end
            error(r, 0)
        end
        return r
    end, { call = call, deadline = opts.deadline })
    if opts.raw then return res.body end
    local dok, v = pcall(json.decode, res.body)
    if not dok or type(v) ~= "table" then
        fail(ctx, "integration", format("%s answered %d with a body that is not JSON (batch.%s): %s", ctx.plugin.name,
            res.status, what, excerpt(res.body)), { status = res.status })
    end
    if res.body:find("\\u", 1, true) then redact_decoded(v, 0) end
    return v
end

-- The wait options (weft.BatchWaitOptions), checked: a copy.
local function check_wait(opts)
    if type(opts) ~= "table" then bad("opts must be a table") end
    local o = { poll = opts.poll, max_poll = opts.max_poll, timeout = opts.timeout, progress = opts.progress,
                on_progress = opts.on_progress }
    local function secs(k)
        local v = o[k]
        if v ~= nil and not (type(v) == "number" and v > 0 and v < math.huge) then bad(k .. " must be seconds > 0") end
    end
    secs("poll") secs("max_poll") secs("timeout")
    if o.poll and o.max_poll and o.max_poll < o.poll then bad("max_poll must be >= poll") end
    if o.on_progress ~= nil and type(o.on_progress) ~= "function" then bad("on_progress must be a function") end
    if o.progress ~= nil and type(o.progress) ~= "boolean" then bad("progress must be true or false") end
    return o
end

------------------------------------------------------------ the job

local Job = {}
Job.__index = Job

local function open_call(ctx)
    return calls.begin { provider = ctx.inst.name, model = ctx.model.model, operation = "batch", price = ctx.price }
end

-- Run fn(call) as one recorded call of operation "batch".
local function recorded(ctx, fn, ...)
    local call = open_call(ctx)
    local ok, a = pcall(fn, call, ...)
    if not ok then
        if errors.is(a) then a.provider, a.model = a.provider or ctx.inst.name, a.model or ctx.model.model end
        call:finish(a)
        error(a, 0)
    end
    call:finish()
    return a
end

-- The plugin's status reading of a poll's answer, checked.
local function read_status(ctx, job, answer)
    local st = bresult(ctx, "status", bcall(ctx, "status", plain(job.state), answer, ctx.pcfg))
    if st.job ~= nil then
        if type(st.job) ~= "table" then plugin_fail(ctx, "batch.status: job must be a table") end
        job.state = st.job
    end
    if not STATES[st.state] then
        plugin_fail(ctx, "batch.status: state must be running, cancelling, ended or failed, got " .. tostring(st.state))
    end
    local c = type(st.counts) == "table" and st.counts or {}
    local function n(v) v = tonumber(v) return v and v >= 0 and v < 1e12 and floor(v) or 0 end
    local s = { state = st.state, status = type(st.status) == "string" and st.status:sub(1, 64) or st.state,
                total = n(c.total) > 0 and n(c.total) or job.count, succeeded = n(c.succeeded), failed = n(c.failed),
                message = type(st.message) == "string" and excerpt(st.message, 600) or nil, id = job.id }
    s.done = min(s.total, s.succeeded + s.failed)
    job.last = s
    return s
end

--- One poll of the job: {state = "running"|"cancelling"|"ended"|"failed",
--- status (the provider's word), total, done, succeeded, failed,
--- message?, id}.
function Job:status()
    local ctx = self.ctx
    return recorded(ctx, function(call)
        return read_status(ctx, self, send(ctx, call, bresult(ctx, "poll", bcall(ctx, "poll", plain(self.state), ctx.pcfg)), "poll"))
    end)
end

--- Ask the provider to cancel the job (requests it has not run yet will
--- not run; their results are errors of kind `cancelled`). Returns the
--- status the provider answered with.
function Job:cancel()
    local ctx = self.ctx
    return recorded(ctx, function(call)
        local step = bresult(ctx, "cancel", bcall(ctx, "cancel", plain(self.state), ctx.pcfg))
        local ok, answer = pcall(send, ctx, call, step, "cancel", { once = true })
        if not ok then
            -- 409: it cannot be cancelled (it ended, or is finishing): its status says how it stands
            if not (errors.is(answer) and answer.status == 409) then error(answer, 0) end
            local poll = bresult(ctx, "poll", bcall(ctx, "poll", plain(self.state), ctx.pcfg))
            answer = send(ctx, call, poll, "poll")
        end
        local st = read_status(ctx, self, answer)
        log.info("batch cancel asked", { batch_id = self.id, status = st.status })
        return st
    end)
end

-- A result line -> the item's result or error, recorded.
local function take_result(ctx, job, out, call, line)
    -- a line the plugin cannot read loses that line only (its request ends
    -- as a missing result), not the results already paid for
    local rok, r = pcall(function() return bresult(ctx, "result", bcall(ctx, "result", line, plain(job.state), ctx.pcfg)) end)
    if not rok then
        log.warn("batch result line the plugin cannot read: skipped", { batch_id = job.id,
            error = errors.is(r) and r.message or tostring(r) })
        return
    end
    local id = r.custom_id
    local item = type(id) == "string" and job.by_id[id] or nil
    if not item then
        log.warn("batch result for an unknown custom id: ignored", { batch_id = job.id, custom_id = excerpt(tostring(id), 80) })
        return
    end
    if out.seen[id] then return end
    out.seen[id] = true
    local key, m = item.key, ctx.model.model
    local ictx = { inst = ctx.inst, plugin = ctx.plugin, model_name = m, entry = ctx.entry }
    local function failed(e)
        e.custom_id, e.key, e.batch_id = id, key, job.id
        out.errors[key] = e
        out.failed = out.failed + 1
        outcomes:inc(1, ctx.inst.name, m, e.kind)
    end
    local status = tonumber(r.status)
    if type(r.error) == "table" then
        local kind = errors.KINDS[r.error.kind] and r.error.kind or "integration"
        local reason = type(r.error.reason) == "string" and r.error.reason:match("^[%w_]+$") and r.error.reason or nil
        return failed(errors.new(kind, format("%s batch: %s", ctx.plugin.name,
            excerpt(type(r.error.message) == "string" and r.error.message or kind)),
            { provider = ctx.inst.name, model = m, reason = reason }))
    end
    if status and (status < 200 or status >= 300) then
        local body = r.body ~= nil and json.encode(r.body) or ""
        local ok, e = pcall(pipeline.raise_failure, ictx, { status = status, headers = {}, body = body }, redact_json_text(body))
        if ok then e = errors.new("integration", "batch: an error status classified as success") end
        if not errors.is(e) then e = errors.new("integration", tostring(e)) end
        e.provider, e.model = ctx.inst.name, m
        return failed(e)
    end
    if type(r.body) ~= "table" then
        return failed(errors.new("integration", format("%s batch: the result of %s has no answer", ctx.plugin.name, id),
            { provider = ctx.inst.name, model = m }))
    end
    local dok, decoded, why = pcall(B.plugin_call, ictx, "decode", ctx.op, r.body, item.req, ctx.pcfg)
    if not dok then return failed(decoded) end
    if type(decoded) ~= "table" then
        return failed(errors.new("integration", format("%s: cannot decode the batch answer of %s (%s)", ctx.plugin.name, id,
            type(why) == "string" and excerpt(why) or "decode returned nothing"), { provider = ctx.inst.name, model = m }))
    end
    local cok, res = pcall(pipeline.checked_result, ictx, decoded)
    if not cok then return failed(res) end
    local u = res.usage or { input = 0, output = 0 }
    res.usage = u
    res.provider, res.model = ctx.inst.name, res.model or m
    res.custom_id, res.batch_id = id, job.id
    local p = ctx.price
    if p then res.cost = (u.input * p.input + u.output * p.output) / 1e6 end
    out.usage.input, out.usage.output = out.usage.input + u.input, out.usage.output + u.output
    call:usage(u.input, u.output)
    out.results[key] = res
    out.ok = out.ok + 1
    outcomes:inc(1, ctx.inst.name, m, "success")
end

-- Download and map the results of an ended job.
local function results(ctx, job, call, st)
    local out = { id = job.id, status = st.status, provider = ctx.inst.name, model = ctx.model.model,
                  results = {}, errors = {}, ok = 0, failed = 0, total = job.count, seen = {},
                  usage = { input = 0, output = 0 } }
    local steps = bresult(ctx, "results", bcall(ctx, "results", plain(job.state), ctx.pcfg))
    for i = 1, #steps do
        if type(steps[i]) ~= "table" then plugin_fail(ctx, "batch.results must return a list of requests") end
        local text = send(ctx, call, steps[i], "results", { raw = true })
        for l in text:gmatch("[^\r\n]+") do
            local ok, line = pcall(json.decode, l)
            if ok and type(line) == "table" then
                if l:find("\\u", 1, true) then redact_decoded(line, 0) end
                take_result(ctx, job, out, call, line)
            elseif l:match("%S") then
                log.warn("batch results: a line that is not JSON: skipped", { batch_id = job.id, line = excerpt(l, 120) })
            end
        end
    end
    -- a request without a result: of a job cancelled or expired, one that
    -- did not run (providers need not write a line for it); else lost
    local st_word = tostring(st.status):lower()
    local kind, reason, why = "integration", "missing_result", "no result for custom id %s"
    if st_word:find("cancel", 1, true) then
        kind, reason, why = "cancelled", "batch_cancelled", "no result for custom id %s: the batch was cancelled before it ran"
    elseif st_word:find("expire", 1, true) then
        kind, reason, why = "timeout", "batch_expired", "no result for custom id %s: the batch expired before it ran"
    end
    for _, item in ipairs(job.items) do
        if not out.seen[item.custom_id] then
            local e = errors.new(kind, format("%s batch %s: " .. why, ctx.plugin.name, tostring(job.id), item.custom_id),
                { provider = ctx.inst.name, model = ctx.model.model, reason = reason })
            e.custom_id, e.key, e.batch_id = item.custom_id, item.key, job.id
            out.errors[item.key] = e
            out.failed = out.failed + 1
            outcomes:inc(1, ctx.inst.name, ctx.model.model, kind)
        end
    end
    out.seen = nil
    local p = ctx.price
    out.cost = p and (out.usage.input * p.input + out.usage.output * p.output) / 1e6 or nil
    return out
end

local function progress_line(job)
    local duration = require("weft.map")._duration
    return function(p)
        local s = job.last or {}
        return format("%s %s %s %d/%d  errors %d  %s  elapsed %s", p.label, tostring(job.id), s.status or "?",
            s.done or 0, s.total or job.count, s.failed or 0, s.state or "", duration(now() - p.t0))
    end
end

---@class weft.BatchWaitOptions
---@field poll? number seconds between polls (10)
---@field max_poll? number the interval grows up to this while nothing changes (60)
---@field timeout? number give up waiting after this many seconds (the job goes on)
---@field progress? boolean progress on stderr (true; weft run --quiet turns it off)
---@field on_progress? fun(status: table) called after every poll

---@class weft.BatchResult
---@field id string the provider's job id
---@field status string the provider's final status ("completed", "expired", "cancelled", "ended")
---@field results table<any, weft.Result> by the caller's keys
---@field errors table<any, weft.Error> by the caller's keys
---@field ok integer
---@field failed integer
---@field total integer
---@field usage {input: integer, output: integer}
---@field cost? number USD at the batch price
---@field elapsed number seconds waited

--- Poll until the job ends, then download and map its results (see the
--- module doc). Raises when the job failed as a whole, or when `timeout`
--- passes (the error's batch_id names the job to resume).
---@param opts? weft.BatchWaitOptions
---@return weft.BatchResult
function Job:wait(opts)
    opts = opts == nil and self.opts or check_wait(opts)
    local ctx = self.ctx
    local interval = opts.poll or 10
    local max_poll = opts.max_poll or max(60, interval)
    local timeout = opts.timeout
    local t0 = now()
    local deadline = timeout and t0 + timeout or nil
    local mapmod = require "weft.map"
    local pg = mapmod._progress_new({ progress = opts.progress ~= false, label = "weft.batch", line = progress_line(self) },
        self.count)
    return recorded(ctx, function(call)
        local st, last_done, wait = nil, -1, interval
        local function too_late()
            local s = st or self.last or { status = "unknown", done = 0, total = self.count }
            return errors.new("timeout", format("weft.batch: job %s not done after %gs (status %s, %d/%d): it goes on at the provider; weft.batch.resume picks it up",
                tostring(self.id), timeout, s.status, s.done, s.total), { batch_id = self.id })
        end
        local ok, err = pcall(function()
            while true do
                if deadline and now() >= deadline then error(too_late(), 0) end
                local step = bresult(ctx, "poll", bcall(ctx, "poll", plain(self.state), ctx.pcfg))
                local pok, answer = pcall(send, ctx, call, step, "poll", { deadline = deadline })
                if not pok then
                    if deadline and now() >= deadline and errors.is(answer) and answer.kind == "timeout" then
                        error(too_late(), 0)
                    end
                    -- an outage of the provider's API, its retries spent: a
                    -- missed poll (the job goes on there), not the end of a
                    -- wait of hours
                    if not (errors.is(answer) and MISSED_POLL[answer.kind]) then error(answer, 0) end
                    log.warn("batch poll failed: trying again later", { batch_id = self.id, error = answer.message })
                    wait = min(max_poll, wait * 1.5)
                    goto sleep
                end
                st = read_status(ctx, self, answer)
                if pg then pg.done, pg.failed = st.done, st.failed end
                if opts.on_progress then opts.on_progress(st) end
                mapmod._progress_tick(pg)
                if st.state == "ended" or st.state == "failed" then break end
                if st.done ~= last_done then wait, last_done = interval, st.done else wait = min(max_poll, wait * 1.5) end
                ::sleep::
                if deadline and now() + wait > deadline then wait = max(0, deadline - now()) end
                local _, serr = T.sleep(wait)
                if serr then error(serr, 0) end
            end
        end)
        mapmod._progress_tick(pg, true)
        if not ok then
            if errors.is(err) then
                err.batch_id = err.batch_id or self.id
                if err.kind == "cancelled" then
                    log.info("batch wait interrupted: the job goes on at the provider", { batch_id = self.id })
                end
            end
            error(err, 0)
        end
        if st.state == "failed" then
            error(errors.new("invalid_request", format("%s batch %s failed: %s", ctx.plugin.name, tostring(self.id),
                st.message or st.status), { batch_id = self.id, provider = ctx.inst.name, model = ctx.model.model }), 0)
        end
        local out = results(ctx, self, call, st)
        out.elapsed = now() - t0
        log.info("batch done", { batch_id = self.id, status = out.status, ok = out.ok, failed = out.failed,
                                 tokens_in = out.usage.input, tokens_out = out.usage.output, cost_usd = out.cost })
        return out
    end)
end

local function new_job(ctx, items, opts)
    local by_id = {}
    for _, it in ipairs(items) do by_id[it.custom_id] = it end
    return setmetatable({ ctx = ctx, items = items, by_id = by_id, count = #items, opts = opts }, Job)
end

-- The options of a job, checked before anything is sent (a job must not
-- be made and then lost to a bad wait option); `metadata` as a copy of
-- string keys and values (the plugin gets that copy, never the caller's).
local function check_opts(opts)
    if opts == nil then return {} end
    if type(opts) ~= "table" then bad("opts must be a table") end
    local o = check_wait(opts)
    o.op = opts.op
    if o.op ~= nil and o.op ~= "complete" and o.op ~= "embed" then bad("op must be \"complete\" or \"embed\"") end
    if opts.metadata ~= nil then
        if type(opts.metadata) ~= "table" then bad("metadata must be a table of strings") end
        local m, n = {}, 0
        for k, v in pairs(opts.metadata) do
            n = n + 1
            if type(k) ~= "string" or type(v) ~= "string" or #k > 64 or #v > 512 or n > 16 then
                bad("metadata: at most 16 string keys (64 bytes) with string values (512 bytes)")
            end
            m[k] = v
        end
        o.metadata = m
    end
    return o
end

--- Create a batch job of `requests` at the provider of `model` (a
--- weft.Model or a name) and return its handle once the provider has it
--- (job.id). opts: op ("complete" or "embed"), metadata (for the
--- provider's listing), and the options of job:wait.
---@return table job
function M.submit(model, requests, opts)
    opts = check_opts(opts)
    local ctx = context(model, opts.op or "complete")
    local items = items_of(ctx, requests)
    local lines, path = {}, nil
    for i, item in ipairs(items) do
        local text, p = line_of(ctx, item)
        if path and p ~= path then plugin_fail(ctx, "encode: the requests of one batch must go to one path") end
        lines[i], path = text, p
    end
    local job = new_job(ctx, items, opts)
    job.state = { op = ctx.op, count = #items, path = path, model = ctx.model.model, metadata = opts.metadata }
    recorded(ctx, function(call)
        local step = bresult(ctx, "submit", bcall(ctx, "submit", plain(job.state), ctx.pcfg))
        for _ = 1, 8 do
            local answer = send(ctx, call, step, "submit", { lines = lines, creates = true })
            local r = bresult(ctx, "submitted", bcall(ctx, "submitted", plain(job.state), answer, ctx.pcfg))
            if type(r.job) ~= "table" then plugin_fail(ctx, "batch.submitted must return {job = ..., next = request?}") end
            job.state = r.job
            if r.next == nil then break end
            if type(r.next) ~= "table" then plugin_fail(ctx, "batch.submitted: next must be a request") end
            step = r.next
        end
        local id = job.state.id
        if type(id) ~= "string" or id == "" then plugin_fail(ctx, "batch.submitted: the job has no id") end
        job.id = id
    end)
    log.info("batch submitted", { batch_id = job.id, provider = ctx.inst.name, model = ctx.model.model,
                                  requests = job.count })
    return job
end

--- The handle of a job submitted before (its id), with the same
--- `requests` (and keys) so results map back to them.
---@return table job
function M.resume(model, id, requests, opts)
    opts = check_opts(opts)
    if type(id) ~= "string" or id == "" then bad("resume: the job id must be a string") end
    local ctx = context(model, opts.op or "complete")
    local job = new_job(ctx, items_of(ctx, requests), opts)
    job.id = id
    job.state = { id = id, op = ctx.op, count = job.count, model = ctx.model.model }
    return job
end

--- Submit and wait: the results (weft.BatchResult).
function M.run(model, requests, opts)
    local job = M.submit(model, requests, opts)
    local ok, out = pcall(job.wait, job)
    if not ok then
        if errors.is(out) then out.batch_id = out.batch_id or job.id end
        error(out, 0)
    end
    return out
end

return setmetatable(M, { __call = function(_, ...) return M.run(...) end })
