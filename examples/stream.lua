-- stream.lua: stream an answer to the terminal as it is generated.
-- A failure before the first piece is retried; a failure after it ends the
-- call with kind `transient` and the partial text (printed here).
--
--   weft run examples/stream.lua [openai|anthropic|gemini] ["prompt"]
local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")

local provider = arg[1] or "anthropic"
local prompt = arg[2] or "Write a haiku about rivers, then explain each line of it briefly."
if not setup.MODELS[provider] then error("unknown provider " .. provider .. " (openai, anthropic or gemini)", 0) end

setup.providers { provider }
local model = weft.model(provider .. "/" .. setup.MODELS[provider], { max_tokens = 400 })
local ok, r = pcall(model.stream, model, prompt, function(ev)
    io.write(ev.text)
    io.flush()
end)
setup.done()
io.write("\n")
if not ok then
    if type(r) == "table" and r.partial then
        io.stderr:write(("-- stream broken after %d bytes: %s\n"):format(#r.partial.text, tostring(r)))
    end
    error(r, 0)
end
print(("-- %s/%s: %d tokens in, %d out, first piece after %.0f ms, %.0f ms in all"):format(r.provider, r.model,
    r.usage.input, r.usage.output, (r.ttft or 0) * 1000, r.latency * 1000))
