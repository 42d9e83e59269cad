-- secrets_test.lua: sources, auth injection, OAuth2 (expiry, single flight,
-- 401 -> one refresh), the Vault source against a local fake, a 401 resent
-- only with a new value. Canary values
-- come from the environment ctest sets (WEFT_CANARY_*); no output of this
-- test may contain them (the canary check greps every test's output).
local t = require "support"
local http, json = weft.http, weft.json
local check, raised = t.check, t.raised
local secrets = weft.secrets

local KEY = assert(os.getenv("WEFT_CANARY_KEY"), "run through ctest")

-- 1. Sources and their errors: they name the secret, never a value.
do
    local err = raised(weft.secret, "env:WEFT_NO_SUCH_VARIABLE")
    check(err and err.kind == "auth" and tostring(err):find("WEFT_NO_SUCH_VARIABLE is not set", 1, true),
        "a missing env variable is a clear auth error naming it", err)
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/key", "w")
    f:write(KEY, "\n")
    f:close()
    os.execute("chmod 644 " .. dir .. "/key")
    err = raised(weft.secret, "file:" .. dir .. "/key")
    check(err and tostring(err):find("mode 644", 1, true) and tostring(err):find("chmod 600", 1, true),
        "a group/world-readable file is refused with a clear error", err)
    check(not tostring(err):find(KEY, 1, true), "the error does not hold the value")
    local h = weft.secret("file:" .. dir .. "/key", { allow_insecure = true })
    check(h.loaded, "allow_insecure overrides the check")
    os.execute("chmod 600 " .. dir .. "/key")
    local h2 = weft.secret("file:" .. dir .. "/key")
    check(h2.loaded and tostring(h2) == "<secret file:" .. dir .. "/key>", "a 0600 file loads; tostring names it")
    os.execute("rm -rf " .. dir)

    local t0 = weft.now()
    err = raised(weft.secret, "cmd:sleep 10", { timeout = 0.3 })
    check(err and tostring(err):find("did not finish within 0.3 s", 1, true), "a command source times out", err)
    check(weft.now() - t0 >= 0.3, "...after its timeout")
    err = raised(weft.secret, "cmd:exit 3")
    check(err and tostring(err):find("exit status 3", 1, true), "a failing command is a clear error", err)
    local c = weft.secret("cmd:printf '%s\\n' \"$WEFT_CANARY_KEY\"")
    check(c.loaded, "a command's stdout is the value")
end

-- 2. Auth injection by the host, checked by a server that sees the request.
do
    local seen = {}
    local srv = http.serve { handler = function(req)
        seen[#seen + 1] = { auth = req.headers.authorization, api = req.headers["x-api-key"], query = req.query }
        return { status = 200, body = "ok" }
    end }
    local base = "http://127.0.0.1:" .. srv.port
    local key = weft.secret("env:WEFT_CANARY_KEY")
    http.request { url = base .. "/a", auth = { secret = key, format = "Bearer {}" } }
    http.request { url = base .. "/b?x=1", auth = { secret = key, query = "key" } }
    http.request { url = base .. "/c", auth = { { secret = key, header = "x-api-key" }, { secret = key, format = "Bearer {}" } } }
    check(seen[1].auth == "Bearer " .. KEY, "header placement with a format")
    check(seen[2].query == "x=1&key=" .. KEY, "query placement, appended to the query")
    check(seen[3].api == KEY and seen[3].auth == "Bearer " .. KEY, "several placements at once")
    local bad = secrets.value("test:crlf", "abc\r\nx-injected: 1")
    local err = raised(http.request, { url = base .. "/", auth = { secret = bad } })
    check(err and tostring(err):find("CR or LF", 1, true), "a secret with CR/LF is refused in a header", err)
    check(#seen == 3, "...and nothing was sent")
    srv:close()
end

-- 3. OAuth2 client credentials against a local token endpoint.
do
    local token_requests, issued = 0, 0
    -- long enough that a slow host (valgrind, a busy CI machine) can send
    -- 100 requests before the token expires again: the checks below are
    -- about single flight and refresh counts, not about speed
    local lifetime = 2
    local accepted = {}
    local token_srv = http.serve { handler = function(req)
        token_requests = token_requests + 1
        local ok = req.headers.authorization == "Basic " .. weft.mock.common.base64("weft-test-client:" .. KEY)
            and req.body:find("grant_type=client_credentials", 1, true)
        if not ok then return { status = 401, body = "{}" } end
        weft.sleep(0.05) -- slow enough that concurrent callers overlap
        issued = issued + 1
        local tok = "wcanary-token-" .. issued .. "-Zq8"
        accepted[tok] = true
        return { status = 200, headers = { ["content-type"] = "application/json" },
                 body = json.encode { access_token = tok, token_type = "Bearer", expires_in = lifetime } }
    end }
    local api_calls, rejected_once = 0, false
    local api = http.serve { handler = function(req)
        api_calls = api_calls + 1
        local tok = (req.headers.authorization or ""):match("^Bearer (.+)$")
        if req.path == "/reject-first" and not rejected_once then
            rejected_once = true
            accepted[tok or ""] = nil -- revoke it
        end
        if tok and accepted[tok] then return { status = 200, body = "ok" } end
        return { status = 401, body = "{}" }
    end }
    local token = secrets.oauth2 {
        token_url = "http://127.0.0.1:" .. token_srv.port .. "/token",
        client_id = "weft-test-client",
        client_secret = weft.secret("env:WEFT_CANARY_KEY"),
        early = 0.1,
    }
    check(token.loaded and token_requests == 1, "the first token is fetched at creation", token_requests)
    local url = "http://127.0.0.1:" .. api.port
    -- 100 concurrent callers after expiry: one token request for all
    weft.sleep(lifetime)
    local before = token_requests
    local fns = {}
    for i = 1, 100 do
        fns[i] = function() return http.request { url = url .. "/x", auth = { secret = token, format = "Bearer {}" } }.status end
    end
    local st = weft.all(fns)
    local all200 = true
    for i = 1, 100 do all200 = all200 and st[i] == 200 end
    check(all200, "100 concurrent calls with an expired token all succeed")
    check(token_requests - before == 1, "single flight: one token request for 100 callers", token_requests - before)
    -- 401 -> exactly one refresh and one retry
    before = token_requests
    local calls_before = api_calls
    local r = http.request { url = url .. "/reject-first", auth = { secret = token, format = "Bearer {}" } }
    check(r.status == 200, "a 401 triggers a refresh and the retry succeeds", r.status)
    check(token_requests - before == 1 and api_calls - calls_before == 2, "one refresh, one retry",
        (token_requests - before) .. " refreshes, " .. (api_calls - calls_before) .. " calls")
    check(token.events.rejected == 1, "the rejection is counted", token.events.rejected)
    -- a token endpoint that refuses us: a clear error, no loop
    local never = http.serve { handler = function() return { status = 401, body = "{}" } end }
    local err = raised(secrets.oauth2, { token_url = "http://127.0.0.1:" .. never.port .. "/t", client_id = "x",
                                         client_secret = weft.secret("env:WEFT_CANARY_KEY") })
    check(err and err.kind == "auth", "a refused client is an auth error", err)
    never:close()
    token_srv:close()
    api:close()
end

-- 4. Vault KV v2 source against a local fake of its endpoint.
do
    local vault = http.serve { handler = function(req)
        if req.headers["x-vault-token"] ~= os.getenv("WEFT_CANARY_TOKEN") then return { status = 403, body = "{}" } end
        if req.path ~= "/v1/secret/data/openai" then return { status = 404, body = "{}" } end
        return { status = 200, headers = { ["content-type"] = "application/json" },
                 body = json.encode { data = { data = { api_key = os.getenv("WEFT_CANARY_VAULT") }, metadata = { version = 3 } } } }
    end }
    secrets.use("vault", { addr = "http://127.0.0.1:" .. vault.port, token = weft.secret("env:WEFT_CANARY_TOKEN") })
    local v = weft.secret("vault:secret/openai#api_key", { ttl = 60 })
    check(v.loaded and v.expires_in > 59, "the Vault source loads a field with a TTL")
    local err = raised(weft.secret, "vault:secret/missing#api_key")
    check(err and tostring(err):find("secret/missing answered 404", 1, true), "a missing path is a clear error", err)
    err = raised(weft.secret, "vault:secret/openai#nope")
    check(err and tostring(err):find("no string field nope", 1, true), "a missing field is a clear error", err)
    vault:close()
end

-- 5. A 401 is resent only with a new value: an env: secret is not loaded
-- again at all (the environment cannot change from outside), a file: secret
-- is, and the request goes again only when the file held a new key.
do
    local NEW = assert(os.getenv("WEFT_CANARY_TOKEN"), "run through ctest")
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local path = dir .. "/key"
    local function write_key(v)
        local f = assert(io.open(path, "w"))
        f:write(v, "\n")
        f:close()
    end
    write_key(KEY)
    os.execute("chmod 600 " .. path)
    -- accepts only NEW; the first rejection of the old key may rotate the file
    local hits, rotate = 0, false
    local srv = http.serve { handler = function(req)
        hits = hits + 1
        if req.headers.authorization == "Bearer " .. NEW then return { status = 200, body = "ok" } end
        if rotate then
            rotate = false
            write_key(NEW)
        end
        return { status = 401, body = "{}" }
    end }
    local url = "http://127.0.0.1:" .. srv.port .. "/v1"
    local function send(h)
        hits = 0
        return http.request { url = url, auth = { secret = h, format = "Bearer {}" } }
    end

    local env = weft.secret("env:WEFT_CANARY_KEY")
    local ev, version = env.events, env.version
    local r = send(env)
    check(r.status == 401 and hits == 1, "env: a 401 is not sent again with the same key", hits .. " requests")
    check(env.events.rejected == ev.rejected + 1, "... the rejection is counted", env.events.rejected)
    check(env.events.refreshed == ev.refreshed and env.version == version, "... and the variable is not read again",
        env.events.refreshed)

    local file = weft.secret("file:" .. path)
    ev, version = file.events, file.version
    r = send(file)
    check(r.status == 401 and hits == 1, "file: unchanged, a 401 is not sent again", hits .. " requests")
    check(file.events.refreshed == ev.refreshed + 1, "... the file was read again", file.events.refreshed)
    check(file.version == version, "... and the same key left the version as it was", file.version)

    rotate = true
    r = send(file)
    check(r.status == 200 and hits == 2, "file: rotated after the 401, the request goes again with the new key",
        r.status .. ", " .. hits .. " requests")
    check(file.version == version + 1, "... one new version", file.version)
    check(send(file).status == 200 and hits == 1, "... which the next request sends at once", hits)

    -- someone else loaded a new value while the request was on the wire:
    -- resent without reading the file again
    write_key(KEY)
    weft.secrets.refresh(file)
    local slow = http.serve { handler = function(req)
        hits = hits + 1
        if req.headers.authorization == "Bearer " .. NEW then return { status = 200, body = "ok" } end
        write_key(NEW)
        weft.secrets.refresh(file)
        return { status = 401, body = "{}" }
    end }
    hits = 0
    ev = file.events
    r = http.request { url = "http://127.0.0.1:" .. slow.port .. "/", auth = { secret = file, format = "Bearer {}" } }
    check(r.status == 200 and hits == 2, "a value loaded by another task meanwhile is sent again",
        r.status .. ", " .. hits .. " requests")
    check(file.events.refreshed == ev.refreshed + 1, "... without loading it once more", file.events.refreshed)
    slow:close()
    srv:close()
    os.execute("rm -rf " .. dir)
end

-- 6. Redaction of every loaded value in logs and errors.
do
    local log = weft.log
    log.warn("this line mentions " .. os.getenv("WEFT_CANARY_KEY") .. " in passing")
    local e = weft.error.new("transient", "upstream said " .. os.getenv("WEFT_CANARY_VAULT"))
    check(not tostring(e):find(os.getenv("WEFT_CANARY_VAULT"), 1, true), "error text is redacted", tostring(e))
    check(secrets.redact("x " .. KEY .. " y"):find("<secret ", 1, true) ~= nil, "weft.secrets.redact replaces values")
end

t.done()
