--- weft.mock.batch: the batch job engine that the mock's OpenAI (Files +
--- Batches) and Anthropic (Message Batches) dialects share.
---
--- Time is compressed (`weft.mock.start{batch = {...}}`, `mock:set_batch`,
--- POST /_mock/batch, `weft mock --batch-delay S --batch-window S`):
--- - `delay` (seconds, default 2): a job's requests are processed one
---   after another, evenly over this time from its creation (a real
---   provider takes minutes to 24 hours);
--- - `window` (seconds, default 60): the completion window ("24h")
---   compressed; the requests of a job not finished by then expire;
--- - `finalize` (seconds, default 0.05): how long a job whose requests
---   are all done stays "finalizing";
--- - `cancel_delay` (seconds, default 0.1): a cancelled job stops
---   processing at once and is cancelled this long after.
---
--- Nothing runs in the background: a job advances when it is looked at
--- (any request about it) to where the clock says it would be, so its
--- outcome depends only on the clock at the looks, never on timers. The
--- clock is `weft.now`, or the `clock` function given to weft.mock.start
--- (tests step it to make every phase exact).
---
--- Each request of a job goes through the mock as a request to its
--- endpoint would (validation, strict models, context windows, fault
--- rules, the deterministic answer), without rate limits: fault rules
--- match it as `endpoint = "batch_item"` with its model; a numeric fault
--- is its status with the dialect's error body, any other fault but "ok"
--- a 500. Items are counted in `stats().batch_items` and `by_fault`, not
--- in `requests`.
local json = require "weft.json"
local common = require "weft.mock.common"

local type, pairs, tostring, floor, min, huge = type, pairs, tostring, math.floor, math.min, math.huge

local M = {}

M.DEFAULTS = { delay = 2, window = 60, finalize = 0.05, cancel_delay = 0.1 }

--- Checked batch timing options (missing ones from `base`, else the
--- defaults), or nil and what is wrong.
function M.options(o, base)
    base = base or M.DEFAULTS
    if o == nil then o = {} end
    if type(o) ~= "table" then return nil, "batch must be a table {delay=, window=, finalize=, cancel_delay=}" end
    local out = {}
    for k, default in pairs(M.DEFAULTS) do
        local v = o[k]
        if v == nil then v = base[k] or default end
        if type(v) ~= "number" or v < 0 or v ~= v or v == huge then
            return nil, "batch." .. k .. " must be a number of seconds >= 0"
        end
        out[k] = v
    end
    for k in pairs(o) do
        if M.DEFAULTS[k] == nil then return nil, "batch: unknown option " .. tostring(k) end
    end
    return out
end

