-- Hooks for `weft serve --script`: a guardrail before each call, a note
-- after it. Each runs in a task of its own; raising a weft error refuses
-- the request with that error in the client's dialect.
local CARD = "%f[%d]%d%d%d%d[ -]?%d%d%d%d[ -]?%d%d%d%d[ -]?%d%d%d%d%f[%D]"

return {
    before = function(ctx)
        if ctx.endpoint ~= "chat" then return end
        for _, m in ipairs(ctx.request.messages) do
            if type(m.content) == "string" and m.content:find(CARD) then
                weft.error.raise("invalid_request", "this gateway does not forward card numbers")
            end
        end
        -- CI's long prompts go to the cheaper model whatever it asked for
        if ctx.key == "ci" and ctx.model == "smart" then ctx.model = "fast" end
    end,
    after = function(ctx, result)
        if result.attempts and result.attempts > 1 then
            weft.log.info("answered after retries", { key = ctx.key, model = ctx.model, attempts = result.attempts })
        end
    end,
}
