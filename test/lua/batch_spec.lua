-- batch_spec.lua: weft.batch (lua/weft/batch.lua) over the providers'
-- batch APIs as weft mock implements them (OpenAI Files + Batches,
-- Anthropic Message Batches): results mapped back by custom id whatever
-- order the provider writes them in, per-request failures, progress while
-- polling, cancellation, expiry, resume, retries of polls but not of the
-- steps that create a job, and the plugin boundary (paths, unknown ids).
-- The key is the canary WEFT_CANARY_KEY: scripts/check-canaries.sh greps
-- every test's output for it.
local model = require "weft.model"
local batch = weft.batch
local mockmod = weft.mock

local CANARY = assert(os.getenv("WEFT_CANARY_KEY"), "run through ctest (WEFT_CANARY_KEY)")
local pd = require "plugin_dir" ()

local function question(i) return "question number " .. i end

-- A fault sequence for batch items: a 500 for every 10th request.
local function every_tenth(n, status)
    local seq = {}
    for i = 1, n do seq[i] = (i % 10 == 0) and status or "ok" end
    return seq
end

local function count(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

-- The shipped openai plugin, renamed `name`, with each of `changes` ({from,
-- to}, plain text) made exactly once (a change that no longer applies
-- fails here rather than leaving the spec to test the unchanged plugin).
local function plain_pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end
local function variant(name, changes)
    local text = io.open(weft.plugins.find("provider", "openai")):read("*a")
    local k
    text, k = text:gsub('name = "openai"', 'name = "' .. name .. '"')
    assert(k == 1, "the openai plugin's name")
    for _, c in ipairs(changes) do
        text, k = text:gsub(plain_pattern(c[1]), (c[2]:gsub("%%", "%%%%")))
        assert(k == 1, "not found once in the openai plugin: " .. c[1])
    end
    return pd.write(name, text)
end

-- The mock's batch clock: it moves only when a spec moves it (FAST's
-- on_progress: a step after every poll), so every job's phases are exact
-- whatever the machine's speed. Steps and delays are binary fractions
-- (exact sums).
local T, STEP = 0, 0.125
local function tick() T = T + STEP end

