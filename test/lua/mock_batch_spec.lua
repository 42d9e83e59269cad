-- mock_batch_spec.lua: weft mock's batch APIs on the wire (through
-- weft.http, no weft.batch): OpenAI Files + Batches and Anthropic Message
-- Batches, their validation, the compressed timing (processing spread over
-- `delay`, expiry after `window`, cancellation: on a clock the specs step)
-- and the option checks.
local http, json = weft.http, weft.json
local mock_mod = weft.mock

local OA = { authorization = "Bearer " .. mock_mod.DEFAULT_KEYS.openai }
local AN = { ["x-api-key"] = mock_mod.DEFAULT_KEYS.anthropic, ["anthropic-version"] = "2023-06-01",
             ["content-type"] = "application/json" }

local function req(m, method, path, headers, body)
    local r = http.request { method = method, url = m.url .. path, headers = headers, body = body }
    local ok, v = pcall(json.decode, r.body)
    return r.status, ok and v or r.body
end

local function upload(m, text)
    local b = "XyZ"
    local body = "--" .. b .. '\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--' .. b
        .. '\r\ncontent-disposition: form-data; name="file"; filename="in.jsonl"\r\n\r\n' .. text .. "\r\n--" .. b .. "--\r\n"
    local h = { authorization = OA.authorization, ["content-type"] = "multipart/form-data; boundary=" .. b }
    return req(m, "POST", "/v1/files", h, body)
end

local function chat_line(id, text, url)
    return json.encode { custom_id = id, method = "POST", url = url or "/v1/chat/completions",
                         body = { model = "gpt-4o-mini", messages = { { role = "user", content = text } } } }
end

local function create(m, file_id)
    local h = { authorization = OA.authorization, ["content-type"] = "application/json" }
    return req(m, "POST", "/v1/batches", h, json.encode { input_file_id = file_id, endpoint = "/v1/chat/completions",
                                                           completion_window = "24h" })
end

-- The mock's clock: stepped by the specs (binary fractions: exact sums).
local T = 0

-- Look at a job until `field` is `want`, the clock a step further each look.
local function until_status(m, path, headers, field, want)
    for _ = 1, 100 do
        local st, b = req(m, "GET", path, headers)
        assert.are.equal(200, st)
        if b[field] == want then return b end
        T = T + 0.125
    end
    error("never reached " .. want)
end

