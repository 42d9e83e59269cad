-- Configuration for examples/switch_by_config.lua: the alias "main" is
-- anthropic/claude-3-5-haiku-latest. Used with: weft run --config examples/config/anthropic.lua SCRIPT
return {
    providers = {
        anthropic = {
            -- the key is read from the environment by the host, never by scripts
            secret = "env:ANTHROPIC_API_KEY",
            limits = { rpm = 50, tpm = 50000 },
            retry = { max_attempts = 4, base = 0.5, cap = 20 },
            timeout = 60,
        },
    },
    models = {
        main = { provider = "anthropic", model = "claude-3-5-haiku-latest", max_tokens = 300, temperature = 0.2 },
    },
}
