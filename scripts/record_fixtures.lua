-- record_fixtures.lua: write plugins/providers/<name>.fixtures.lua from
-- weft mock's answers (whose wire formats are checked against the
-- providers' official SDKs by test/integration/sdk_compat_test.sh).
--
--   build/weft run scripts/record_fixtures.lua plugins/providers
--
-- `weft check` replays them through the plugins' decode, event and
-- classify. The expected kinds are the error taxonomy of DESIGN.md; the
-- last error of each is the dialect's context-length answer (the mock with
-- a context window smaller than the prompt), kind invalid_request with
-- reason "context_length".
local http, json = weft.http, weft.json
local out_dir = assert(arg[1], "usage: record_fixtures.lua DIR")
local mock = weft.mock.start { port = 0 }
local keys = weft.mock.DEFAULT_KEYS

local Q = "What is the capital of France?"

local D = {
    openai = {
        auth = { authorization = "Bearer " .. keys.openai },
        complete = { "/v1/chat/completions", { model = "gpt-4o-mini", messages = { { role = "user", content = Q } } } },
        stream = { "/v1/chat/completions", { model = "gpt-4o-mini", stream = true, stream_options = { include_usage = true },
                                             messages = { { role = "user", content = Q } } } },
        embed = { "/v1/embeddings", { model = "text-embedding-3-small", input = { "a", "b" } } },
        statuses = { [400] = "invalid_request", [401] = "auth", [403] = "auth", [404] = "invalid_request",
                     [429] = "rate_limited", [500] = "transient", [503] = "transient" },
        input = 6,
    },
    anthropic = {
        auth = { ["x-api-key"] = keys.anthropic, ["anthropic-version"] = "2023-06-01" },
        complete = { "/v1/messages", { model = "claude-3-5-haiku-latest", max_tokens = 64, messages = { { role = "user", content = Q } } } },
        stream = { "/v1/messages", { model = "claude-3-5-haiku-latest", max_tokens = 64, stream = true,
                                     messages = { { role = "user", content = Q } } } },
        statuses = { [400] = "invalid_request", [401] = "auth", [403] = "auth", [404] = "invalid_request",
                     [429] = "rate_limited", [500] = "transient", [529] = "transient" },
        input = 3,
    },
    gemini = {
        auth = { ["x-goog-api-key"] = keys.gemini },
        complete = { "/v1beta/models/gemini-2.0-flash:generateContent", { contents = { { role = "user", parts = { { text = Q } } } } } },
        stream = { "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", { contents = { { role = "user", parts = { { text = Q } } } } } },
        embed = { "/v1beta/models/text-embedding-004:batchEmbedContents", { requests = {
            { model = "models/text-embedding-004", content = { parts = { { text = "a" } } } },
            { model = "models/text-embedding-004", content = { parts = { { text = "b" } } } } } } },
        statuses = { [400] = "invalid_request", [401] = "auth", [403] = "auth", [404] = "invalid_request",
                     [429] = "rate_limited", [500] = "transient", [503] = "transient" },
        input = 0,
    },
}

local function post(d, path, body)
    local h = { ["content-type"] = "application/json" }
    for k, v in pairs(d.auth) do h[k] = v end
    return http.request { method = "POST", url = mock.url .. path, headers = h, body = json.encode(body) }
end

-- the rate-limit headers of an answer, as a Lua table constructor
local function limit_headers(h)
    local keys = {}
    for k in pairs(h) do
        if k:find("ratelimit", 1, true) or k:find("^retry%-after") then keys[#keys + 1] = k end
    end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do
        local v = h[k]
        if type(v) == "table" then v = v[1] end
        out[#out + 1] = ("[%q] = %q"):format(k, v)
    end
    return "{ " .. table.concat(out, ", ") .. " }"
end

local function long(s)
    local eq = ""
    while s:find("]" .. eq .. "]", 1, true) do eq = eq .. "=" end
    return "[" .. eq .. "[\n" .. s .. "]" .. eq .. "]"
end

for name, d in pairs(D) do
    local text, out_tokens = weft.mock.answer(Q)
    local usage = ("{ input = %d, output = %d }"):format(weft.mock.count_tokens(Q) + d.input, out_tokens)
    local parts = { "-- Recorded from weft mock by scripts/record_fixtures.lua; replayed by `weft check`.", "return {" }
    local c = post(d, d.complete[1], d.complete[2])
    parts[#parts + 1] = ("    complete = { headers = %s, body = %s,\n        expect = { text = %q, finish_reason = \"stop\", usage = %s } },"):format(
        limit_headers(c.headers), long(c.body), text, usage)
    local s = post(d, d.stream[1], d.stream[2])
    parts[#parts + 1] = ("    stream = { body = %s,\n        expect = { text = %q, finish_reason = \"stop\", usage = %s } },"):format(
        long(s.body), text, usage)
    if d.embed then
        local e = post(d, d.embed[1], d.embed[2])
        parts[#parts + 1] = ("    embed = { body = %s, expect = { count = 2 } },"):format(long(e.body))
    end
    parts[#parts + 1] = "    errors = {"
    local statuses = {}
    for st in pairs(d.statuses) do statuses[#statuses + 1] = st end
    table.sort(statuses)
    for _, st in ipairs(statuses) do
        mock:set_faults { { dialect = name, sequence = { st } } }
        local r = post(d, d.complete[1], d.complete[2])
        assert(r.status == st, name .. " " .. st)
        parts[#parts + 1] = ("        { status = %d, kind = %q, headers = %s, body = %s },"):format(st, d.statuses[st],
            limit_headers(r.headers), long(r.body))
    end
    mock:set_faults {}
    -- a prompt over the model's context window
    local model = d.complete[2].model or d.complete[1]:match("/models/([^/:]+):")
    mock:set_context { [model] = 1 }
    local r = post(d, d.complete[1], d.complete[2])
    assert(r.status == 400, name .. " context length")
    parts[#parts + 1] = ("        { status = 400, kind = \"invalid_request\", reason = \"context_length\", headers = %s, body = %s },"):format(
        limit_headers(r.headers), long(r.body))
    mock:set_context {}
    parts[#parts + 1] = "    },"
    parts[#parts + 1] = "}"
    local f = assert(io.open(out_dir .. "/" .. name .. ".fixtures.lua", "w"))
    f:write(table.concat(parts, "\n"), "\n")
    f:close()
    print("wrote " .. out_dir .. "/" .. name .. ".fixtures.lua")
end
mock:close()
