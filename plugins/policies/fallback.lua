--- Policy: an ordered chain of targets; the next one is tried when the
--- one before fails in a way another model may not.
---
--- ```lua
--- weft.configure { models = {
---     smart = { policy = "fallback",
---               targets = { "openai/gpt-4o-mini",
---                           { model = "anthropic/claude-3-5-haiku-latest", context_window = 200000 } },
---               stream_failure = "continue" },
--- } }
--- ```
---
--- * `on` (error kinds that move on): rate_limited, transient, timeout,
---   circuit_open, quota_exhausted. Each target's own retries come first.
--- * A context-length refusal (`invalid_request`, reason `context_length`)
---   moves on to the next target whose `context_window` holds the request
---   (targets without one are tried).
--- * `auth` never moves on unless `on_auth = true`; it raises the
---   `escalate` event once per failure either way.
--- * Content-filter refusals (finish_reason or reason `content_filter`)
---   move on when `on_content_filter = true`.
--- * `transform(req, err)`: a function that may return a rewritten request
---   (say, without the oldest messages) to try once more on the same target
---   before moving on.
--- * `stream_failure`: what a stream that failed after delivering text
---   does: "error" (the caller gets the error with `partial`), "restart"
---   (the next target answers from the start; the caller gets a `restart`
---   event first) or "continue" (the next target gets the delivered text as
---   an assistant prefix and its text is appended). `result.parts` says who
---   produced what.
local DEFAULT_ON = { "rate_limited", "transient", "timeout", "circuit_open", "quota_exhausted" }

local function set_of(list)
    local s = {}
    for _, k in ipairs(list) do s[k] = true end
    return s
end

local function filtered(x)
    return type(x) == "table" and (x.finish_reason == "content_filter" or x.reason == "content_filter")
end

-- The request that continues `text` already delivered: the text as the
-- start of the assistant's answer.
local function continuation(req, text)
    local msgs = {}
    for i, m in ipairs(req.messages or {}) do msgs[i] = m end
    msgs[#msgs + 1] = { role = "assistant", content = text }
    local out = {}
    for k, v in pairs(req) do out[k] = v end
    out.messages = msgs
    return out
end

return {
    api = 1,
    name = "fallback",
    kind = "policy",
    version = "1.0.0",
    schema = {
        on = { type = "table", default = DEFAULT_ON, description = "error kinds that move on to the next target" },
        on_auth = { type = "boolean", default = false, description = "move on after an auth failure too" },
        on_content_filter = { type = "boolean", default = false, description = "move on after a content-filter refusal" },
        transform = { type = "function", description = "fn(req, err) -> a request to try once more on the same target, or nil" },
        stream_failure = { type = "string", default = "error", description = "error | restart | continue" },
    },

    check = function(cfg)
        local sf = cfg.stream_failure
        if sf ~= "error" and sf ~= "restart" and sf ~= "continue" then
            return nil, "stream_failure must be error, restart or continue"
        end
        for i, k in ipairs(cfg.on) do
            if type(k) ~= "string" or not weft.error.KINDS[k] then
                return nil, "on[" .. i .. "] is not an error kind: " .. tostring(k)
            end
        end
        return true
    end,

    -- the healthy path: the first target, without running `run` (unless a
    -- content-filter refusal must be looked at)
    first = function(op, targets, states, cfg)
        if cfg.on_content_filter then return nil end
        return 1, "first"
    end,

    run = function(req, targets, api, cfg, state, first)
        -- cfg is this plugin's own copy for the model: the set is made once
        local on = cfg.on_set
        if not on then
            on = set_of(cfg.on)
            if cfg.on_auth then on.auth = true end
            cfg.on_set = on
        end
        local need       -- input tokens, once a target said its window is too small
        local reason = "first"
        local nextreq, opts -- what the next target gets (nil: the caller's request)
        local delivered = ""
        local last
        -- What target i's call gave: the answer (returned), a stop (nil,
        -- err returned), or nothing: go on to the next target.
        local function after(i, ok, res)
            if not ok and cfg.transform and not (res.partial and res.partial.text ~= "") then
                local changed = api.hook(cfg.transform, nextreq or req, res)
                if type(changed) == "table" then
                    ok, res = api.call(i, changed, "transform")
                end
            end
            if ok then
                if not (filtered(res) and cfg.on_content_filter) then return "answer", res end
                reason = "content_filter"
                last = res
                return nil
            end
            local err = res
            last = err
            local kind = err.kind
            if kind == "auth" then api.escalate(i, err) end
            local partial = req.op == "stream" and err.partial and err.partial.text or ""
            if partial ~= "" then
                if cfg.stream_failure == "error" then return "stop", err end
                delivered = delivered .. partial
                if cfg.stream_failure == "continue" then
                    nextreq, opts, reason = continuation(req, delivered), { continues = true }, "stream_continue"
                else
                    delivered = ""
                    nextreq, opts, reason = nil, nil, "stream_restart"
                end
            elseif kind == "invalid_request" and err.reason == "context_length" then
                need = api.tokens(nextreq or req)
                reason = "context_length"
            elseif filtered(err) and cfg.on_content_filter then
                reason = "content_filter"
            elseif on[kind] then
                reason = kind
            else
                return "stop", err
            end
        end
        local from = 1
        if first then
            -- `first` sent target first.target already, and it failed
            local what, v = after(first.target, false, first.error)
            if what == "answer" then return v elseif what == "stop" then return nil, v end
            from = first.target + 1
        end
        for i = from, #targets do
            local t = targets[i]
            if need and t.context_window and t.context_window < need then
                api.decide(i, "skip_context_window")
            else
                local what, v = after(i, api.call(i, nextreq, reason, opts))
                if what == "answer" then return v elseif what == "stop" then return nil, v end
            end
        end
        if last and last.kind == nil then return last end -- every target refused by its content filter
        if last then return nil, last end
        return nil, weft.error.new("invalid_request",
            ("no target's context window holds the request (about %d tokens)"):format(need or 0))
    end,
}
