-- A gateway configuration for `weft serve`: OpenAI and Anthropic behind
-- two aliases and a fallback policy, two virtual keys.
--
--   export OPENAI_API_KEY=... ANTHROPIC_API_KEY=... TEAM_KEY=... CI_KEY=...
--   build/weft serve --config examples/gateway/config.lua --script examples/gateway/hooks.lua
--
-- Without provider keys, against weft's mock provider:
--   build/weft mock --port 9400 &
--   MOCK_URL=http://127.0.0.1:9400 OPENAI_API_KEY=sk-weft-mock ANTHROPIC_API_KEY=sk-ant-weft-mock \
--   TEAM_KEY=team-key-123 CI_KEY=ci-key-456 \
--   build/weft serve --config examples/gateway/config.lua --script examples/gateway/hooks.lua --port 9401
-- then, as any OpenAI client would:
--   curl http://127.0.0.1:9401/v1/chat/completions -H "authorization: Bearer team-key-123" \
--        -d '{"model": "smart", "messages": [{"role": "user", "content": "Hello"}]}'
local mock = os.getenv("MOCK_URL") -- nil: the providers' own URLs
return {
    providers = {
        openai = { base_url = mock, secret = "env:OPENAI_API_KEY", limits = { rpm = 500 } },
        anthropic = { base_url = mock, secret = "env:ANTHROPIC_API_KEY", limits = { rpm = 50 } },
    },
    models = {
        fast = "openai/gpt-4o-mini",
        claude = { provider = "anthropic", model = "claude-3-5-haiku-latest", max_tokens = 1024 },
        smart = { policy = "fallback", targets = { "claude", "fast" } },
        embed = "openai/text-embedding-3-small",
    },
    gateway = {
        keys = {
            -- a team: every model, 60 requests and 100k tokens a minute, 5 USD a day
            team = { secret = "env:TEAM_KEY", rpm = 60, tpm = 100000, budget = { day = 5, month = 100 } },
            -- CI: the cheap model only, at low priority in the providers' queues
            ci = { secret = "env:CI_KEY", models = { "fast", "embed" }, rpm = 20, priority = "low" },
        },
        drain_timeout = 20,
    },
}
