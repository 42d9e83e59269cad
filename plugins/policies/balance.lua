--- Policy: spread calls over equivalent deployments (the same model at
--- several providers, regions or keys).
---
--- ```lua
--- weft.configure { models = {
---     gpt = { policy = "balance", strategy = "weighted",
---             targets = { { model = "azure_east/gpt-4o-mini", weight = 3 }, { model = "openai/gpt-4o-mini", weight = 1 } } },
---     quick = { policy = "balance", strategy = "latency", targets = { "openai/gpt-4o-mini", "groq/llama-3-8b" } },
--- } }
--- ```
---
--- * `strategy`: "weighted" (random, by `weight`; the default),
---   "round_robin", "least_in_flight", "latency" (lowest EWMA of the
---   latency; of the time to first token for streams; a target not measured
---   yet is tried first, and `explore` of the calls go to another one so a
---   target that got faster is noticed), "headroom" (the most remaining
---   quota, as the providers' rate-limit headers say).
--- * Targets whose circuit breaker is open are skipped. When every target
---   is cooling down, the call waits for the first to come back if its
---   deadline (and `max_wait`) allows, instead of failing.
--- * `failover`: after a failure of a kind in `on`, one other target is
---   tried (default true).
local DEFAULT_ON = { "transient", "timeout", "circuit_open", "rate_limited" }
local STRATEGIES = { weighted = true, round_robin = true, least_in_flight = true, latency = true, headroom = true }

local function pick(strategy, op, eligible, targets, states, state, explore)
    local n = #eligible
    if n == 1 then return eligible[1], strategy end
    if strategy == "round_robin" then
        state.rr = (state.rr or 0) % n + 1
        return eligible[state.rr], "round_robin"
    elseif strategy == "least_in_flight" then
        local best, bi = math.huge, nil
        for _, i in ipairs(eligible) do
            local f = states[i].in_flight / (targets[i].weight > 0 and targets[i].weight or 1)
            if f < best then best, bi = f, i end
        end
        return bi, "least_in_flight"
    elseif strategy == "latency" then
        local key = op == "stream" and "ttft" or "latency"
        for _, i in ipairs(eligible) do
            if states[i][key].n == 0 then return i, "unmeasured" end
        end
        local best, bi = math.huge, nil
        for _, i in ipairs(eligible) do
            local e = states[i][key].ewma
            if e < best then best, bi = e, i end
        end
        if explore > 0 and math.random() < explore then
            local k = math.random(n - 1)
            for _, i in ipairs(eligible) do
                if i ~= bi then
                    k = k - 1
                    if k == 0 then return i, "explore" end
                end
            end
        end
        return bi, "lowest_latency"
    elseif strategy == "headroom" then
        local best, bi = -1, nil
        for _, i in ipairs(eligible) do
            local h = states[i].headroom or 1
            if h > best then best, bi = h, i end
        end
        return bi, "most_headroom"
    end
    local total = 0
    for _, i in ipairs(eligible) do total = total + targets[i].weight end
    if total <= 0 then return eligible[1], "weighted" end
    local x = math.random() * total
    for _, i in ipairs(eligible) do
        x = x - targets[i].weight
        if x < 0 then return i, "weighted" end
    end
    return eligible[n], "weighted"
end

return {
    api = 1,
    name = "balance",
    kind = "policy",
    version = "1.0.0",
    schema = {
        strategy = { type = "string", default = "weighted",
                     description = "weighted | round_robin | least_in_flight | latency | headroom" },
        explore = { type = "number", default = 0.05, description = "latency: share of calls sent to another target" },
        failover = { type = "boolean", default = true, description = "try one other target after a failure" },
        on = { type = "table", default = DEFAULT_ON, description = "error kinds that fail over" },
        max_wait = { type = "number", default = 60, description = "longest wait for a target to come back" },
    },

    check = function(cfg)
        if not STRATEGIES[cfg.strategy] then
            return nil, "strategy must be weighted, round_robin, least_in_flight, latency or headroom"
        end
        if not (cfg.explore >= 0 and cfg.explore <= 1) then return nil, "explore must be between 0 and 1" end
        if not (cfg.max_wait >= 0) then return nil, "max_wait must be seconds >= 0" end
        return true
    end,

    -- the healthy path: pick among the targets whose breaker is not open
    -- (`run` handles a failure, and every target cooling down)
    first = function(op, targets, states, cfg, state)
        if cfg.strategy == "weighted" then
            -- pick among all, and keep the pick when its breaker is not open
            -- (the weights among the available targets either way: a pick
            -- that is open is made again among those below); one state read
            local all = cfg.all_targets
            if not all then
                all = {}
                for i = 1, #targets do all[i] = i end
                cfg.all_targets = all
            end
            local i, why = pick("weighted", op, all, targets, states, state, cfg.explore)
            if states[i].breaker ~= "open" then return i, why end
        end
        local eligible = {}
        for i = 1, #targets do
            if states[i].breaker ~= "open" then eligible[#eligible + 1] = i end
        end
        if #eligible == 0 then return nil end
        return pick(cfg.strategy, op, eligible, targets, states, state, cfg.explore)
    end,

    run = function(req, targets, api, cfg, state, first)
        local on = cfg.on_set -- cfg is this plugin's own copy for the model: made once
        if not on then
            on = {}
            for _, k in ipairs(cfg.on) do on[k] = true end
            cfg.on_set = on
        end
        local tried = {}
        local last
        local from = 1
        if first then
            -- `first` sent first.target already, and it failed
            local err = first.error
            tried[first.target], last = true, err
            if not cfg.failover or not on[err.kind] or (req.op == "stream" and err.partial and err.partial.text ~= "") then
                return nil, err
            end
            from = 2
        end
        for round = from, cfg.failover and 2 or 1 do
            local states = api.states()
            local eligible, soonest = {}, math.huge
            for i, st in ipairs(states) do
                if not tried[i] then
                    if st.breaker == "open" then
                        if st.retry_in < soonest then soonest = st.retry_in end
                    else
                        eligible[#eligible + 1] = i
                    end
                end
            end
            if #eligible == 0 then
                if round > 1 then break end
                -- every target is cooling down: wait for the first back
                local rem = api.remaining()
                local wait = soonest + 0.001
                if soonest == math.huge or wait > cfg.max_wait or (rem and wait >= rem) then
                    for i in ipairs(states) do api.decide(i, "breaker_open") end
                    return nil, weft.error.new("circuit_open",
                        ("every target is cooling down (the first is back in %.3f s)"):format(soonest))
                end
                api.decide(nil, "wait_for_cooldown")
                api.sleep(wait)
                states = api.states()
                for i, st in ipairs(states) do
                    if st.breaker ~= "open" then eligible[#eligible + 1] = i end
                end
                if #eligible == 0 then
                    return nil, weft.error.new("circuit_open", "every target is still cooling down")
                end
            end
            local i, why = pick(cfg.strategy, req.op, eligible, targets, states, state, cfg.explore)
            tried[i] = true
            local ok, res = api.call(i, nil, round > 1 and "failover" or why)
            if ok then return res end
            last = res
            if not on[res.kind] or (req.op == "stream" and res.partial and res.partial.text ~= "") then
                return nil, res
            end
        end
        return nil, last
    end,
}
