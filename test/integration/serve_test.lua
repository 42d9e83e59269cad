-- serve_test.lua: weft serve in one process (also run under valgrind by
-- ctest): the gateway's C pieces end to end -- a whole answer, a stream, a
-- client that goes away cancelling its upstream call (res:cancel_on_gone),
-- a virtual key whose value stays in the host (_secrets.sha256_hex), and
-- weft._signal taking a SIGHUP and then the shutdown signal in place of the
-- loop's cancel-all.
local t = require "support"
local check = t.check
local ffi = require "ffi"
pcall(ffi.cdef, "int kill(int pid, int sig); int getpid(void);")
local json = weft.json

local mock = weft.mock.start { port = 0 }
local keys = weft.mock.DEFAULT_KEYS
local gw = require("weft.serve").start { port = 0, watch = false, cfg = {
    providers = { openai = { base_url = mock.url, secret = weft.secrets.value("it-oa", keys.openai) } },
    models = { fast = "openai/gpt-4o-mini", slow = "openai/gpt-4o" },
    gateway = { keys = { it = { secret = weft.secrets.value("it-key", "it-virtual-key-0123") } } },
} }
local auth = { authorization = "Bearer it-virtual-key-0123" }
local function chat(b, opts)
    local o = { method = "POST", url = gw.url .. "/v1/chat/completions", headers = auth, body = json.encode(b) }
    for k, v in pairs(opts or {}) do o[k] = v end
    return weft.http.request(o)
end
local want = weft.mock.answer("hi there")

local r = chat { model = "fast", messages = { { role = "user", content = "hi there" } } }
check(r.status == 200 and json.decode(r.body).choices[1].message.content == want, "a whole answer", r.body)
local chunks = {}
r = chat({ model = "fast", stream = true, messages = { { role = "user", content = "hi there" } } },
    { on_data = function(c) chunks[#chunks + 1] = c end })
check(r.status == 200 and table.concat(chunks):find("data: [DONE]", 1, true) ~= nil, "a stream")
check(weft.http.request { url = gw.url .. "/v1/models" }.status == 401, "no key, no models")

mock:set_faults { { model = "gpt-4o", latency = 2000 } }
local ok, e = pcall(chat, { model = "slow", messages = { { role = "user", content = "x" } } }, { timeout = 0.3 })
check(not ok and e.kind == "timeout", "the client gives up", e)
local entry
for _ = 1, 100 do
    local log = mock:requests()
    entry = log[#log]
    if entry.closed_early then break end
    weft.sleep(0.05)
end
check(entry.closed_early, "the upstream call was cancelled when the client went away")

local S = require "weft._signal"
local hup = S.new("hup")
ffi.C.kill(ffi.C.getpid(), 1)
check(hup:wait() == "SIGHUP", "SIGHUP reaches its watcher")
hup:close()
local down = S.new("shutdown")
check(not pcall(S.new, "shutdown"), "one shutdown watcher at a time")
local waiter = weft.spawn(function() return down:wait() end)
weft.sleep(0)
ffi.C.kill(ffi.C.getpid(), 15)
check(waiter:wait() == "SIGTERM", "SIGTERM reaches the shutdown watcher instead of cancelling every task")
local finished, cancelled = gw:drain(5)
check(finished == 0 and cancelled == 0, "nothing to drain", finished .. " " .. cancelled)
down:close()
gw:close()
mock:close()
t.done()
