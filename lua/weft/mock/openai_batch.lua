--- weft.mock.openai_batch: OpenAI's Files and Batches APIs in the mock.
---
--- Files: POST /v1/files (multipart/form-data: `purpose`, `file`), GET
--- /v1/files, GET /v1/files/{id}, GET /v1/files/{id}/content, DELETE
--- /v1/files/{id}. Batches: POST /v1/batches {input_file_id, endpoint,
--- completion_window = "24h", metadata}, GET /v1/batches (limit, after),
--- GET /v1/batches/{id}, POST /v1/batches/{id}/cancel.
---
--- A batch is "validating" when created; the first look validates its
--- input file (JSONL lines {custom_id, method = "POST", url, body}: custom
--- ids unique, every url the batch's endpoint): a bad file makes the batch
--- "failed" with `errors` naming the lines. Then "in_progress",
--- "finalizing", and "completed", "expired" or "cancelling"/"cancelled"
--- (timing: weft.mock.batch). Answers with a 2xx status go to the output
--- file, the rest to the error file: {id, custom_id, response =
--- {status_code, request_id, body}, error = null}, or, for requests that
--- did not run, response null and error {code = "batch_expired" |
--- "batch_cancelled", message}.
local json = require "weft.json"
local common = require "weft.mock.common"
local engine = require "weft.mock.batch"

local type, ipairs, tostring, tonumber, floor, format = type, ipairs, tostring, tonumber, math.floor,
    string.format

local M = {}

local ENDPOINTS = { ["/v1/chat/completions"] = "chat", ["/v1/embeddings"] = "embeddings" }

--- The endpoint of a Files/Batches request and the id in its path, or nil.
function M.route(req)
    local p, m = req.path, req.method
    if p == "/v1/files" then
        if m == "POST" then return "files_upload" elseif m == "GET" then return "files_list" end
    elseif p == "/v1/batches" then
        if m == "POST" then return "batches_create" elseif m == "GET" then return "batches_list" end
    end
    local id = p:match("^/v1/files/([%w_%-]+)$")
    if id then
        if m == "GET" then return "file", id elseif m == "DELETE" then return "file_delete", id end
    end
    id = p:match("^/v1/files/([%w_%-]+)/content$")
    if id and m == "GET" then return "file_content", id end
    id = p:match("^/v1/batches/([%w_%-]+)$")
    if id and m == "GET" then return "batch", id end
    id = p:match("^/v1/batches/([%w_%-]+)/cancel$")
    if id and m == "POST" then return "batch_cancel", id end
    return nil
end

-- Endpoints whose body is not JSON: an upload is multipart/form-data, and a
-- cancel takes no body at all (only the batch id in its path; the official
-- SDKs send the POST empty).
M.RAW_BODY = { files_upload = true, batch_cancel = true }

local function err_body(message, etype, code, param)
    return json.encode { error = { message = message, type = etype or "invalid_request_error",
                                   param = param or json.null, code = code or json.null } }
end

local function response(status, body, ctype)
    return { status = status, headers = { ["content-type"] = ctype or "application/json",
                                          ["x-request-id"] = common.id("req_") }, body = body }
end

local function bad(message, param, code) return response(400, err_body(message, "invalid_request_error", code, param)) end
local function not_found(what, id)
    return response(404, err_body(format("No such %s: '%s'", what, tostring(id)), "invalid_request_error", nil, "id"))
end

------------------------------------------------------------ multipart

-- The parts of a multipart/form-data body: {name = {value=, filename=}}.
local function multipart(req)
    local ct = req.headers["content-type"]
    local boundary = type(ct) == "string" and (ct:match('boundary="([^"]+)"') or ct:match("boundary=([^;%s]+)"))
    if not boundary then return nil, "expected a multipart/form-data body" end
    local body, parts = req.body, {}
    local delim = "--" .. boundary
    local pos = body:find(delim, 1, true)
    if not pos then return nil, "multipart body without its boundary" end
    pos = pos + #delim
    while true do
        if body:sub(pos, pos + 1) == "--" then break end -- the closing delimiter
        local hstart = body:find("\r\n", pos, true)
        if not hstart then return nil, "truncated multipart body" end
        local hend = body:find("\r\n\r\n", hstart, true)
        if not hend then return nil, "multipart part without headers" end
        local head = body:sub(hstart + 2, hend - 1)
        local nxt = body:find("\r\n" .. delim, hend + 4, true)
        if not nxt then return nil, "multipart part without an end" end
        local disp = head:match("[Cc]ontent%-[Dd]isposition:%s*([^\r\n]+)") or ""
        local name = disp:match('[^%w]name="([^"]*)"')
        if name then parts[name] = { value = body:sub(hend + 4, nxt - 1), filename = disp:match('filename="([^"]*)"') } end
        pos = nxt + 2 + #delim
    end
    return parts
end

------------------------------------------------------------ objects

local function file_object(f)
    return { id = f.id, object = "file", bytes = #f.content, created_at = f.created_at, filename = f.filename,
             purpose = f.purpose, status = "processed", expires_at = json.null, status_details = json.null }
end

local function new_file(mock, content, filename, purpose)
    local f = { id = common.id("file-"), content = content, filename = filename, purpose = purpose,
                created_at = floor(weft.time()) }
    mock.batch_files[f.id] = f
    mock.batch_file_order[#mock.batch_file_order + 1] = f.id
    return f
end

local STATUS = { running = "in_progress", finishing = "finalizing", cancelling = "cancelling" }

local function opt(v) if v == nil then return json.null end return v end

local function batch_object(job)
    local status = job.failed and "failed" or (job.phase == "ended" and job.end_reason) or STATUS[job.phase]
    if not job.validated and not job.failed then status = "validating" end
    local c = job.counts
    local failed = c.errored + c.expired + c.cancelled
    return {
        id = job.id, object = "batch", endpoint = job.endpoint, input_file_id = job.input_file_id,
        completion_window = job.completion_window, status = status,
        errors = job.errors and { object = "list", data = job.errors } or json.null,
        output_file_id = opt(job.output_file_id), error_file_id = opt(job.error_file_id),
        created_at = job.created_at, in_progress_at = opt(job.validated and job.created_at or nil),
        expires_at = job.created_at + 86400, finalizing_at = opt(job.done_t and job.created_at + floor(job.done_t - job.t0) or nil),
        completed_at = opt(job.end_reason == "completed" and job.ended_at or nil),
        failed_at = opt(job.failed_at), expired_at = opt(job.end_reason == "expired" and job.ended_at or nil),
        cancelling_at = opt(job.cancel_at), cancelled_at = opt(job.end_reason == "cancelled" and job.ended_at or nil),
        request_counts = { total = job.n, completed = c.succeeded, failed = failed },
        metadata = job.metadata or json.null,
    }
end

-- The output and error files of an ended job.
local function write_files(mock, job)
    if job.files_written then return end
    job.files_written = true
    local out, errs = {}, {}
    for _, i in ipairs(engine.result_order(job)) do
        local item, o = job.items[i], job.outcomes[i]
        local line = { id = common.id("batch_req_"), custom_id = item.custom_id }
        if o.state then
            line.response = json.null
            line.error = o.state == "expired"
                and { code = "batch_expired", message = "This request could not be executed before the completion window expired." }
                or { code = "batch_cancelled", message = "This request was not executed because the batch was cancelled." }
            errs[#errs + 1] = json.encode(line)
        else
            line.response = { status_code = o.status, request_id = common.id("req_"), body = o.body }
            line.error = json.null
            local list = (o.status >= 200 and o.status < 300) and out or errs
            list[#list + 1] = json.encode(line)
        end
    end
    if #out > 0 then job.output_file_id = new_file(mock, table.concat(out, "\n") .. "\n", "batch_output.jsonl", "batch_output").id end
    if #errs > 0 then job.error_file_id = new_file(mock, table.concat(errs, "\n") .. "\n", "batch_errors.jsonl", "batch_output").id end
end

-- Validate the input file (the first look at a batch): its lines become
-- the job's items, or the batch fails with the lines' errors.
local function validate(mock, job)
    if job.validated or job.failed then return end
    local f = mock.batch_files[job.input_file_id]
    local errors, items, seen = {}, {}, {}
    local n = 0
    for line in (f and f.content or ""):gmatch("[^\n]+") do
        n = n + 1
        if #errors >= 10 then break end
        local v = json.decode(line)
        local function e(code, msg, param)
            errors[#errors + 1] = { code = code, message = msg, param = param or json.null, line = n }
        end
        if type(v) ~= "table" then e("invalid_json_line", "This line is not parseable as valid JSON.")
        elseif type(v.custom_id) ~= "string" then e("missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
        elseif seen[v.custom_id] then e("duplicate_custom_id", format("The custom_id '%s' is not unique.", v.custom_id), "custom_id")
        elseif v.method ~= "POST" then e("invalid_method", "The method must be 'POST'.", "method")
        elseif v.url ~= job.endpoint then
            e("mismatched_endpoint", format("The url '%s' does not match the batch's endpoint '%s'.", tostring(v.url), job.endpoint), "url")
        elseif type(v.body) ~= "table" then e("missing_required_parameter", "Missing required parameter: 'body'.", "body")
        else
            seen[v.custom_id] = true
            items[#items + 1] = { custom_id = v.custom_id, url = v.url, endpoint = ENDPOINTS[v.url], body = v.body }
        end
    end
    if n == 0 and #errors == 0 then
        errors[1] = { code = "empty_file", message = "The input file is empty.", param = json.null, line = json.null }
    end
    if #errors > 0 then
        job.failed, job.errors, job.failed_at = true, errors, floor(weft.time())
        job.phase, job.end_reason = "ended", "failed"
        return
    end
    job.validated, job.pending = true, nil
    job.items, job.n = items, #items
    job.t0 = mock.clock() -- processing starts now
end

local function look(mock, job)
    validate(mock, job)
    if job.failed then return job end
    engine.advance(mock, job)
    if job.phase == "ended" then write_files(mock, job) end
    return job
end

------------------------------------------------------------ endpoints

local function json_response(v) return response(200, json.encode(v)) end

local function list(data, more)
    return json_response { object = "list", data = json.array(data), has_more = more or false,
                           first_id = data[1] and data[1].id or json.null,
                           last_id = data[#data] and data[#data].id or json.null }
end

function M.answer(ctx, id)
    local mock, ep, req = ctx.mock, ctx.endpoint, ctx.req
    if ep == "files_upload" then
        local parts, why = multipart(req)
        if not parts then return bad(why) end
        local purpose, file = parts.purpose and parts.purpose.value, parts.file
        if not purpose then return bad("Missing required parameter: 'purpose'.", "purpose") end
        if not file then return bad("Missing required parameter: 'file'.", "file") end
        return json_response(file_object(new_file(mock, file.value, file.filename or "upload", purpose)))
    elseif ep == "files_list" then
        local data = {}
        for i = #mock.batch_file_order, 1, -1 do
            local f = mock.batch_files[mock.batch_file_order[i]]
            if f then data[#data + 1] = file_object(f) end
        end
        return list(data)
    end
    if ep == "file" or ep == "file_content" or ep == "file_delete" then
        local f = mock.batch_files[id]
        if not f then return not_found("file", id) end
        if ep == "file" then return json_response(file_object(f)) end
        if ep == "file_content" then return response(200, f.content, "application/octet-stream") end
        mock.batch_files[id] = nil
        return json_response { id = id, object = "file", deleted = true }
    end
    if ep == "batches_create" then
        local b = ctx.body
        if type(b.input_file_id) ~= "string" then return bad("Missing required parameter: 'input_file_id'.", "input_file_id") end
        if not mock.batch_files[b.input_file_id] then return not_found("file", b.input_file_id) end
        if not ENDPOINTS[b.endpoint] then
            return bad(format("Invalid value for 'endpoint': '%s'. Supported: /v1/chat/completions, /v1/embeddings.", tostring(b.endpoint)), "endpoint")
        end
        if b.completion_window ~= "24h" then
            return bad("Invalid value for 'completion_window': only '24h' is supported.", "completion_window")
        end
        local job = engine.new(mock, "openai", "batch_", {}, {
            input_file_id = b.input_file_id, endpoint = b.endpoint, completion_window = b.completion_window,
            metadata = type(b.metadata) == "table" and b.metadata or nil, pending = true,
        })
        return json_response(batch_object(job))
    elseif ep == "batches_list" then
        local q = ctx.req.query or ""
        local limit = tonumber(q:match("limit=(%d+)")) or 20
        local data, more = engine.page(mock, "openai", q:match("after=([%w_%-]+)"), limit)
        for i, job in ipairs(data) do data[i] = batch_object(look(mock, job)) end
        return list(data, more)
    end
    local job = mock.batch_jobs[id]
    if not job or job.dialect ~= "openai" then return not_found("batch", id) end
    look(mock, job)
    if ep == "batch_cancel" then
        if not job.failed and not engine.cancel(mock, job) then
            return response(409, err_body(format("Cannot cancel a batch with status '%s'.", batch_object(job).status)))
        end
        if job.failed then
            return response(409, err_body("Cannot cancel a batch with status 'failed'."))
        end
    end
    return json_response(batch_object(job))
end

return M
