-- batch.lua: label 200 support tickets through a provider's batch API
-- (OpenAI Batches or Anthropic Message Batches): work that can wait hours,
-- at half the price of the same calls made one by one.
--
--   weft run examples/batch.lua [openai|anthropic]
--
-- Without an API key it runs against weft's mock provider, whose batch
-- jobs take seconds instead of hours.
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")

local provider = arg[1] or "openai"
if provider ~= "openai" and provider ~= "anthropic" then error("batch: openai or anthropic", 0) end
local mock = setup.providers { provider }

local SUBJECTS = { "I was charged twice this month", "The export button crashes the app",
                   "How do I change my email address?", "Refund for my last invoice",
                   "Sync stops after the update" }
local tickets = {}
for i = 1, 200 do
    tickets[("ticket-%03d"):format(i)] = {
        system = "Label the support ticket: billing, bug or question. Answer with the label only.",
        prompt = ("#%d: %s"):format(i, SUBJECTS[(i - 1) % #SUBJECTS + 1]),
        max_tokens = 20,
    }
end

local model = weft.model(provider .. "/" .. setup.MODELS[provider])
-- a real batch takes minutes to hours: poll every 30 s (the mock's: seconds)
local ok, out = pcall(weft.batch, model, tickets, { poll = mock and 0.5 or 30, max_poll = mock and 1 or 300 })
setup.done()
if not ok then error(out, 0) end

print(("batch %s: %s, %d of %d answered, %d failed"):format(out.id, out.status, out.ok, out.total, out.failed))
print("ticket-001: " .. out.results["ticket-001"].text)
for key, e in pairs(out.errors) do print(("  %s failed: %s (%s)"):format(key, e.kind, e.message)) end
local price = weft.calls.price(provider, model.model) -- the list price, per 1M tokens
if out.cost and price then
    local one_by_one = (out.usage.input * price.input + out.usage.output * price.output) / 1e6
    print(("tokens %d in, %d out; cost $%.6f at the batch price (one by one: $%.6f)"):format(
        out.usage.input, out.usage.output, out.cost, one_by_one))
end
