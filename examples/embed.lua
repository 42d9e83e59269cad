-- embed.lua: embed a few sentences and rank them by similarity to a query
-- (cosine similarity), with OpenAI or Gemini embeddings.
--
--   weft run examples/embed.lua [openai|gemini] ["query"]
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")

local provider = arg[1] or "openai"
local query = arg[2] or "How do I reset my password?"
if not setup.EMBED[provider] then error("embeddings: openai or gemini", 0) end

local docs = {
    "To change your password, open Settings and choose Security.",
    "Our office is closed on public holidays.",
    "Forgotten passwords can be reset from the login page.",
    "Invoices are sent on the first day of each month.",
}

setup.providers { provider }
local model = weft.model(provider .. "/" .. setup.EMBED[provider])
local texts = { query }
for _, d in ipairs(docs) do texts[#texts + 1] = d end
local ok, r = pcall(model.embed, model, texts)
setup.done()
if not ok then error(r, 0) end

local function cosine(a, b)
    local dot, na, nb = 0, 0, 0
    for i = 1, #a do
        dot, na, nb = dot + a[i] * b[i], na + a[i] * a[i], nb + b[i] * b[i]
    end
    return dot / math.sqrt(na * nb)
end

local ranked = {}
for i, d in ipairs(docs) do ranked[i] = { doc = d, score = cosine(r.vectors[1], r.vectors[i + 1]) } end
table.sort(ranked, function(a, b) return a.score > b.score end)
print("query: " .. query)
for _, x in ipairs(ranked) do print(("%6.3f  %s"):format(x.score, x.doc)) end
print(("-- %s/%s: %d vectors of %d dimensions, %d attempt(s)"):format(r.provider, r.model, #r.vectors,
    #r.vectors[1], r.attempts))
