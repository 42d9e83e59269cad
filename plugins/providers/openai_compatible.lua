--- Provider: any server speaking OpenAI's Chat Completions dialect (vLLM,
--- Ollama, LM Studio, llama.cpp server, Together, Groq, Fireworks,
--- OpenRouter, DeepSeek, ...).
---
--- It inherits the `openai` codec (`extends`) and only changes what
--- differs: there is no default base URL or key, so a configuration names
--- them:
---
--- ```lua
--- weft.configure { providers = {
---     groq = { plugin = "openai_compatible", base_url = "https://api.groq.com/openai",
---              secret = "env:GROQ_API_KEY" },
---     ollama = { plugin = "openai_compatible", base_url = "http://127.0.0.1:11434" },  -- no key
--- } }
--- ```
---
--- Servers that do not send a usage chunk in streams can be told
--- `stream_usage = false`; paths are options for servers mounted elsewhere.
return {
    api = 1,
    name = "openai_compatible",
    kind = "provider",
    version = "1.0.0",
    extends = "openai",
    base_url = false, -- must be configured
    secret = false,   -- none unless configured (local servers often need no key)
    auth = { header = "authorization", format = "Bearer {}" },
    capabilities = { complete = true, stream = true, embed = true },
    prices = {},
    schema = {
        chat_path = { type = "string", default = "/v1/chat/completions" },
        embeddings_path = { type = "string", default = "/v1/embeddings" },
        organization = { type = "string" },
        project = { type = "string" },
        stream_usage = { type = "boolean", default = true },
        max_tokens_field = { type = "string", default = "max_tokens" },
        embedding_dimensions = { type = "number" },
    },
}
