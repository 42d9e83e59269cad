--- Policy: an exact response cache in front of a model.
---
--- ```lua
--- weft.configure { models = {
---     faq = { policy = "cache", targets = { "openai/gpt-4o-mini" }, ttl = 3600, max_bytes = 64 * 1024 * 1024 },
--- } }
--- weft.model("faq"):complete("What are your opening hours?")       -- the provider, once
--- weft.model("faq"):complete("What are your opening hours?")       -- the cache: result.cached
--- weft.model("faq"):complete { prompt = "...", cache = "refresh" }  -- asks again, keeps the new answer
--- weft.model("faq"):complete { prompt = "...", cache = false }      -- neither reads nor writes
--- ```
---
--- The key is what decides an answer: the target, the operation, the
--- messages and parameters, tools (not the id, priority, deadline or
--- tags). Identical calls in flight share one provider request. Errors are
--- never cached. A stream served from the cache replays its events. Each
--- lookup is counted in weft_cache_requests_total{cache = the model's
--- name, result = "hit", "miss" or "bypass"}. The store is in memory (LRU,
--- `ttl`, `max_entries`, `max_bytes`), one per process.
---
--- Shared mode (`shared = true`: the configuration's `redis`; or a Redis
--- URL, or `{url =, password =, timeout =, key =}`): the answers live in
--- Redis, where every process configured with the same model finds them
--- (keys `{weft:cache:NAME}:v1:` and the SHA-256 of the cache key, `NAME`
--- the model's name or `key`, each with the `ttl`). An answer whose JSON is
--- larger than `max_entry_bytes` (1 MiB) is not stored (counted in
--- weft_cache_not_stored_total). On a miss the first process to lock the
--- key asks the provider; the others look for its answer every 50 ms for up
--- to 5 s (or their deadline), then ask the provider themselves: one
--- request across processes is best effort (exact within a process).
--- When Redis fails or is slow, a lookup is a miss after at most the
--- command timeout (`timeout`, 0.25 s) and the call goes to the provider
--- (weft_redis_errors_total; logged at warn once per change of state).
--- The Redis is the host's to read from the configuration: this plugin
--- sees only whether there is one. Not with `semantic` (its index is in
--- the process).
---
--- Semantic mode (`semantic = "openai/text-embedding-3-small"`, optional):
--- on an exact miss the question is embedded with that model and the
--- answer of the closest question asked before is returned when their
--- cosine similarity is at least `threshold` (0.95). The risk is a false
--- hit: two questions that embed close but want different answers (a
--- changed number, a negation) get the same one. Use it where answers may
--- be shared (FAQ-like traffic), with a high threshold; each lookup costs an
--- embedding call, counted in the model's usage.
return {
    api = 1,
    name = "cache",
    kind = "policy",
    version = "1.0.0",
    schema = {
        ttl = { type = "number", default = 3600, description = "seconds an answer is kept" },
        max_entries = { type = "number", default = 10000, description = "answers kept at most" },
        max_bytes = { type = "number", default = 64 * 1024 * 1024, description = "bytes kept at most" },
        semantic = { type = "string", description = "an embedding model: a question close enough to one answered before gets its answer" },
        threshold = { type = "number", default = 0.95, description = "semantic: the cosine similarity that counts as the same question" },
        shared = { type = "boolean|string|table", default = false,
                   description = "keep the answers in Redis for every process: true (the configuration's redis), a URL or {url =, password =, timeout =, key =}" },
        max_entry_bytes = { type = "number", default = 1024 * 1024,
                            description = "shared: an answer larger than this (its JSON) is not stored" },
    },

    check = function(cfg, targets)
        if #targets ~= 1 then return nil, "cache has one target" end
        if not (cfg.ttl >= 0) then return nil, "ttl must be seconds >= 0" end
        if not (cfg.max_entries >= 1) then return nil, "max_entries must be >= 1" end
        if not (cfg.max_bytes >= 1) then return nil, "max_bytes must be >= 1" end
        if not (cfg.threshold > 0 and cfg.threshold <= 1) then return nil, "threshold must be in (0, 1]" end
        if not (cfg.max_entry_bytes >= 1) then return nil, "max_entry_bytes must be >= 1" end
        -- (where `shared` points is checked by the host, which reads it)
        return true
    end,

    run = function(req, targets, api, cfg)
        -- (the semantic model, threshold, the shared Redis and
        -- max_entry_bytes are read by the host from the model's
        -- configuration)
        local ok, res = api.cached(1, { ttl = cfg.ttl, max_entries = cfg.max_entries, max_bytes = cfg.max_bytes })
        if ok then return res end
        return nil, res
    end,
}
