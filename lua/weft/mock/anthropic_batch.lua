--- weft.mock.anthropic_batch: Anthropic's Message Batches API in the mock.
---
--- POST /v1/messages/batches {requests = [{custom_id, params}]}, GET
--- /v1/messages/batches (limit, after_id), GET /v1/messages/batches/{id},
--- GET /v1/messages/batches/{id}/results (JSONL, once the batch has
--- ended), POST /v1/messages/batches/{id}/cancel, DELETE
--- /v1/messages/batches/{id} (an ended batch).
---
--- A batch is "in_progress", then "canceling" if cancelled, then "ended"
--- (timing: weft.mock.batch); `request_counts` {processing, succeeded,
--- errored, canceled, expired}, every request "processing" until the
--- batch has ended, as Anthropic counts them; `results_url` (absolute, on the Host the
--- request came to) once ended. A result line is {custom_id, result =
--- {type = "succeeded", message} | {type = "errored", error = <the error
--- body>} | {type = "canceled"} | {type = "expired"}}. The requests'
--- params are checked when they run (an invalid one is an errored result);
--- the batch itself is refused (400) when `requests` is not a non-empty
--- list of {custom_id, params} with unique custom ids of 1 to 64 letters,
--- digits, `_` or `-`.
local json = require "weft.json"
local common = require "weft.mock.common"
local engine = require "weft.mock.batch"

local type, ipairs, tostring, tonumber, format = type, ipairs, tostring, tonumber, string.format

local M = {}

function M.route(req)
    local p, m = req.path, req.method
    if p == "/v1/messages/batches" then
        if m == "POST" then return "batches_create" elseif m == "GET" then return "batches_list" end
        return nil
    end
    local id, rest = p:match("^/v1/messages/batches/([%w_%-]+)(.*)$")
    if not id then return nil end
    if rest == "" then
        if m == "GET" then return "batch", id elseif m == "DELETE" then return "batch_delete", id end
    elseif rest == "/results" and m == "GET" then return "batch_results", id
    elseif rest == "/cancel" and m == "POST" then return "batch_cancel", id end
    return nil
end

--- Endpoints whose body is not JSON: a cancel takes no body (only the batch
--- id in its path; the official SDKs send the POST empty). The dialect
--- (weft.mock.anthropic) must export it as its own `RAW_BODY`.
M.RAW_BODY = { batch_cancel = true }

local function err_body(etype, message)
    return json.encode { type = "error", error = { type = etype, message = message } }
end

local function response(status, body, ctype)
    return { status = status, headers = { ["content-type"] = ctype or "application/json",
                                          ["request-id"] = common.id("req_") }, body = body }
end

local function bad(message) return response(400, err_body("invalid_request_error", message)) end

local function rfc(t) if t == nil then return json.null end return common.rfc3339(t) end

local function batch_object(job, host)
    local c = job.counts
    local ended = job.phase == "ended"
    return {
        id = job.id, type = "message_batch",
        processing_status = ended and "ended" or (job.phase == "cancelling" and "canceling" or "in_progress"),
        -- as Anthropic counts: every request "processing" until the whole batch has ended
        request_counts = ended and { processing = 0, succeeded = c.succeeded, errored = c.errored,
                                     canceled = c.cancelled, expired = c.expired }
            or { processing = job.n, succeeded = 0, errored = 0, canceled = 0, expired = 0 },
        ended_at = rfc(ended and job.ended_at or nil), created_at = common.rfc3339(job.created_at),
        expires_at = common.rfc3339(job.created_at + 86400), archived_at = json.null,
        cancel_initiated_at = rfc(job.cancel_at),
        results_url = ended and format("http://%s/v1/messages/batches/%s/results", host, job.id) or json.null,
    }
end

local function host_of(ctx)
    local h = ctx.req.headers.host
    return type(h) == "string" and h:match("^[%w%.%-:%[%]]+$") and h or "127.0.0.1"
end

local function result_line(job, i)
    local item, o = job.items[i], job.outcomes[i]
    local r
    if o.state then
        r = { type = o.state == "cancelled" and "canceled" or "expired" }
    elseif o.status >= 200 and o.status < 300 then
        r = { type = "succeeded", message = o.body }
    else
        r = { type = "errored", error = o.body }
    end
    return json.encode { custom_id = item.custom_id, result = r }
end

local function create(ctx)
    local reqs = ctx.body.requests
    if type(reqs) ~= "table" or reqs[1] == nil then return bad("requests: Field required (a non-empty list)") end
    if #reqs > 100000 then return bad("requests: at most 100,000 requests in a batch") end
    local items, seen = {}, {}
    for i, r in ipairs(reqs) do
        if type(r) ~= "table" then return bad(format("requests.%d: expected an object", i - 1)) end
        local id = r.custom_id
        if type(id) ~= "string" or #id < 1 or #id > 64 or id:find("[^%w_%-]") then
            return bad(format("requests.%d.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", i - 1))
        end
        if seen[id] then return bad(format("Duplicate custom_id '%s' in requests", id)) end
        seen[id] = true
        if type(r.params) ~= "table" then return bad(format("requests.%d.params: Field required", i - 1)) end
        items[i] = { custom_id = id, endpoint = "messages", url = "/v1/messages", body = r.params }
    end
    return engine.new(ctx.mock, "anthropic", "msgbatch_", items)
end

function M.answer(ctx, id)
    local mock, ep = ctx.mock, ctx.endpoint
    if ep == "batches_create" then
        local job = create(ctx)
        if job.status then return job end -- an error answer
        return response(200, json.encode(batch_object(engine.advance(mock, job), host_of(ctx))))
    elseif ep == "batches_list" then
        local q = ctx.req.query or ""
        local data, more = engine.page(mock, "anthropic", q:match("after_id=([%w_%-]+)"),
            tonumber(q:match("limit=(%d+)")) or 20)
        for i, job in ipairs(data) do data[i] = batch_object(engine.advance(mock, job), host_of(ctx)) end
        return response(200, json.encode { data = json.array(data), has_more = more,
                                           first_id = data[1] and data[1].id or json.null,
                                           last_id = data[#data] and data[#data].id or json.null })
    end
    local job = mock.batch_jobs[id]
    if not job or job.dialect ~= "anthropic" then
        return response(404, err_body("not_found_error", "Message batch not found: " .. tostring(id)))
    end
    engine.advance(mock, job)
    if ep == "batch_cancel" then
        if not engine.cancel(mock, job) and job.phase ~= "ended" then
            return bad("Batch cannot be canceled while it is finishing")
        end
    elseif ep == "batch_results" then
        if job.phase ~= "ended" then
            return bad(format("Message batch %s is still processing: its results are not available yet", job.id))
        end
        local lines = {}
        for k, i in ipairs(engine.result_order(job)) do lines[k] = result_line(job, i) end
        return response(200, table.concat(lines, "\n") .. "\n", "application/binary")
    elseif ep == "batch_delete" then
        if job.phase ~= "ended" then return bad("Message batch " .. job.id .. " is still processing: cancel it first") end
        mock.batch_jobs[id] = nil
        return response(200, json.encode { id = job.id, type = "message_batch_deleted" })
    end
    return response(200, json.encode(batch_object(job, host_of(ctx))))
end

return M
