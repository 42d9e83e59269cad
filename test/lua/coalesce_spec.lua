-- coalesce_spec.lua: the coalesce policy (plugins/policies/coalesce.lua,
-- api.coalesce in lua/weft/policy.lua) against weft mock: embed calls
-- within the window become one provider request each `size` texts, every
-- caller gets its own vectors, usage adds up, deadlines and errors.
local model = require "weft.model"
local policy = require "weft.policy"
local mockmod = weft.mock

local EMB = "openai/text-embedding-3-small"

describe("coalesce", function()
    local mock, n = nil, 0
    before_each(function()
        mock = mockmod.start { port = 0, limits = { rpm = 1e9, tpm = 1e12 } }
        model.reset()
        policy.reset()
        n = n + 1
        weft.configure {
            providers = { openai = { base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
                                     secret = weft.secrets.value("coal-" .. n, mockmod.DEFAULT_KEYS.openai) } },
            models = { ["emb" .. n] = { policy = "coalesce", targets = { EMB }, window = 0.05, size = 100 } },
        }
    end)
    after_each(function() mock:close() end)

    local function embeddings_requests()
        local c = 0
        for ep, k in pairs(mock:stats().by_endpoint) do
            if ep:find("embed") then c = c + k end
        end
        return c
    end

    it("1,000 embed calls within the window, size 100: exactly 10 provider requests, each caller its vector", function()
        local m = weft.model("emb" .. n)
        local tasks, got = {}, {}
        for i = 1, 1000 do
            tasks[i] = weft.spawn(function() got[i] = m:embed("text number " .. i) end)
        end
        for _, t in ipairs(tasks) do t:wait() end
        assert.are.equal(10, embeddings_requests())
        local input = 0
        for i = 1, 1000 do
            local want = mockmod.embedding("text number " .. i, #got[i].vectors[1])
            for j, x in ipairs(want) do assert.is_true(math.abs(got[i].vectors[1][j] - x) < 1e-6) end
            assert.are.equal("coalesced", got[i].route[1].reason)
            assert.are.equal(100, got[i].route[1].batch)
            input = input + got[i].usage.input
        end
        -- the callers' shares add up to what the provider counted
        assert.are.equal(weft.model(EMB):usage().input_tokens, input)
        assert.are.equal(input, m:usage().input_tokens)
    end)

    it("sends a caller whose deadline comes before the window ends at once", function()
        local m = weft.model("emb" .. n)
        local r = m:embed({ "hurry" }, { timeout = 0.01 })
        assert.are.equal(1, #r.vectors)
        assert.are.equal(1, r.route[1].batch)
        assert.are.equal(1, embeddings_requests())
    end)

    it("fails every call of a failed batch with its error", function()
        mock:set_faults { { dialect = "openai", sequence = { 503 } } }
        local m = weft.model("emb" .. n)
        local res = {}
        local tasks = {}
        for i = 1, 5 do tasks[i] = weft.spawn(function() res[i] = { pcall(m.embed, m, "t" .. i) } end) end
        for _, t in ipairs(tasks) do t:wait() end
        for i = 1, 5 do
            assert.is_false(res[i][1])
            assert.are.equal("transient", res[i][2].kind)
        end
        assert.are.equal(1, embeddings_requests())
    end)

    it("a caller cancelled while its batch fills leaves the others their vectors", function()
        local m = weft.model("emb" .. n)
        local got = {}
        local tasks = {}
        for i = 1, 3 do tasks[i] = weft.spawn(function() got[i] = m:embed("text " .. i) end) end
        weft.sleep(0) -- the three join the batch (its window is 50 ms)
        tasks[2]:cancel()
        assert.are.equal("cancelled", select(2, pcall(tasks[2].wait, tasks[2])).kind)
        tasks[1]:wait()
        tasks[3]:wait()
        assert.are.equal(1, embeddings_requests())
        for _, i in ipairs { 1, 3 } do
            local want = mockmod.embedding("text " .. i, #got[i].vectors[1])
            for j, x in ipairs(want) do assert.is_true(math.abs(got[i].vectors[1][j] - x) < 1e-6) end
        end
    end)

    it("refuses coalescing anything but embeddings, and bad options", function()
        assert.has_error(function()
            weft.configure { models = { bad = { policy = "coalesce", targets = { EMB }, size = 0 } } }
        end)
        assert.has_error(function()
            weft.configure { models = { bad = { policy = "coalesce", targets = { EMB, EMB } } } }
        end)
    end)

    it("passes complete calls through to the target", function()
        weft.configure { models = { ["chat" .. n] = { policy = "coalesce", targets = { "openai/gpt-4o-mini" } } } }
        assert.are.equal("echo: hi", weft.model("chat" .. n):complete("hi").text)
    end)
end)