describe("weft.batch", function()
    local mock, n = nil, 0
    local OPENAI, ANTHROPIC
    before_each(function()
        n = n + 1
        STEP = 0.125
        mock = mockmod.start { port = 0, keys = { openai = CANARY, anthropic = CANARY },
                               batch = { delay = 0.25, finalize = 0.125, cancel_delay = 0.125 },
                               clock = function() return T end }
        model.reset()
        local retry = { max_attempts = 3, base = 0.01, cap = 0.02, budget = false }
        weft.configure {
            providers = {
                openai = { base_url = mock.url, retry = retry, secret = weft.secrets.value("b-oa-" .. n, CANARY) },
                anthropic = { base_url = mock.url, retry = retry, secret = weft.secrets.value("b-an-" .. n, CANARY) },
            },
        }
        OPENAI, ANTHROPIC = weft.model("openai/gpt-4o-mini"), weft.model("anthropic/claude-3-5-haiku-latest")
    end)
    after_each(function() mock:close() end)

    local FAST = { poll = 0.01, max_poll = 0.02, progress = false, on_progress = tick }

    it("OpenAI: 200 requests -> 200 results by custom id, the injected failures among them", function()
        mock:set_faults { { endpoint = "batch_item", sequence = every_tenth(200, 500) } }
        local reqs = {}
        for i = 1, 200 do reqs[i] = question(i) end
        local out = batch(OPENAI, reqs, FAST)
        assert.are.equal("completed", out.status)
        assert.are.equal(200, out.total)
        assert.are.equal(180, out.ok)
        assert.are.equal(20, out.failed)
        assert.are.equal(180, count(out.results))
        assert.are.equal(20, count(out.errors))
        for i = 1, 200 do
            if i % 10 == 0 then
                local e = out.errors[i]
                assert.are.equal("transient", e.kind)
                assert.are.equal(500, e.status)
                assert.are.equal(tostring(i), e.custom_id)
                assert.are.equal(out.id, e.batch_id)
                assert.is_nil(out.results[i])
            else
                local r = out.results[i]
                assert.are.equal("echo: " .. question(i), r.text)
                assert.are.equal(tostring(i), r.custom_id)
                assert.are.equal(mockmod.count_tokens("echo: " .. question(i)), r.usage.output)
            end
        end
        -- the mock ran every request once: 200 items, one upload, one create
        local st = mock:stats()
        assert.are.equal(200, st.batch_items)
        assert.are.equal(1, st.by_endpoint["openai files_upload"])
        assert.are.equal(1, st.by_endpoint["openai batches_create"])
        assert.are.equal(2, st.by_endpoint["openai file_content"]) -- the output and the error file
        -- half price: what the results cost is the batch's, half the list price
        local p = weft.calls.price("openai", "gpt-4o-mini")
        local want = (out.usage.input * p.input + out.usage.output * p.output) / 1e6 / 2
        assert.is_true(math.abs(out.cost - want) < 1e-12)
        assert.is_true(out.cost > 0)
        assert.are.equal(out.usage.input, OPENAI:usage().input_tokens)
    end)

    it("Anthropic: a map keyed by custom ids; errored results mapped to the error taxonomy", function()
        mock:set_faults { { endpoint = "batch_item", sequence = every_tenth(200, 529) } }
        local reqs = {}
        for i = 1, 200 do reqs[("doc-%03d"):format(i)] = { prompt = question(i), max_tokens = 50 } end
        reqs["doc-007"] = { prompt = "cut", max_tokens = 2 } -- max_tokens reached: a result, finish "length"
        local out = batch(ANTHROPIC, reqs, FAST)
        assert.are.equal("ended", out.status)
        assert.are.equal(180, out.ok)
        assert.are.equal(20, out.failed)
        -- items run in sorted key order, so every 10th key failed
        for i = 1, 200 do
            local key = ("doc-%03d"):format(i)
            if i % 10 == 0 then
                assert.are.equal("transient", out.errors[key].kind)
                assert.are.equal(key, out.errors[key].custom_id)
            elseif i == 7 then
                assert.are.equal("length", out.results[key].finish_reason)
                assert.are.equal("echo:", out.results[key].text)
            else
                assert.are.equal("echo: " .. question(i), out.results[key].text)
            end
        end
        assert.are.equal(200, mock:stats().batch_items)
        assert.are.equal(1, mock:stats().by_endpoint["anthropic batches_create"])
    end)

    it("reports progress while polling: done counts rising to the total, the provider's status", function()
        mock:set_batch { delay = 1 }
        STEP = 0.25
        local reqs = {}
        for i = 1, 40 do reqs[i] = question(i) end
        local done, status = {}, {}
        local out = batch(OPENAI, reqs, { poll = 0.01, max_poll = 0.01, progress = false,
                                          on_progress = function(s)
                                              done[#done + 1], status[#status + 1] = s.done, s.status
                                              tick()
                                          end })
        assert.are.equal(40, out.ok)
        -- a quarter of the delay between polls: a quarter of the requests each time
        assert.are.same({ 0, 10, 20, 30, 40, 40 }, done)
        assert.are.same({ "in_progress", "in_progress", "in_progress", "in_progress", "finalizing", "completed" }, status)
    end)

    it("cancel: the requests that had not run come back as cancelled errors (both providers)", function()
        mock:set_batch { delay = 64 }
        for _, m in ipairs { OPENAI, ANTHROPIC } do
            local job = batch.submit(m, { "a", "b", "c" }, FAST)
            assert.is_string(job.id)
            local st = job:cancel()
            assert.are.equal("cancelling", st.state)
            local out = job:wait()
            assert.is_true(out.status == "cancelled" or out.status == "ended")
            assert.are.equal(0, out.ok)
            assert.are.equal(3, out.failed)
            for i = 1, 3 do
                assert.are.equal("cancelled", out.errors[i].kind)
                assert.are.equal("batch_cancelled", out.errors[i].reason)
            end
        end
    end)

    it("cancelling a job that has ended reads its status (the provider answers 409), sent once", function()
        for _, m in ipairs { OPENAI, ANTHROPIC } do
            local job = batch.submit(m, { "a" }, FAST)
            assert.are.equal(1, job:wait().ok)
            local before = mock:stats().requests
            local st = job:cancel()
            assert.are.equal("ended", st.state)
            assert.are.equal(1, st.succeeded)
            -- OpenAI: the 409 is not retried, then one poll; Anthropic answers the batch itself
            assert.are.equal(m == OPENAI and 2 or 1, mock:stats().requests - before)
        end
    end)

    it("expiry: what ran is a result, the rest timeout errors with reason batch_expired (both providers)", function()
      for _, m in ipairs { OPENAI, ANTHROPIC } do
        mock:set_batch { delay = 8, window = 0.5 }
        local reqs = {}
        for i = 1, 100 do reqs[i] = question(i) end
        local out = batch(m, reqs, FAST)
        assert.are.equal(m == OPENAI and "expired" or "ended", out.status)
        assert.are.equal(6, out.ok) -- 0.5 s of 8: 6.25 of 100
        assert.are.equal(94, out.failed)
        for i = 1, 100 do
            if out.results[i] then assert.are.equal("echo: " .. question(i), out.results[i].text)
            else
                assert.are.equal("timeout", out.errors[i].kind)
                assert.are.equal("batch_expired", out.errors[i].reason)
            end
        end
        -- the provider runs requests in order: the results are the first ones
        for i = 1, out.ok do assert.is_not_nil(out.results[i]) end
      end
    end)

    it("a wait that times out names the job; resume picks it up and gets every result (both providers)", function()
        for _, m in ipairs { OPENAI, ANTHROPIC } do
            local reqs = { "one", "two", "three" }
            local job = batch.submit(m, reqs, FAST)
            -- the clock stands still: the job cannot end before the wait's timeout
            local ok, err = pcall(job.wait, job, { poll = 0.01, timeout = 0.05, progress = false })
            assert.is_false(ok)
            assert.are.equal("timeout", err.kind)
            assert.are.equal(job.id, err.batch_id)
            local again = batch.resume(m, job.id, reqs, FAST)
            local out = again:wait()
            assert.are.equal(3, out.ok)
            assert.are.equal("echo: two", out.results[2].text)
        end
        assert.are.equal(1, mock:stats().by_endpoint["anthropic batches_create"])
        assert.are.equal(1, mock:stats().by_endpoint["openai batches_create"])
    end)

    it("embeddings through the OpenAI batch API", function()
        local out = batch(OPENAI and weft.model("openai/text-embedding-3-small"), { "a b", { "c", "d e" } },
            { op = "embed", poll = 0.01, progress = false, on_progress = tick })
        assert.are.equal(2, out.ok)
        assert.are.equal(1, #out.results[1].vectors)
        assert.are.equal(2, #out.results[2].vectors)
        local want = mockmod.embedding("d e", #out.results[2].vectors[2])
        for j, x in ipairs(want) do assert.is_true(math.abs(out.results[2].vectors[2][j] - x) < 1e-6) end
    end)

    it("polls and downloads are retried; the step that creates the job is not", function()
        mock:set_faults { { endpoint = "batch", sequence = { 500, 503 } },
                          { endpoint = "file_content", sequence = { 502 } } }
        local out = batch(OPENAI, { "x", "y" }, FAST)
        assert.are.equal(2, out.ok)
        local f = mock:stats().by_fault
        assert.are.same({ 1, 1, 1 }, { f["500"], f["503"], f["502"] }) -- each failure seen once, then retried
        mock:set_faults { { endpoint = "batches_create", sequence = { 500 } } }
        local ok, err = pcall(batch.submit, OPENAI, { "x" }, FAST)
        assert.is_false(ok)
        assert.are.equal("transient", err.kind)
        assert.matches("did not send it again", err.message)
        assert.are.equal(2, mock:stats().by_endpoint["openai batches_create"]) -- the first job's and this one, once
    end)

    it("a provider outage longer than the poll's retries is a missed poll, not the end of the wait", function()
        -- 3 attempts per poll: two polls fail whole, the third gets through
        mock:set_faults { { endpoint = "batch", sequence = { 500, 500, 500, 503, 503, 503 } } }
        local out = batch(OPENAI, { "x" }, FAST)
        assert.are.equal(1, out.ok)
        assert.are.equal(6, mock:stats().by_fault["500"] + mock:stats().by_fault["503"])
    end)

    it("a 429 on the step that creates the job is sent again (the provider refused it)", function()
        mock:set_faults { { endpoint = "batches_create", sequence = { 429 }, retry_after = 0.01 } }
        local out = batch(OPENAI, { "x" }, FAST)
        assert.are.equal(1, out.ok)
        assert.are.equal(2, mock:stats().by_endpoint["openai batches_create"])
    end)

    it("a results file with lines that are not JSON: those are skipped, their requests missing results", function()
        mock:set_faults { { endpoint = "file_content", sequence = { "malformed" } } }
        local out = batch(OPENAI, { "x", "y" }, FAST)
        assert.are.equal(0, out.ok)
        for i = 1, 2 do
            assert.are.equal("integration", out.errors[i].kind)
            assert.are.equal("missing_result", out.errors[i].reason)
        end
    end)

    it("metadata goes to the provider as a copy; options are checked before anything is sent", function()
        local meta = { team = "search", run = "nightly" }
        local job = batch.submit(OPENAI, { "x" }, { metadata = meta, poll = 0.01, progress = false, on_progress = tick })
        assert.are.same({ team = "search", run = "nightly" }, mock.batch_jobs[job.id].metadata)
        assert.is_nil(getmetatable(meta))
        assert.are.same({ team = "search", run = "nightly" }, meta)
        assert.are.equal(1, job:wait().ok)
        local before = mock:stats().requests
        for _, o in ipairs { { timeout = 0 }, { on_progress = true }, { poll = -1 }, { poll = 5, max_poll = 1 },
                             { progress = "yes" }, { metadata = { n = 1 } }, { metadata = "x" } } do
            local ok, err = pcall(batch, OPENAI, { "x" }, o)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
        end
        assert.are.equal(before, mock:stats().requests)
    end)

    it("refuses what cannot batch, before anything is sent", function()
        local before = mock:stats().requests
        local function refused(pattern, ...)
            local ok, err = pcall(...)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
            assert.matches(pattern, err.message)
        end
        refused("cannot embed", batch.submit, ANTHROPIC, { "x" }, { op = "embed" })
        refused("non%-empty", batch.submit, OPENAI, {}, {})
        refused("custom id", batch.submit, OPENAI, { ["has space"] = "x" }, {})
        refused("holes", batch.submit, OPENAI, { [1] = "x", [3] = "y" }, {})
        refused("requests%[2%]", batch.submit, OPENAI, { "x", { max_tokens = 0, prompt = "y" } }, {})
        refused("op must be", batch.submit, OPENAI, { "x" }, { op = "stream" })
        weft.configure { providers = { gemini = { base_url = mock.url, secret = weft.secrets.value("b-ge-" .. n, "k") } } }
        refused("no batch API", batch.submit, weft.model("gemini/gemini-2.0-flash"), { "x" }, {})
        assert.are.equal(before, mock:stats().requests)
    end)

    it("the boundary: a plugin's path to another origin is refused; unknown and missing custom ids", function()
        -- a plugin that polls somewhere else
        variant("batch_evil" .. n, { { 'poll = function(job, cfg) return { method = "GET", path = "/v1/batches/" .. job.id } end',
            'poll = function(job, cfg) return { method = "GET", path = "//evil.example/v1/batches/" .. job.id } end' } })
        -- a plugin that renames one result and drops the other
        variant("batch_odd" .. n, { { 'return { custom_id = line.custom_id, status = tonumber(r.status_code), body = r.body }',
            'if line.custom_id == "2" then return nil, "dropped" end\n'
            .. '                return { custom_id = line.custom_id == "1" and "nobody" or line.custom_id, status = tonumber(r.status_code), body = r.body }' } })
        weft.configure { providers = {
            evil = { plugin = "batch_evil" .. n, base_url = mock.url, secret = weft.secrets.value("b-ev-" .. n, CANARY) },
            odd = { plugin = "batch_odd" .. n, base_url = mock.url, secret = weft.secrets.value("b-od-" .. n, CANARY) },
        } }
        -- weft check sees it before anything runs
        local findings = require("weft.check").file(pd.dir .. "/providers/batch_evil" .. n .. ".lua")
        assert.are.equal(1, findings.errors)
        assert.matches("batch.poll: the host would refuse it", table.concat(findings.lines, "\n"))
        local job = batch.submit(weft.model("evil/gpt-4o-mini"), { "x" }, FAST)
        local ok, err = pcall(job.wait, job)
        assert.is_false(ok)
        assert.are.equal("integration", err.kind)
        assert.matches("refused", err.message)
        assert.is_nil(tostring(err.message):find(CANARY, 1, true))

        -- batch.result returns nothing for "2" (the plugin broke the contract
        -- on that line): that one is lost, not the others
        local out = batch(weft.model("odd/gpt-4o-mini"), { "x", "y", "z" }, FAST)
        assert.are.equal(1, out.ok)
        assert.are.equal("echo: z", out.results[3].text)
        for i = 1, 2 do
            assert.are.equal("integration", out.errors[i].kind)
            assert.are.equal("missing_result", out.errors[i].reason)
        end
    end)

    it("a job the provider fails as a whole raises its reasons; an interrupted wait leaves the job running", function()
        variant("batch_badurl" .. n, { { 'url = enc.path', 'url = "/v1/elsewhere"' } })
        weft.configure { providers = {
            badurl = { plugin = "batch_badurl" .. n, base_url = mock.url, secret = weft.secrets.value("b-bu-" .. n, CANARY) },
        } }
        local ok, err = pcall(batch, weft.model("badurl/gpt-4o-mini"), { "x", "y" }, FAST)
        assert.is_false(ok)
        assert.are.equal("invalid_request", err.kind)
        assert.matches("failed: line 1: The url '/v1/elsewhere' does not match", err.message)
        assert.is_string(err.batch_id)

        local job = batch.submit(OPENAI, { "a", "b" }, FAST)
        local task = weft.spawn(function() return job:wait { poll = 0.01, progress = false } end) -- the clock stands still
        for _ = 1, 1000 do
            if job.last then break end -- it has polled once
            weft.sleep(0.01)
        end
        assert.is_not_nil(job.last)
        task:cancel()
        local tok, terr = pcall(task.wait, task)
        assert.is_false(tok)
        assert.are.equal("cancelled", terr.kind)
        -- nothing was cancelled at the provider: the job goes on
        assert.are.equal("in_progress", job:status().status)
        assert.is_nil(mock:stats().by_endpoint["openai batch_cancel"])
        job:cancel()
    end)

    it("the boundary: a batch step may not set a header that carries credentials", function()
        variant("batch_hdr" .. n, { { 'poll = function(job, cfg) return { method = "GET", path = "/v1/batches/" .. job.id } end',
            'poll = function(job, cfg) return { method = "GET", path = "/v1/batches/" .. job.id, headers = { Authorization = "Bearer mine" } } end' } })
        weft.configure { providers = {
            hdr = { plugin = "batch_hdr" .. n, base_url = mock.url, secret = weft.secrets.value("b-hd-" .. n, CANARY) },
        } }
        local job = batch.submit(weft.model("hdr/gpt-4o-mini"), { "x" }, FAST)
        local polls = mock:stats().by_endpoint["openai batch"]
        local ok, err = pcall(job.wait, job)
        assert.is_false(ok)
        assert.are.equal("integration", err.kind)
        assert.matches("header 'authorization' is the host's", err.message)
        assert.are.equal(polls, mock:stats().by_endpoint["openai batch"]) -- nothing sent
    end)

    it("a result under an unknown custom id is ignored and the request it belonged to is an integration error", function()
        variant("batch_rename" .. n, { { 'return { custom_id = line.custom_id, status = tonumber(r.status_code), body = r.body }',
            'return { custom_id = line.custom_id == "1" and "nobody" or line.custom_id, status = tonumber(r.status_code), body = r.body }' } })
        weft.configure { providers = {
            rename = { plugin = "batch_rename" .. n, base_url = mock.url, secret = weft.secrets.value("b-rn-" .. n, CANARY) },
        } }
        local out = batch(weft.model("rename/gpt-4o-mini"), { "x", "y" }, FAST)
        assert.are.equal(1, out.ok)
        assert.are.equal("echo: y", out.results[2].text)
        assert.are.equal("integration", out.errors[1].kind)
        assert.are.equal("missing_result", out.errors[1].reason)
    end)
end)

teardown(function() pd.remove() end)
