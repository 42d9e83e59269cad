--- Policy: route each request by rules; the first rule that matches
--- decides the target, else `default`.
---
--- ```lua
--- weft.configure { models = {
---     routed = { policy = "router", default = "openai/gpt-4o-mini", targets = {
---                    "openai/gpt-4o-mini", "anthropic/claude-3-5-sonnet-latest", "gemini/gemini-2.0-flash" },
---                rules = {
---                    { target = "anthropic/claude-3-5-sonnet-latest", when = { tools = true } },
---                    { target = "gemini/gemini-2.0-flash", when = { tokens_over = 8000 } },
---                    { target = "anthropic/claude-3-5-sonnet-latest", when = { tag = "vip", healthy = true } },
---                    { target = 3, when = { predicate = function(req) return #req.messages > 20 end } },
---                } },
--- } }
--- ```
---
--- Conditions of a rule (all must hold) on the request: `tokens_over` /
--- `tokens_under` (estimated input tokens), `tools` (true: the request has
--- tools; false: none), `tag` (in `req.tags`), `metadata` (every key
--- equal), `priority` (a level or a list of them), `predicate` (a
--- function of the request); and on the rule's target: `healthy` (its
--- breaker is not open), `within_deadline` (the limiter's expected wait
--- fits in the time left), `max_price` (USD per 1M input tokens at most).
--- A rule's `name` labels its decisions (default "rule<N>").
local WHEN = { tokens_over = "number", tokens_under = "number", tools = "boolean", tag = "string",
               metadata = "table", priority = true, predicate = "string", healthy = "boolean",
               within_deadline = "boolean", max_price = "number" }

local function index_of(targets, t)
    if type(t) == "number" then return targets[t] and t or nil end
    for i, x in ipairs(targets) do if x.name == t then return i end end
end

local function has(list, v)
    if type(list) ~= "table" then return list == v end
    for _, x in ipairs(list) do if x == v then return true end end
    return false
end

local function matches(w, req, i, api)
    if w.tokens_over and not (api.tokens(req) > w.tokens_over) then return false end
    if w.tokens_under and not (api.tokens(req) < w.tokens_under) then return false end
    if w.tools ~= nil and (type(req.tools) == "table" and req.tools[1] ~= nil) ~= w.tools then return false end
    if w.tag and not has(req.tags or {}, w.tag) then return false end
    if w.metadata then
        for k, v in pairs(w.metadata) do
            if type(req.metadata) ~= "table" or req.metadata[k] ~= v then return false end
        end
    end
    if w.priority and not has(w.priority, req.priority or "normal") then return false end
    if w.healthy ~= nil or w.within_deadline ~= nil or w.max_price then
        local st = api.state(i)
        if w.healthy ~= nil and (st.breaker ~= "open") ~= w.healthy then return false end
        if w.within_deadline ~= nil then
            local rem = api.remaining()
            if (rem == nil or st.wait <= rem) ~= w.within_deadline then return false end
        end
        if w.max_price and not (st.price and st.price.input <= w.max_price) then return false end
    end
    if w.predicate and not api.hook(w.predicate, req) then return false end
    return true
end

return {
    api = 1,
    name = "router",
    kind = "policy",
    version = "1.0.0",
    schema = {
        rules = { type = "table", default = {}, description = "{ {target =, when = {...}, name =}, ... }, first match wins" },
        default = { type = "string", description = "the target when no rule matches (default: the first target)" },
    },

    check = function(cfg, targets)
        for k, r in ipairs(cfg.rules) do
            local at = "rules[" .. k .. "]"
            if type(r) ~= "table" then return nil, at .. " must be a table" end
            if not index_of(targets, r.target) then return nil, at .. ".target is not one of the targets" end
            if type(r.when) ~= "table" then return nil, at .. ".when must be a table of conditions" end
            for c, v in pairs(r.when) do
                local want = WHEN[c]
                if not want then return nil, at .. ".when." .. tostring(c) .. " is not a condition" end
                if want ~= true and type(v) ~= want then return nil, at .. ".when." .. c .. " must be a " .. want end
            end
        end
        if cfg.default and not index_of(targets, cfg.default) then return nil, "default is not one of the targets" end
        return true
    end,

    run = function(req, targets, api, cfg)
        for k, r in ipairs(cfg.rules) do
            local i = index_of(targets, r.target)
            if matches(r.when, req, i, api) then
                local ok, res = api.call(i, nil, r.name or ("rule" .. k))
                if ok then return res end
                return nil, res
            end
        end
        local ok, res = api.call(cfg.default and index_of(targets, cfg.default) or 1, nil, "default")
        if ok then return res end
        return nil, res
    end,
}
