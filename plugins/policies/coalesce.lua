--- Policy: single embed calls arriving close together become one provider
--- request (embedding APIs take lists: fewer requests against the
--- provider's request limits, less overhead).
---
--- ```lua
--- weft.configure { models = {
---     emb = { policy = "coalesce", targets = { "openai/text-embedding-3-small" }, window = 0.01, size = 100 },
--- } }
--- local v = weft.model("emb"):embed("one text").vectors[1]   -- from many tasks at once
--- ```
---
--- * `window`: seconds a batch waits for more calls (10 ms); `size`: texts
---   that send it at once (100). A call whose deadline comes before the
---   window ends is sent with what is there, at once.
--- * Each caller gets its own vectors in order, and its share of the
---   batch's usage and cost (by its number of texts); a failed batch fails
---   each of its calls with the batch's error.
--- * complete and stream calls go to the target as they are.
return {
    api = 1,
    name = "coalesce",
    kind = "policy",
    version = "1.0.0",
    schema = {
        window = { type = "number", default = 0.01, description = "seconds a batch waits for more calls" },
        size = { type = "number", default = 100, description = "texts that send a batch at once" },
    },

    check = function(cfg, targets)
        if #targets ~= 1 then return nil, "coalesce has one target (the embedding model)" end
        if not (cfg.window >= 0 and cfg.window <= 10) then return nil, "window must be 0..10 seconds" end
        if not (cfg.size >= 1 and cfg.size <= 100000) then return nil, "size must be 1..100000 texts" end
        return true
    end,

    -- complete and stream: straight to the target
    first = function(op)
        if op ~= "embed" then return 1, "passthrough" end
        return nil
    end,

    run = function(req, targets, api, cfg, state, first)
        if first then return nil, first.error end
        local ok, res = api.coalesce(1, { window = cfg.window, size = cfg.size })
        if ok then return res end
        return nil, res
    end,
}
