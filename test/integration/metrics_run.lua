-- metrics_run.lua: the script metrics_test.sh runs under
-- `weft run --metrics 127.0.0.1:0 --summary`, against a `weft mock` whose
-- first three chat requests fail with 503. It exercises every standard
-- metric, writes DIR/port and DIR/ready, then waits for DIR/stop.
local url, dir = arg[1], arg[2]
assert(url and dir, "usage: metrics_run.lua MOCK_URL DIR")
local http, json, E = weft.http, weft.json, weft.error

local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
end

local key = weft.secret("env:WEFT_CANARY_KEY")          -- secret "load"
weft.secrets.refresh(key)                                -- secret "refresh"
weft.calls.set_prices("openai", { ["gpt-4o-mini"] = { input = 0.15, output = 0.6 } })
weft.calls.configure { success_lines_per_second = 2 }   -- some success lines are sampled out
weft.on("response", function() error("a broken hook") end) -- logged and counted, calls unaffected
local lim = weft.limiter.new { rps = 1000, name = "openai" }
local br = weft.breaker.new { name = "openai" }
local policy = weft.retry.policy { base = 0.001, cap = 0.01, seed = 1 }

local function chat(model, extra)
    local body = { model = model, messages = { { role = "user", content = "ping" } } }
    if model == "broken" then body = { model = "gpt-4o-mini" } end -- no messages: 400
    for k, v in pairs(extra or {}) do body[k] = v end
    return json.encode(body)
end

-- The attempt records on its call what the lower layers measured: the
-- limiter's wait, weft.http's wire time and quota headers, the first token.
local function call(model, operation, stream)
    return weft.retry.run(policy, function(_, _, c)
        c:wait_time(lim:acquire())
        return br:call(function()
            local got = {}
            local res = http.request { method = "POST", url = url .. "/v1/chat/completions",
                headers = { ["content-type"] = "application/json" },
                auth = { secret = key, format = "Bearer {}" },
                body = chat(model, stream and { stream = true, stream_options = { include_usage = true } }),
                on_data = stream and function(chunk)
                    c:first_token()
                    got[#got + 1] = chunk
                end or nil }
            c:http(res)
            local err = weft.retry.http_error(res, "openai")
            if err then error(err, 0) end
            local text = stream and table.concat(got) or res.body
            local usage = stream and json.decode(text:match('data: (%b{})%s+data: %[DONE%]')).usage
                or json.decode(text).usage
            c:usage(usage.prompt_tokens, usage.completion_tokens)
            return res
        end)
    end, { provider = "openai", model = model, operation = operation })
end

for _ = 1, 10 do call("gpt-4o-mini", "chat") end   -- 3 injected 503s: 13 attempts, 3 retries
call("gpt-4o-mini", "stream", true)                  -- time to first token
call("gpt-unpriced", "chat")                         -- no price: one warning, no cost
call("gpt-unpriced", "chat")

-- A rejected key: counted and refreshed once; the refresh reads the same key, so
-- nothing is resent (a plain request, no call).
local bad = weft.secrets.derived("wrong-key", function() return "sk-not-the-key" end) -- a second load
local res = http.request { method = "POST", url = url .. "/v1/chat/completions", body = chat("gpt-4o-mini"),
    headers = { ["content-type"] = "application/json" }, auth = { secret = bad, format = "Bearer {}" } }
assert(res.status == 401, res.status)

-- A call that fails without retry: outcome invalid_request.
local ok, err = pcall(call, "broken", "chat")
assert(not ok and err.kind == "invalid_request", tostring(err))

weft.metrics.cache("answers", true)
weft.metrics.cache("answers", false)
pcall(weft.secrets.use, "vault", { addr = "http://127.0.0.1:1" }) -- plugin load ok
pcall(weft.secrets.use, "no-such-plugin")                        -- plugin load failed

local capped = weft.metrics.counter("app_tenant_calls_total", "Calls per tenant (capped at 2 series).", { "tenant" })
capped:max_series(2)
for _, t in ipairs { "a", "b", "c", "d" } do capped:inc(1, t) end
weft.metrics.gauge("app_queue_depth", "Items waiting.", { "queue" }):set(3, "default")
weft.metrics.histogram("app_prompt_tokens", "Prompt sizes.", { "route" }, "tokens"):observe(700, "summarise")

write("port", tostring(weft.metrics.endpoint:match(":(%d+)/metrics$")))
write("ready", "1")
local deadline = weft.now() + 120
while weft.now() < deadline do
    local f = io.open(dir .. "/stop")
    if f then f:close() break end
    weft.sleep(0.05)
end
