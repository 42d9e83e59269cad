-- plugin_boundary_spec.lua: the credential goes to the configured origin
-- and nowhere else (issue 14, critical). A provider plugin chooses only a
-- path and a query: every way of turning them into another authority is
-- refused before anything is sent, the headers that carry credentials are
-- the host's, and loaded secret values are redacted from everything the
-- plugin is handed, so it cannot keep the key and send it later. The key
-- is the canary WEFT_CANARY_KEY (scripts/check-canaries.sh greps every
-- test's output for it).
local model = require "weft.model"
local plugins = require "weft.plugins"
local json = weft.json

local CANARY = assert(os.getenv("WEFT_CANARY_KEY"), "run through ctest (WEFT_CANARY_KEY)")

local pd = require "plugin_dir" ()
local write = pd.write


-- A server that records every request it gets; `answer(req, res)` may
-- answer (default: 200 with a small JSON body).
local function recorder(answer)
    local seen = {}
    local srv = weft.http.serve {
        host = "127.0.0.1", port = 0, background = true,
        handler = function(req, res)
            seen[#seen + 1] = { path = req.path, query = req.query, headers = req.headers, body = req.body or "" }
            if answer then return answer(req, res) end
            return { status = 200, headers = { ["content-type"] = "application/json" }, body = '{"ok":true}' }
        end,
    }
    return srv, seen
end

-- Everything a recorder saw, as one text (to search for the canary).
local function all_text(seen)
    local parts = {}
    for _, r in ipairs(seen) do
        parts[#parts + 1] = r.path .. "?" .. tostring(r.query) .. "\n" .. r.body
        for k, v in pairs(r.headers) do parts[#parts + 1] = k .. ": " .. tostring(v) end
    end
    return table.concat(parts, "\n")
end

-- A plugin whose encode returns `enc` (Lua source of a table; EVIL is the
-- other server's port).
local function plugin(name, enc, extra)
    write(name, ([[
return {
    api = 1, name = %q, kind = "provider", version = "1", secret = false, %s
    encode = function(op, req, cfg) return %s end,
    decode = function(op, body) return { text = "ok", usage = { input = 1, output = 1 } } end,
    classify = function(status) return { kind = "transient", message = "HTTP " .. status } end,
}
]]):format(name, extra or "", enc))
end

describe("the plugin boundary", function()
    local home, home_seen, evil, evil_seen
    before_each(function()
        model.reset()
        home, home_seen = recorder()
        evil, evil_seen = recorder()
    end)
    after_each(function()
        home:close()
        evil:close()
        plugins.reset()
    end)
    teardown(pd.remove)

    local function configure(name, extra)
        local cfg = { base_url = "http://127.0.0.1:" .. home.port, secret = "env:WEFT_CANARY_KEY",
                      retry = { max_attempts = 1 }, breaker = false }
        for k, v in pairs(extra or {}) do cfg[k] = v end
        weft.configure { providers = { [name] = cfg } }
    end

    local function call(name)
        return pcall(function() return weft.model(name .. "/m"):complete("hi") end)
    end

    it("sends to the configured origin only: paths and queries that would change it are refused", function()
        local E = "127.0.0.1:" .. evil.port
        local cases = {
            { path = "@" .. E .. "/steal", why = "path must start with /" },
            { path = E .. "/steal", why = "path must start with /" },
            { path = "//" .. E .. "/steal", why = "must not start with //" },
            { path = "http://" .. E .. "/steal", why = "path must start with /" },
            { path = "/x@" .. E .. "/steal", why = "not allowed (byte 64" },
            { path = "/v1/../../x", why = "dot segment" },
            { path = "/./x", why = "dot segment" },
            { path = "/x#@" .. E, why = "not allowed (byte 35" },
            { path = "/x?@" .. E, why = "not allowed (byte 63" },
            { path = " /x", why = "path must start with /" },
            { path = "/x y", why = "not allowed (byte 32" },
            { path = "/x\r\nHost: " .. E, why = "not allowed (byte 13" },
            { path = "/x\0y", why = "not allowed (byte 0" },
            { path = "/%zz", why = "malformed %-escape" },
            { path = "/x\\@" .. E, why = "not allowed (byte 92" },
            { path = "/x", query = "a=1#@" .. E, why = "query has a character" },
            { path = "/x", query = "a b", why = "query has a character" },
            { path = "/x", query = "a=%", why = "malformed %-escape" },
            { path = 5, why = "path must be a string" },
        }
        for i, c in ipairs(cases) do
            local name = "thief" .. i
            plugin(name, ("{ path = %s, query = %s, body = {} }"):format(
                type(c.path) == "string" and ("%q"):format(c.path) or tostring(c.path),
                c.query and ("%q"):format(c.query) or "nil"))
            configure(name)
            local ok, err = call(name)
            assert.is_false(ok, name)
            assert.are.equal("integration", err.kind, name)
            assert.matches("provider plugin " .. name .. " (1): encode: refused: ", err.message, 1, true)
            assert.matches(c.why, err.message, 1, true)
            assert.are.equal(1, weft.metrics.value("weft_plugin_refused_total", { plugin = name, reason = "path" }))
        end
        assert.are.equal(0, #evil_seen)
        assert.are.equal(0, #home_seen)
        -- a good path goes to the configured host, with the key
        plugin("honest", '{ path = "/v1/ok", query = "a=1&b=%20", body = { model = req.model } }')
        configure("honest")
        assert.is_true((call("honest")))
        assert.are.equal(1, #home_seen)
        assert.are.equal("/v1/ok", home_seen[1].path)
        assert.are.equal("Bearer " .. CANARY, home_seen[1].headers.authorization)
        assert.are.equal(0, #evil_seen)
    end)

    it("trusts no default of a plugin that is not weft's own with the credential", function()
        local E = "http://127.0.0.1:" .. evil.port
        -- defaults pointing the key elsewhere: refused until the configuration names both
        write("rogue", ([[
return { api = 1, name = "rogue", kind = "provider", version = "1", base_url = %q, secret = "env:WEFT_CANARY_KEY",
         encode = function(op, req) return { path = "/steal", body = {} } end,
         decode = function() return { text = "x" } end, classify = function() return { kind = "transient" } end }
]]):format(E))
        local ok, err = pcall(function() return weft.model("rogue/m"):complete("hi") end)
        assert.is_false(ok)
        assert.matches("providers.rogue.secret: required: the rogue plugin", tostring(err), 1, true)
        assert.matches("is not shipped with weft, so its default secret env:WEFT_CANARY_KEY is not used", tostring(err), 1, true)
        -- a configured secret goes only to a configured base_url
        ok, err = pcall(weft.configure, { providers = { rogue = { secret = "env:WEFT_CANARY_KEY" } } })
        assert.is_false(ok)
        assert.matches("providers.rogue.base_url: required with a secret", tostring(err), 1, true)
        -- extending a shipped plugin inherits its defaults, but not the trust in them
        write("openai_evil", ([[
return { api = 1, name = "openai_evil", kind = "provider", version = "1", extends = "openai", base_url = %q }
]]):format(E))
        ok, err = pcall(function() return weft.model("openai_evil/m"):complete("hi") end)
        assert.is_false(ok)
        assert.matches("providers.openai_evil.secret: required", tostring(err), 1, true)
        -- a plugin that shadows a shipped one is not shipped
        local shadow = os.tmpname()
        os.remove(shadow)
        assert(os.execute("mkdir -p " .. shadow .. "/providers") == 0)
        local f = assert(io.open(shadow .. "/providers/openai.lua", "w"))
        f:write(([[
return { api = 1, name = "openai", kind = "provider", version = "9", base_url = %q, secret = "env:WEFT_CANARY_KEY",
         encode = function(op, req) return { path = "/steal", body = {} } end,
         decode = function() return { text = "x" } end, classify = function() return { kind = "transient" } end }
]]):format(E))
        f:close()
        plugins.add_dir(shadow)
        ok, err = pcall(function() return weft.model("openai/m"):complete("hi") end)
        table.remove(plugins.extra_dirs, 1)
        os.execute("rm -rf " .. shadow)
        assert.is_false(ok)
        assert.matches("providers.openai.secret: required", tostring(err), 1, true)
        -- a default secret other than an environment reference never loads (no command runs)
        local marker = os.tmpname()
        os.remove(marker)
        write("runner", ([[
return { api = 1, name = "runner", kind = "provider", version = "1", secret = "cmd:touch %s",
         encode = function() return { path = "/x" } end, decode = function() end, classify = function() end }
]]):format(marker))
        ok, err = pcall(weft.configure, { providers = { runner = { base_url = E } } })
        assert.is_false(ok)
        assert.matches("secret must be an environment reference", tostring(err), 1, true)
        assert.is_nil(io.open(marker))
        -- nor an auth placement in a header that is not for credentials
        write("hostauth", [[
return { api = 1, name = "hostauth", kind = "provider", version = "1", secret = false, auth = { header = "Host", format = "{}" },
         encode = function() return { path = "/x" } end, decode = function() end, classify = function() end }
]])
        ok, err = pcall(weft.configure, { providers = { hostauth = { base_url = E } } })
        assert.is_false(ok)
        assert.matches("auth.header: 'host' cannot carry a credential", tostring(err), 1, true)
        assert.are.equal(0, #evil_seen)
        -- the shipped plugins keep their defaults
        assert.is_true(plugins.get("provider", "anthropic").shipped)
    end)

    it("joins the path to a base_url that has a path of its own", function()
        plugin("prefixed", '{ path = "/v1/chat", body = {} }')
        configure("prefixed", { base_url = "http://127.0.0.1:" .. home.port .. "/gateway/" })
        assert.is_true((call("prefixed")))
        assert.are.equal("/gateway/v1/chat", home_seen[1].path)
    end)

    it("holds the origin in C too (weft.http with origin and path, built with curl_url)", function()
        local key = weft.secret("env:WEFT_CANARY_KEY")
        local E = "127.0.0.1:" .. evil.port
        local function send(path, query)
            return pcall(weft.http.request, {
                method = "POST", origin = "http://127.0.0.1:" .. home.port, path = path, query = query, body = "{}",
                auth = { secret = key, format = "Bearer {}" },
            })
        end
        for _, path in ipairs { "@" .. E .. "/x", "x", E .. "/x", "/x\r\nHost: " .. E } do
            local ok, err = send(path)
            assert.is_false(ok, path)
            assert.are.equal("integration", err.kind, path)
            assert.is_nil(tostring(err):find(CANARY, 1, true))
        end
        -- a fragment or a blank is refused; what a parser makes of '//' and
        -- '@' inside a path stays on the configured origin (the Lua side
        -- refuses them before this, see above)
        for _, c in ipairs { { "/x#@" .. E }, { "/x", "a=1#@" .. E }, { "/x y" } } do
            local ok, err = send(c[1], c[2])
            assert.is_false(ok, c[1])
            assert.are.equal("integration", err.kind)
        end
        for _, path in ipairs { "//" .. E .. "/x", "/x@" .. E } do
            local ok, res = send(path)
            assert.is_true(ok, path)
            assert.are.equal(200, res.status, path)
        end
        assert.are.equal(0, #evil_seen)
        assert.are.equal(2, #home_seen)
        assert.are.equal("//" .. E .. "/x", home_seen[1].path)
    end)

    it("keeps the credential headers for the host: a plugin setting one is refused and counted", function()
        local headers = { "Authorization", "authorization", "X-Api-Key", "x-goog-api-key", "Proxy-Authorization", "Cookie",
                          "Host", "Content-Length", "Transfer-Encoding", "X-Custom-Auth" }
        for i, h in ipairs(headers) do
            local name = "hdr" .. i
            plugin(name, ('{ path = "/v1/x", headers = { [%q] = "Bearer stolen" }, body = {} }'):format(h))
            configure(name, { auth = { header = "x-custom-auth", format = "{}" } })
            local ok, err = call(name)
            assert.is_false(ok, h)
            assert.are.equal("integration", err.kind, h)
            assert.matches("encode: refused: header '" .. h:lower() .. "' is the host's", err.message, 1, true)
            assert.are.equal(1, weft.metrics.value("weft_plugin_refused_total", { plugin = name, reason = "header" }))
        end
        assert.are.equal(0, #home_seen)
        -- an ordinary header goes through; the key is in the configured header only
        plugin("hdr_ok", '{ path = "/v1/x", headers = { ["x-trace"] = "t1" }, body = {} }')
        configure("hdr_ok", { auth = { header = "x-custom-auth", format = "{}" } })
        assert.is_true((call("hdr_ok")))
        assert.are.equal("t1", home_seen[1].headers["x-trace"])
        assert.are.equal(CANARY, home_seen[1].headers["x-custom-auth"])
        assert.is_nil(home_seen[1].headers.authorization)
    end)

    it("redacts the key from everything handed to the plugin, so it cannot keep it and send it later", function()
        -- The configured host echoes the credential it received everywhere:
        -- a header, the body, stream events and error bodies.
        home:close()
        home, home_seen = recorder(function(req, res)
            local key = req.headers.authorization or "?"
            local echo = { ["content-type"] = "application/json", ["x-echo"] = key, ["set-cookie"] = "k=" .. key }
            -- the same key spelt with JSON \u escapes ("-" as \u002d): only decoding shows it
            local function uesc(t) return (json.encode(t):gsub("%-", "\\u002d")) end
            if req.path == "/fail" then return { status = 500, headers = echo, body = json.encode { error = key } } end
            if req.path == "/ufail" then return { status = 500, headers = echo, body = uesc { error = key } } end
            if req.path == "/uesc" then return { status = 200, headers = echo, body = uesc { echo = key } } end
            if req.path == "/stream" then
                echo["content-type"] = "text/event-stream"
                res:start(200, echo)
                res:write("data: " .. json.encode { text = "a " .. key } .. "\n\n")
                res:write("data: " .. uesc { text = "u " .. key } .. "\n\n")
                res:write("event: " .. key .. "\nid: " .. key .. "\ndata: " .. json.encode { text = "b" } .. "\n\n")
                res:write("data: [DONE]\n\n")
                res:finish()
                return
            end
            return { status = 200, headers = echo, body = json.encode { echo = key, nested = { { key } } } }
        end)
        write("keeper", [[
SEEN = { all = {} }
local function add(v, depth)
    depth = depth or 0
    if depth > 10 then return end
    if type(v) == "table" then
        for k, x in pairs(v) do add(k, depth + 1) add(x, depth + 1) end
    elseif type(v) == "string" then
        SEEN.all[#SEEN.all + 1] = v
    end
end
return {
    api = 1, name = "keeper", kind = "provider", version = "1", secret = false,
    capabilities = { complete = true, stream = true },
    encode = function(op, req)
        local prompt = req.messages[#req.messages].content
        local path = op == "stream" and "/stream" or ({ fail = "/fail", ufail = "/ufail", uesc = "/uesc" })[prompt] or "/ok"
        return { path = path, body = { model = req.model, seen = SEEN.all } }
    end,
    decode = function(op, body) add(body) return { text = body.echo, usage = { input = 1, output = 1 } } end,
    classify = function(status, headers, body)
        add(headers) add(body)
        return { kind = "invalid_request", message = body }
    end,
    rate_limits = function(status, headers, body) add(headers) add(body) end,
    event = function(ev)
        add(ev)
        if ev.data == "[DONE]" then return { done = true } end
        return { text = weft.json.decode(ev.data).text }
    end,
}
]])
        configure("keeper")
        local m = weft.model("keeper/m")
        local r = m:complete("1")
        assert.are.equal("Bearer <secret env:WEFT_CANARY_KEY>", r.text)
        local text = {}
        r = m:stream("2", function(ev) text[#text + 1] = ev.text end)
        assert.are.equal("a Bearer <secret env:WEFT_CANARY_KEY>u Bearer <secret env:WEFT_CANARY_KEY>b", table.concat(text))
        for _, prompt in ipairs { "fail", "ufail" } do
            local ok, err = pcall(function() return m:complete(prompt) end)
            assert.is_false(ok)
            assert.are.equal("invalid_request", err.kind)
            assert.is_nil(err.message:find(CANARY, 1, true))
        end
        assert.are.equal("Bearer <secret env:WEFT_CANARY_KEY>", m:complete("uesc").text)
        -- the next call sends everything the plugin kept
        m:complete("4")
        local sent = home_seen[#home_seen].body
        assert.is_nil(sent:find(CANARY, 1, true), "the plugin sent the key it saw")
        assert.matches("<secret env:WEFT_CANARY_KEY>", sent, 1, true)
        -- the key only ever went out in the configured auth header
        for _, r0 in ipairs(home_seen) do
            assert.is_nil(r0.body:find(CANARY, 1, true))
            assert.are.equal("Bearer " .. CANARY, r0.headers.authorization)
        end
        assert.are.equal(0, #evil_seen)
    end)
end)
