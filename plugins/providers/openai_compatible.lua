--- Provider: any server speaking OpenAI's Chat Completions dialect (vLLM,
--- Ollama, LM Studio, llama.cpp server, Together, Groq, Fireworks,
--- OpenRouter, DeepSeek, ...).
---
--- It inherits the `openai` codec (`extends`, merged deeply: plugin API 2)
--- and only changes what differs: there is no default base URL, key or
--- price list, so a configuration names them:
---
--- ```lua
--- weft.configure { providers = {
---     groq = { plugin = "openai_compatible", base_url = "https://api.groq.com/openai",
---              secret = "env:GROQ_API_KEY" },
---     ollama = { plugin = "openai_compatible", base_url = "http://127.0.0.1:11434" },  -- no key
--- } }
--- ```
---
--- Its options are openai's (paths for servers mounted elsewhere,
--- `stream_usage`, ...); only the description of `stream_usage` differs.
return {
    api = 2,
    name = "openai_compatible",
    kind = "provider",
    version = "1.0.0",
    extends = "openai",
    base_url = false,        -- must be configured
    secret = false,          -- none unless configured (local servers often need no key)
    prices = weft.json.null, -- OpenAI's list prices are not these servers' (configure `prices`)
    schema = {
        stream_usage = { description = "ask for the usage chunk at the end of a stream; false for servers that "
                                       .. "do not send one (or refuse stream_options)" },
    },
}