--- A new job of `items` ({custom_id=, endpoint=, body=}: the endpoint as
--- the dialect routes it, the request body as a table), registered in the
--- mock. `fields` are the dialect's own (ids of files, metadata, ...).
function M.new(mock, dialect, prefix, items, fields)
    local job = fields or {}
    job.id = common.id(prefix)
    job.dialect = dialect
    job.items = items
    job.n = #items
    job.done = 0
    job.outcomes = {}
    job.counts = { succeeded = 0, errored = 0, expired = 0, cancelled = 0 }
    job.created_at = floor(weft.time())
    job.t0 = mock.clock()
    job.opts = mock.batch_opts -- the timing it was created with
    job.phase = "running"
    mock.batch_jobs[job.id] = job
    mock.batch_order[#mock.batch_order + 1] = job.id
    return job
end

-- One item through the mock: the dialect's validation, strict models, the
-- context window, the fault rules (endpoint "batch_item"), its answer. Returns
-- status, body (a table).
local function process(mock, job, item)
    local d = mock.dialects[job.dialect]
    local body = item.body
    local c = mock.counters
    c.batch_items = c.batch_items + 1
    local ctx = { mock = mock, req = { method = "POST", path = item.url or "", headers = {}, body = "" },
                  body = body, model = body.model, endpoint = item.endpoint, dialect = job.dialect,
                  entry = {}, batch = true }
    local function decoded(r)
        local v = type(r.body) == "string" and json.decode(r.body) or r.body
        return r.status or 200, v
    end
    if body.stream then
        return decoded(d.error_response(400, "invalid_request", "stream is not supported in a batch"))
    end
    local bad = d.validate and d.validate(ctx)
    if bad then return decoded(bad) end
    local unknown = mock:_unknown_model(ctx)
    if unknown then
        c.by_fault.model_not_found = (c.by_fault.model_not_found or 0) + 1
        return decoded(unknown)
    end
    local tokens = d.input_tokens and d.input_tokens(ctx) or 0
    ctx.input_tokens = tokens
    local window = mock.context[ctx.model]
    if window and tokens > window then
        local r = d.context_response(ctx, tokens, window)
        if r then
            c.by_fault.context_length = (c.by_fault.context_length or 0) + 1
            return decoded(r)
        end
    end
    local fault, rule = mock:_pick_fault(job.dialect, ctx.model, "batch_item")
    if fault ~= "ok" then
        local k = tostring(fault)
        c.by_fault[k] = (c.by_fault[k] or 0) + 1
        ctx.rule, ctx.fault = rule, fault
        return decoded(d.status_response(ctx, type(fault) == "number" and fault or 500))
    end
    ctx.fault = "ok"
    local r = d.answer(ctx)
    return decoded(r)
end

-- Process items up to `target`.
local function run_to(mock, job, target)
    while job.done < target do
        local i = job.done + 1
        local status, body = process(mock, job, job.items[i])
        job.outcomes[i] = { status = status, body = body }
        local cnt = job.counts
        if status >= 200 and status < 300 then cnt.succeeded = cnt.succeeded + 1 else cnt.errored = cnt.errored + 1 end
        job.done = i
    end
end

-- End the job: every item not processed gets `state` ("expired" or
-- "cancelled").
local function finish(job, reason, t)
    for i = job.done + 1, job.n do
        job.outcomes[i] = { state = reason }
        job.counts[reason] = job.counts[reason] + 1
    end
    job.phase, job.end_reason = "ended", reason
    job.ended_t = t
    job.ended_at = floor(weft.time())
end

--- Bring the job to where the clock says it is. Phases: "running",
--- "finishing" (every item done, finalizing), "cancelling", "ended" (with
--- job.end_reason "completed", "expired" or "cancelled").
function M.advance(mock, job)
    if job.phase == "ended" or job.pending then return job end -- (pending: its input not read yet)
    local o, t = job.opts, mock.clock()
    local stop = min(t, job.cancel_t or huge, job.t0 + o.window)
    local target
    if o.delay <= 0 then target = job.n
    else target = min(job.n, floor(job.n * (stop - job.t0) / o.delay + 1e-9)) end
    if target > job.done then run_to(mock, job, target) end
    if job.done >= job.n then
        -- finished at the time the last item was due (or when looked at)
        job.done_t = job.done_t or min(t, job.t0 + o.delay)
        if t >= job.done_t + o.finalize then
            finish(job, "completed", t)
        else
            job.phase = "finishing"
        end
    elseif job.cancel_t then
        if t >= job.cancel_t + o.cancel_delay then finish(job, "cancelled", t) else job.phase = "cancelling" end
    elseif t >= job.t0 + o.window then
        finish(job, "expired", t)
    end
    return job
end

--- Ask to cancel a running job: true, or false when it cannot be (it is
--- finishing or has ended).
function M.cancel(mock, job)
    M.advance(mock, job)
    if job.phase ~= "running" and job.phase ~= "cancelling" then return false end
    if not job.cancel_t then
        job.cancel_t = mock.clock()
        job.cancel_at = floor(weft.time())
        job.phase = "cancelling"
    end
    return true
end

--- The order results are written in: not the input order (as the
--- providers warn), a fixed shuffle by custom_id, so a client that maps
--- results by position gets them wrong.
function M.result_order(job)
    local idx = {}
    for i = 1, job.n do idx[i] = i end
    local function h(s)
        local x = 5381
        for k = 1, #s do x = (x * 33 + s:byte(k)) % 4294967296 end
        return x
    end
    local keys = {}
    for i = 1, job.n do keys[i] = h(tostring(job.items[i].custom_id)) end
    table.sort(idx, function(a, b)
        if keys[a] ~= keys[b] then return keys[a] < keys[b] end
        return a < b
    end)
    return idx
end

--- A page of the jobs of `dialect`, newest first: after the id `after`,
--- at most `limit` (not advanced: the dialect looks at each). Returns the
--- list and whether there are more.
function M.page(mock, dialect, after, limit)
    local out, more, started = {}, false, after == nil
    for i = #mock.batch_order, 1, -1 do
        local job = mock.batch_jobs[mock.batch_order[i]]
        if job and job.dialect == dialect then
            if started then
                if #out >= limit then more = true break end
                out[#out + 1] = job
            elseif job.id == after then
                started = true
            end
        end
    end
    return out, more
end

return M
