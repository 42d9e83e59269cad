-- switch_by_config.lua: the script names a model alias ("main"); which
-- provider and model that is comes from the configuration file only.
--
--   weft run --config examples/config/openai.lua    examples/switch_by_config.lua
--   weft run --config examples/config/anthropic.lua examples/switch_by_config.lua
--   weft run --config examples/config/gemini.lua    examples/switch_by_config.lua
--   weft run --config examples/config/fallback.lua  examples/switch_by_config.lua   (a policy)
--
-- (Providers without their API key in the environment are served by the
-- built-in mock, so all three run out of the box.)
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")
setup.providers()

local main = weft.model("main")
local r = main:complete("Name three uses of a paperclip.")
setup.done()
print(r.text)
print(("-- answered by %s/%s in %.0f ms (%d attempt(s)); %d tokens"):format(r.provider, r.model,
    r.latency * 1000, r.attempts, r.usage.input + r.usage.output))
