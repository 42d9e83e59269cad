-- complete.lua: one chat completion through the whole pipeline (limiter,
-- retries, auth by the host, metrics), on the provider named on the
-- command line. Without that provider's API key it runs against weft's
-- built-in mock.
--
--   weft run examples/complete.lua [openai|anthropic|gemini] ["question"]
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")

local provider = arg[1] or "openai"
local question = arg[2] or "What is the capital of France?"
if not setup.MODELS[provider] then error("unknown provider " .. provider .. " (openai, anthropic or gemini)", 0) end

setup.providers { provider }
local model = weft.model(provider .. "/" .. setup.MODELS[provider], { max_tokens = 300 })
local ok, r = pcall(model.complete, model, { system = "Answer in one sentence.", prompt = question })
setup.done()
if not ok then error(r, 0) end -- an error value: kind, status, attempts, ...

print(r.text)
print(("-- %s/%s: %d tokens in, %d out, %d attempt(s), %.0f ms, finish: %s%s"):format(r.provider, r.model,
    r.usage.input, r.usage.output, r.attempts, r.latency * 1000, r.finish_reason,
    r.cost and (", $" .. string.format("%.6f", r.cost)) or ""))
