-- sequence_spec.lua: weft.sequence (lua/weft/sequence.lua) against weft
-- mock: outputs feed the next step, a failing step is named with the
-- outputs before it, and a checkpoint makes a rerun call only the steps
-- that had not finished.
local model = require "weft.model"
local mockmod = weft.mock

describe("weft.sequence", function()
    local mock
    before_each(function()
        mock = mockmod.start { port = 0 }
        model.reset()
        weft.configure {
            providers = {
                openai = { base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
                           secret = weft.secrets.value("seq-o", mockmod.DEFAULT_KEYS.openai) },
                anthropic = { base_url = mock.url, breaker = false, retry = { max_attempts = 1, budget = false },
                              secret = weft.secrets.value("seq-a", mockmod.DEFAULT_KEYS.anthropic) },
            },
            models = { a = "openai/gpt-4o-mini", b = "anthropic/claude-3-5-haiku-latest" },
        }
    end)
    after_each(function() mock:close() end)

    local STEPS = {
        { name = "one", model = "a", prompt = "first {input}" },
        { name = "two", model = "b", prompt = "second {prev}" },
        { name = "three", model = "a", prompt = function(prev, out, input) return "third " .. out.one .. " | " .. input end },
    }

    it("feeds each step's output to the next", function()
        local r = weft.sequence(STEPS, "x")
        assert.are.equal("echo: first x", r.outputs.one)
        assert.are.equal("echo: second echo: first x", r.outputs.two)
        assert.are.equal("echo: third echo: first x | x", r.output)
        assert.are.equal(r.outputs[3], r.output)
        assert.are.equal(3, #r.results)
        assert.are.equal(0, r.resumed)
    end)

    it("names a failing step with the outputs before it, and a checkpoint resumes from it", function()
        local ckpt = os.tmpname()
        os.remove(ckpt)
        mock:set_faults { { dialect = "anthropic", sequence = { 400 } } }
        local ok, err = pcall(weft.sequence, STEPS, "x", { checkpoint = ckpt })
        assert.is_false(ok)
        assert.are.equal("invalid_request", err.kind)
        assert.are.equal(2, err.step)
        assert.are.equal("two", err.step_name)
        assert.matches("step 2 two %(b%) failed", err.message)
        assert.are.same({ [1] = "echo: first x", one = "echo: first x" }, err.outputs)
        assert.are.equal(1, mock:stats().by_dialect.openai)
        -- the rerun calls steps 2 and 3 only
        mock:reset()
        local r = weft.sequence(STEPS, "x", { checkpoint = ckpt })
        assert.are.equal(1, r.resumed)
        assert.are.equal("echo: third echo: first x | x", r.output)
        assert.are.equal(1, mock:stats().by_dialect.openai)   -- step 3
        assert.are.equal(1, mock:stats().by_dialect.anthropic) -- step 2
        assert.is_nil(io.open(ckpt, "r")) -- done: the checkpoint is gone
    end)

    it("does not resume a checkpoint of another input", function()
        local ckpt = os.tmpname()
        os.remove(ckpt)
        mock:set_faults { { dialect = "anthropic", sequence = { 400 } } }
        pcall(weft.sequence, STEPS, "x", { checkpoint = ckpt })
        mock:reset()
        local r = weft.sequence(STEPS, "y", { checkpoint = ckpt })
        assert.are.equal(0, r.resumed)
        assert.are.equal(2, mock:stats().by_dialect.openai)
    end)

    it("says so when the checkpoint cannot be written, after the step that ran", function()
        local ok, err = pcall(weft.sequence, STEPS, "x", { checkpoint = "/nonexistent-dir/ckpt.json" })
        assert.is_false(ok)
        assert.matches("cannot write the checkpoint /nonexistent%-dir/ckpt.json", tostring(err))
    end)

    it("refuses steps without a model or a prompt", function()
        assert.has_error(function() weft.sequence({}, "x") end)
        assert.has_error(function() weft.sequence({ { prompt = "p" } }, "x") end)
        assert.has_error(function() weft.sequence({ { model = "a" } }, "x") end)
    end)
end)
