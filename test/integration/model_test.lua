-- model_test.lua: the model pipeline end to end in one process (also run
-- under valgrind by ctest): complete, stream and embed in the three
-- dialects against weft mock, a retried fault, a broken stream, and a
-- plugin reloaded from its file by the watcher while calls go on.
local t = require "support"
local check = t.check
local plugins = require "weft.plugins"

local mock = weft.mock.start { port = 0 }
local keys = weft.mock.DEFAULT_KEYS
local providers = {}
for _, d in ipairs { "openai", "anthropic", "gemini" } do
    providers[d] = { base_url = mock.url, secret = weft.secrets.value("it-" .. d, keys[d]), retry = { base = 0.001 } }
end
weft.configure { providers = providers }
local MODELS = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash" }
local q = "what is the weather like in Oslo today"
local want = weft.mock.answer(q)

for d, id in pairs(MODELS) do
    local m = weft.model(d .. "/" .. id)
    check(m:complete(q).text == want, d .. ": complete")
    local got = {}
    local r = m:stream(q, function(ev) got[#got + 1] = ev.text end)
    check(table.concat(got) == want and r.text == want, d .. ": stream")
    if d ~= "anthropic" then check(#m:embed({ "a", "b" }).vectors == 2, d .. ": embed") end
    mock:set_faults { { dialect = d, sequence = { 503, "ok" } } }
    check(m:complete(q).attempts == 2, d .. ": a 503 retried")
    mock:set_faults { { dialect = d, sequence = { "mid_stream_error" } } }
    local ok, err = pcall(m.stream, m, q, function() end)
    check(not ok and err.kind == "transient" and #err.partial.text > 0, d .. ": a stream broken after delivery", err)
    mock:set_faults {}
end

-- a plugin rewritten while calls go on: the watcher swaps it in
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/providers") == 0)
plugins.add_dir(dir)
local function install(v)
    local f = assert(io.open(dir .. "/providers/.it.tmp", "w"))
    f:write(("return { api = 1, name = 'it', kind = 'provider', version = %q, extends = 'openai', base_url = false, secret = false }\n"):format(v))
    f:close()
    assert(os.rename(dir .. "/providers/.it.tmp", dir .. "/providers/it.lua"))
end
install("one")
weft.configure { providers = { it = { base_url = mock.url, secret = weft.secrets.value("it-key", keys.openai) } } }
local m = weft.model("it/gpt-4o-mini")
check(m:complete("hi").plugin_version == "one", "a plugin from a new directory")
install("two")
local seen
for _ = 1, 200 do
    weft.sleep(0.05)
    seen = m:complete("hi").plugin_version
    if seen == "two" then break end
end
check(seen == "two", "the watcher reloaded the changed file", seen)

plugins.reset()
os.execute("rm -rf " .. dir)
mock:close()
t.done()
