-- A policy as the model "main": OpenAI first, Anthropic when OpenAI is
-- rate limited, down or slow (each with its own retries first).
--   weft run --config examples/config/fallback.lua examples/switch_by_config.lua
return {
    providers = {
        openai = { secret = "env:OPENAI_API_KEY", limits = { rpm = 500 } },
        anthropic = { secret = "env:ANTHROPIC_API_KEY", limits = { rpm = 50 } },
    },
    models = {
        main = { policy = "fallback", targets = { "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest" },
                 max_tokens = 200 },
    },
}
