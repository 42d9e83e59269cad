--- Policy: send the request to the first target; when it has not answered
--- after a delay (for a stream: delivered no text by then), send it to the
--- next one too. The first success wins; the others are cancelled (their
--- transfers stop, what they used is still counted).
---
--- ```lua
--- weft.configure { models = {
---     fast = { policy = "hedge", targets = { "openai/gpt-4o-mini", "gemini/gemini-2.0-flash" },
---              delay = 0.2, budget = 0.1 },
---     p90  = { policy = "hedge", targets = { "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest" },
---              percentile = 90, min_delay = 0.05, max_delay = 2 },
--- } }
--- ```
---
--- * `delay`: seconds before the next target is sent (default 0.2), or
---   `percentile` (50, 75, 90, 95 or 99): that percentile of the first
---   target's recent latency, within `min_delay` .. `max_delay` (`delay`
---   until it has answered 10 times).
--- * `ttft`: for streams, seconds without a first token before the next
---   target is sent (default: the delay).
--- * `budget`: hedges at most this share of the calls (+1); 0 never hedges.
--- A target that fails before its delay is up makes the next start at once.
local PERCENTILES = { [50] = "p50", [75] = "p75", [90] = "p90", [95] = "p95", [99] = "p99" }

return {
    api = 1,
    name = "hedge",
    kind = "policy",
    version = "1.0.0",
    schema = {
        delay = { type = "number", default = 0.2, description = "seconds before the next target is sent" },
        percentile = { type = "number", description = "the delay is this percentile of the first target's latency" },
        min_delay = { type = "number", default = 0.01, description = "lower bound of a percentile delay" },
        max_delay = { type = "number", default = 5, description = "upper bound of a percentile delay" },
        ttft = { type = "number", description = "streams: seconds without a first token before hedging" },
        budget = { type = "number", default = 0.1, description = "the share of calls that may be hedged (+1)" },
    },

    check = function(cfg, targets)
        if #targets < 2 then return nil, "hedge needs at least two targets" end
        if cfg.percentile and not PERCENTILES[cfg.percentile] then
            return nil, "percentile must be 50, 75, 90, 95 or 99"
        end
        for _, k in ipairs { "delay", "min_delay", "max_delay", "ttft" } do
            if cfg[k] and not (cfg[k] >= 0 and cfg[k] < 86400) then return nil, k .. " must be seconds >= 0" end
        end
        if cfg.min_delay > cfg.max_delay then return nil, "min_delay is above max_delay" end
        if not (cfg.budget >= 0 and cfg.budget <= 1) then return nil, "budget must be between 0 and 1" end
        return true
    end,

    run = function(req, targets, api, cfg)
        local delay = cfg.delay
        if req.op == "stream" and cfg.ttft then
            delay = cfg.ttft
        elseif cfg.percentile then
            local lat = api.state(1)[req.op == "stream" and "ttft" or "latency"]
            local q = lat[PERCENTILES[cfg.percentile]]
            if q and lat.n >= 10 then
                delay = math.min(cfg.max_delay, math.max(cfg.min_delay, q))
            end
        end
        local list = { { target = 1, reason = "primary" } }
        for i = 2, #targets do
            list[i] = { target = i, after = delay * (i - 1), reason = "hedge" }
        end
        local ok, res = api.race(list, { hedge_budget = cfg.budget })
        if ok then return res end
        return nil, res
    end,
}
