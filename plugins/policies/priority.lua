--- Policy: high-priority requests go to the targets kept for them (no
--- tight limits), the rest to the cheapest of the others, where the
--- limiter's priority queue orders them ("normal" before "low").
---
--- ```lua
--- weft.configure { models = {
---     tiered = { policy = "priority", high = { "openai_reserved/gpt-4o-mini" },
---                targets = { "openai_reserved/gpt-4o-mini", "openai/gpt-4o-mini", "groq/llama-3-8b" } },
--- } }
--- weft.model("tiered"):complete { prompt = "page the on-call", priority = "high" }
--- ```
---
--- * `high`: the targets for high priority (default: the first target);
---   `levels`: the priorities counted as high (default { "high" }).
--- * A request goes through its tier in order (high: as listed; others:
---   cheapest first by the providers' price tables), skipping targets whose
---   breaker is open and moving on after a failure of a kind in `on`. A
---   high request whose tier is all unavailable may use the others
---   (`spill = true`, the default).
local DEFAULT_ON = { "transient", "timeout", "circuit_open", "rate_limited", "quota_exhausted" }

local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do s[v] = true end
    return s
end

return {
    api = 1,
    name = "priority",
    kind = "policy",
    version = "1.0.0",
    schema = {
        high = { type = "table", description = "targets for high priority (default: the first target)" },
        levels = { type = "table", default = { "high" }, description = "priorities that count as high" },
        on = { type = "table", default = DEFAULT_ON, description = "error kinds that move on within the tier" },
        spill = { type = "boolean", default = true, description = "high requests may use the other targets too" },
    },

    check = function(cfg, targets)
        for k, h in ipairs(cfg.high or {}) do
            local found = false
            for _, t in ipairs(targets) do if t.name == h then found = true end end
            if not found then return nil, "high[" .. k .. "] is not one of the targets" end
        end
        return true
    end,

    run = function(req, targets, api, cfg)
        local high_set = set_of(cfg.high or { targets[1].name })
        local is_high = set_of(cfg.levels)[req.priority or "normal"] == true
        local states = api.states()
        local high, rest = {}, {}
        for i, t in ipairs(targets) do
            if high_set[t.name] then high[#high + 1] = i else rest[#rest + 1] = i end
        end
        local function price(i)
            local p = states[i].price
            return p and (p.input + p.output) or math.huge
        end
        table.sort(rest, function(a, b)
            local pa, pb = price(a), price(b)
            if pa ~= pb then return pa < pb end
            return a < b
        end)
        local order, reason = rest, "cheapest"
        if is_high then
            order, reason = high, "high_priority"
            if cfg.spill then for _, i in ipairs(rest) do order[#order + 1] = i end end
        end
        if #order == 0 then order = is_high and rest or high end
        local on = set_of(cfg.on)
        local last
        for k, i in ipairs(order) do
            if states[i].breaker == "open" and k < #order then
                api.decide(i, "breaker_open")
            else
                local ok, res = api.call(i, nil, last and ("after_" .. last.kind) or reason)
                if ok then return res end
                last = res
                if not on[res.kind] then return nil, res end
            end
        end
        return nil, last
    end,
}
