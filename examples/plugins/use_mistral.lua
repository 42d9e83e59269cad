-- use_mistral.lua: the third-party Mistral plugin of examples/plugins/ in
-- use, without recompiling weft:
--
--   weft run --plugins examples/plugins examples/plugins/use_mistral.lua
--
-- With MISTRAL_API_KEY set it calls Mistral; without it the built-in mock
-- answers (Mistral speaks OpenAI's dialect, which the mock serves).
local mock
-- mistral is not a plugin shipped with weft: the configuration names the
-- key and where it goes (README, "Security model").
local cfg = { limits = { rpm = 60 }, retry = { max_attempts = 3 },
              base_url = "https://api.mistral.ai", secret = "env:MISTRAL_API_KEY" }
if not os.getenv("MISTRAL_API_KEY") then
    mock = weft.mock.start {}
    cfg.base_url = mock.url
    cfg.secret = weft.secrets.value("mock-mistral", weft.mock.DEFAULT_KEYS.openai)
    io.stderr:write("(no MISTRAL_API_KEY: using weft's mock provider at " .. mock.url .. ")\n")
end
weft.configure { providers = { mistral = cfg } }

local model = weft.model("mistral/mistral-small-latest", { max_tokens = 200 })
local ok, err = pcall(function()
    local r = model:complete("What is the capital of France?")
    print(r.text)
    print(("-- %s/%s, plugin version %s: %d tokens in, %d out, %d attempt(s)"):format(r.provider, r.model,
        r.plugin_version, r.usage.input, r.usage.output, r.attempts))
    io.write("stream: ")
    model:stream("Name three rivers.", function(ev) io.write(ev.text) end)
    io.write("\n")
    local e = weft.model("mistral/mistral-embed"):embed { "a", "b" }
    print(("embeddings: %d vectors of %d dimensions"):format(#e.vectors, #e.vectors[1]))
end)
if mock then mock:close() end
if not ok then error(err, 0) end