describe("weft mock batch APIs", function()
    local m
    before_each(function()
        m = mock_mod.start { port = 0, batch = { delay = 0.25, finalize = 0.125, cancel_delay = 0.125 },
                             clock = function() return T end }
    end)
    after_each(function() m:close() end)

    it("OpenAI: upload, create, validating -> in_progress -> completed, output and error files", function()
        local st, f = upload(m, chat_line("a", "one") .. "\n" .. chat_line("b", "") .. "\n")
        assert.are.equal(200, st)
        assert.are.equal("batch", f.purpose)
        local _, b = create(m, f.id)
        assert.are.equal("validating", b.status)
        assert.are.equal(0, m:stats().batch_items) -- nothing runs before it is looked at
        local done = until_status(m, "/v1/batches/" .. b.id, OA, "status", "completed")
        assert.are.same({ total = 2, completed = 2, failed = 0 }, done.request_counts)
        local _, out = req(m, "GET", "/v1/files/" .. done.output_file_id .. "/content", OA)
        local seen = {}
        for l in out:gmatch("[^\n]+") do
            local v = json.decode(l)
            seen[v.custom_id] = v.response.body.choices[1].message.content
        end
        assert.are.same({ a = "echo: one", b = "echo: " }, seen)
        assert.are.equal(json.null, done.error_file_id)
        assert.are.equal(2, m:stats().batch_items)
    end)

    it("OpenAI: listing a batch not looked at yet reads its input first", function()
        m:set_batch { delay = 0, finalize = 0 }
        local _, f = upload(m, chat_line("a", "one") .. "\n")
        local _, b = create(m, f.id)
        local st, list = req(m, "GET", "/v1/batches?limit=5", OA)
        assert.are.equal(200, st)
        assert.are.equal(b.id, list.data[1].id)
        assert.are.equal("completed", list.data[1].status)
        assert.are.same({ total = 1, completed = 1, failed = 0 }, list.data[1].request_counts)
        assert.is_string(list.data[1].output_file_id)
    end)

    it("OpenAI: a bad input file fails the batch with the lines named", function()
        local _, f = upload(m, chat_line("a", "x") .. "\n" .. chat_line("a", "y") .. "\n" .. chat_line("c", "z", "/v1/embeddings") .. "\nnot json\n")
        local _, b = create(m, f.id)
        local failed = until_status(m, "/v1/batches/" .. b.id, OA, "status", "failed")
        local lines = {}
        for _, e in ipairs(failed.errors.data) do lines[#lines + 1] = e.line .. ":" .. e.code end
        assert.are.same({ "2:duplicate_custom_id", "3:mismatched_endpoint", "4:invalid_json_line" }, lines)
        assert.are.equal(0, m:stats().batch_items)
        -- and what create refuses at once
        local st = create(m, "file-none")
        assert.are.equal(404, st)
        local st2, e = req(m, "POST", "/v1/batches", { authorization = OA.authorization, ["content-type"] = "application/json" },
            json.encode { input_file_id = f.id, endpoint = "/v1/chat/completions", completion_window = "1h" })
        assert.are.equal(400, st2)
        assert.matches("completion_window", e.error.message)
    end)

    it("spreads processing over `delay`, expires after `window`", function()
        m:set_batch { delay = 2, window = 0.5 }
        local lines = {}
        for i = 1, 100 do lines[i] = chat_line("r" .. i, "q" .. i) end
        local _, f = upload(m, table.concat(lines, "\n"))
        local _, b = create(m, f.id)
        local _, first = req(m, "GET", "/v1/batches/" .. b.id, OA) -- validated: processing starts now
        assert.are.equal(0, first.request_counts.completed)
        T = T + 0.25
        local _, mid = req(m, "GET", "/v1/batches/" .. b.id, OA)
        assert.are.equal("in_progress", mid.status)
        assert.are.equal(12, mid.request_counts.completed) -- 0.25 s of 2 s: 12.5 of 100
        T = T + 0.25
        local _, e = req(m, "GET", "/v1/batches/" .. b.id, OA)
        assert.are.equal("expired", e.status)
        assert.are.same({ total = 100, completed = 25, failed = 75 }, e.request_counts)
        local _, errs = req(m, "GET", "/v1/files/" .. e.error_file_id .. "/content", OA)
        local n = 0
        for l in errs:gmatch("[^\n]+") do
            assert.are.equal("batch_expired", json.decode(l).error.code)
            n = n + 1
        end
        assert.are.equal(75, n)
    end)

    it("Anthropic: create, cancel, ended with canceled results; results refused before it ends", function()
        m:set_batch { delay = 30 }
        local body = json.encode { requests = { { custom_id = "a", params = { model = "claude-3-5-haiku-latest", max_tokens = 5,
                                                                          messages = { { role = "user", content = "x" } } } } } }
        local st, b = req(m, "POST", "/v1/messages/batches", AN, body)
        assert.are.equal(200, st)
        assert.are.equal("in_progress", b.processing_status)
        local st2 = req(m, "GET", "/v1/messages/batches/" .. b.id .. "/results", AN)
        assert.are.equal(400, st2)
        local _, c = req(m, "POST", "/v1/messages/batches/" .. b.id .. "/cancel", AN)
        assert.are.equal("canceling", c.processing_status)
        local ended = until_status(m, "/v1/messages/batches/" .. b.id, AN, "processing_status", "ended")
        assert.are.equal(1, ended.request_counts.canceled)
        assert.matches("^http://127%.0%.0%.1:%d+/v1/messages/batches/" .. b.id .. "/results$", ended.results_url)
        local res = http.request { url = m.url .. "/v1/messages/batches/" .. b.id .. "/results", headers = AN }.body
        assert.are.equal("canceled", json.decode(res:match("[^\n]+")).result.type)
    end)

    it("Anthropic: refuses a batch with bad or duplicate custom ids", function()
        local p = { model = "claude-3-5-haiku-latest", max_tokens = 5, messages = { { role = "user", content = "x" } } }
        for _, reqs in ipairs { { { custom_id = "a b", params = p } },
                                { { custom_id = "a", params = p }, { custom_id = "a", params = p } },
                                {} } do
            local st, e = req(m, "POST", "/v1/messages/batches", AN, json.encode { requests = json.array(reqs) })
            assert.are.equal(400, st)
            assert.are.equal("invalid_request_error", e.error.type)
        end
    end)

    it("strict_models: a request for an unknown model gets the dialect's 404 in the results", function()
        m:close()
        m = mock_mod.start { port = 0, strict_models = true, batch = { delay = 0, finalize = 0 },
                             clock = function() return T end }
        -- OpenAI: the item for a model the mock does not know fails with model_not_found
        local nope = json.encode { custom_id = "b", method = "POST", url = "/v1/chat/completions",
                                   body = { model = "gpt-nope", messages = { { role = "user", content = "y" } } } }
        local _, f = upload(m, chat_line("a", "x") .. "\n" .. nope .. "\n")
        local _, b = create(m, f.id)
        local done = until_status(m, "/v1/batches/" .. b.id, OA, "status", "completed")
        assert.are.same({ total = 2, completed = 1, failed = 1 }, done.request_counts)
        local errs = http.request { url = m.url .. "/v1/files/" .. done.error_file_id .. "/content", headers = OA }.body
        local e = json.decode(errs:match("[^\n]+"))
        assert.are.equal("b", e.custom_id)
        assert.are.equal(404, e.response.status_code)
        assert.are.equal("model_not_found", e.response.body.error.code)
        -- Anthropic: an errored result with not_found_error
        local msgs = { { role = "user", content = "x" } }
        local body = json.encode { requests = {
            { custom_id = "a", params = { model = "claude-3-5-haiku-latest", max_tokens = 5, messages = msgs } },
            { custom_id = "b", params = { model = "claude-nope", max_tokens = 5, messages = msgs } } } }
        local _, ab = req(m, "POST", "/v1/messages/batches", AN, body)
        until_status(m, "/v1/messages/batches/" .. ab.id, AN, "processing_status", "ended")
        local res = http.request { url = m.url .. "/v1/messages/batches/" .. ab.id .. "/results", headers = AN }.body
        local by_id = {}
        for l in res:gmatch("[^\n]+") do
            local v = json.decode(l)
            by_id[v.custom_id] = v.result
        end
        assert.are.equal("succeeded", by_id.a.type)
        assert.are.equal("errored", by_id.b.type)
        assert.are.same({ type = "not_found_error", message = "model: claude-nope" }, by_id.b.error.error)
        assert.are.equal(2, m:stats().by_fault.model_not_found)
    end)

    it("checks its batch options", function()
        assert.has_error(function() m:set_batch { delay = -1 } end)
        assert.has_error(function() m:set_batch { speed = 1 } end)
        assert.has_error(function() mock_mod.start { port = 0, batch = { window = "24h" } } end)
        local st = req(m, "POST", "/_mock/batch", {}, '{"delay": "x"}')
        assert.are.equal(400, st)
        local st2, o = req(m, "POST", "/_mock/batch", {}, '{"delay": 5}')
        assert.are.equal(200, st2)
        assert.are.equal(5, o.delay)
    end)
end)
