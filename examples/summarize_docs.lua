-- summarize_docs.lua: summarize 500 documents at once, the way a batch job
-- would in production:
--
--   * weft.map runs 32 at a time, with a progress line on a terminal;
--   * a router sends long documents to a long-context model and the rest
--     to a cheap one; each route is a fallback chain to another provider;
--   * a cache in front answers the documents seen before (the corpus has
--     duplicates) without a provider request;
--   * a cost report at the end: who answered, cache hits, tokens and USD.
--
--   weft run examples/summarize_docs.lua [N]
--
-- Without API keys the providers are weft's built-in mock (which fails 5%
-- of OpenAI's calls with 503, as a busy provider would); with keys set, the
-- real services answer (mind the cost: N defaults to 500 short texts).
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")
local MODELS = setup.MODELS
local OPENAI, ANTHROPIC, GEMINI = "openai/" .. MODELS.openai, "anthropic/" .. MODELS.anthropic,
    "gemini/" .. MODELS.gemini
local N = tonumber(arg[1]) or 500

local retry = { max_attempts = 2, base = 0.02, cap = 0.1 }
weft.configure {
    providers = { openai = { retry = retry }, anthropic = { retry = retry }, gemini = { retry = retry } },
    models = {
        cheap = { policy = "fallback", targets = { OPENAI, ANTHROPIC } },
        long = { policy = "fallback", targets = { GEMINI, ANTHROPIC } },
        routed = { policy = "router", targets = { "cheap", "long" }, default = "cheap",
                   rules = { { name = "long_document", target = "long", when = { tokens_over = 200 } } } },
        summarize = { policy = "cache", targets = { "routed" }, max_tokens = 60 },
    },
}
local mock = setup.providers { "openai", "anthropic", "gemini" }
if mock then mock:set_faults { { dialect = "openai", probability = { [503] = 0.05 } } } end

-- The corpus: N documents, one in five a repeat of an earlier one, some long.
local docs = {}
for i = 1, N do
    if i > 10 and i % 5 == 0 then
        docs[i] = docs[i - 7]
    else
        local words = (i % 9 == 0) and 400 or 40
        local parts = {}
        for w = 1, words do parts[w] = ("w%d_%d"):format(i, w % 17) end
        docs[i] = ("Document %d. %s."):format(i, table.concat(parts, " "))
    end
end

local model = weft.model("summarize")
local answered_by, cached = {}, 0
local out = weft.map(docs, function(doc)
    local r = model:complete("Summarize in one sentence:\n" .. doc)
    if r.cached then
        cached = cached + 1
    else
        answered_by[r.provider] = (answered_by[r.provider] or 0) + 1
    end
    return r.text
end, { concurrency = 32, label = "summaries" })
setup.done()

local u = model:usage()
print(("%d documents: %d summarized, %d failed"):format(N, out.ok, out.failed))
for _, e in ipairs(out.errors) do print(("  document %d: %s"):format(e.index, tostring(e.error))) end
local names = {}
for p in pairs(answered_by) do names[#names + 1] = p end
table.sort(names)
for _, p in ipairs(names) do print(("  answered by %-10s %d"):format(p, answered_by[p])) end
print(("  from the cache          %d (hit rate %.2f)"):format(cached, cached / math.max(1, out.ok)))
local long = weft.metrics.value("weft_policy_decisions_total", { policy = "routed", target = "long", reason = "long_document" }) or 0
print(("  routed as long          %d"):format(long))
print(("tokens in %d, out %d, cost $%.4f (every provider call, retries and fallbacks included)"):format(
    u.input_tokens, u.output_tokens, u.cost))
