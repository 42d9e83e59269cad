-- Configuration for examples/switch_by_config.lua: the alias "main" is
-- gemini/gemini-2.0-flash. Used with: weft run --config examples/config/gemini.lua SCRIPT
return {
    providers = {
        gemini = {
            -- the key is read from the environment by the host, never by scripts
            secret = "env:GEMINI_API_KEY",
            limits = { rpm = 15, rpd = 1500 },
            retry = { max_attempts = 4, base = 0.5, cap = 20 },
            timeout = 60,
        },
    },
    models = {
        main = { provider = "gemini", model = "gemini-2.0-flash", max_tokens = 300, temperature = 0.2 },
    },
}
