-- _setup.lua: shared by the examples. Without the providers' API keys in
-- the environment, point them at weft's built-in mock provider (started
-- here), so every example runs out of the box; with a key set, the real
-- service is used. Nothing else of the configuration changes.
--
--   local setup = dofile((arg[0]:match("^(.*)/") or ".") .. "/_setup.lua")
--   local mock = setup.providers { "openai" }   -- nil when real keys are set
local M = {}

local KEY_VARS = { openai = "OPENAI_API_KEY", anthropic = "ANTHROPIC_API_KEY", gemini = "GEMINI_API_KEY" }
local MODELS = { openai = "gpt-4o-mini", anthropic = "claude-3-5-haiku-latest", gemini = "gemini-2.0-flash" }
local EMBED = { openai = "text-embedding-3-small", gemini = "text-embedding-004" }
M.MODELS, M.EMBED = MODELS, EMBED

local mock

-- The configured providers, or the names given, whose key is missing are
-- moved to the mock (same dialect: their plugin's name).
function M.providers(names)
    local cfg = require("weft.model").config()
    local moved = {}
    for _, name in ipairs(names or {}) do cfg.providers[name] = cfg.providers[name] or {} end
    for name, raw in pairs(cfg.providers) do
        local dialect = raw.plugin or name
        local var = KEY_VARS[dialect]
        local ref = raw.secret or (var and "env:" .. var)
        local env = type(ref) == "string" and ref:match("^env:(.+)$")
        if var and env and not os.getenv(env) then
            mock = mock or weft.mock.start {}
            raw.base_url = mock.url
            raw.secret = weft.secrets.value("mock-" .. dialect, weft.mock.DEFAULT_KEYS[dialect])
            moved[name] = raw
        end
    end
    if next(moved) then
        weft.configure { providers = moved }
        local list = {}
        for name in pairs(moved) do list[#list + 1] = name end
        table.sort(list)
        io.stderr:write(("(no API key for %s: using weft's mock provider at %s)\n"):format(table.concat(list, ", "), mock.url))
    end
    return mock
end

-- Stop the mock (if one was started) so the script can end.
function M.done()
    if mock then mock:close() end
end

return M
