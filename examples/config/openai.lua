-- Configuration for examples/switch_by_config.lua: the alias "main" is
-- openai/gpt-4o-mini. Used with: weft run --config examples/config/openai.lua SCRIPT
return {
    providers = {
        openai = {
            -- the key is read from the environment by the host, never by scripts
            secret = "env:OPENAI_API_KEY",
            limits = { rpm = 500, tpm = 200000 },
            retry = { max_attempts = 4, base = 0.5, cap = 20 },
            timeout = 60,
        },
    },
    models = {
        main = { provider = "openai", model = "gpt-4o-mini", max_tokens = 300, temperature = 0.2 },
    },
}
