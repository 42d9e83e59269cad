#!/bin/bash
# canary_test.sh: every path that could leak a secret, run with canary
# values; all stdout and stderr (logs at debug level included) are grepped
# for the values.
set -u
: "${WEFT:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/leak.lua" <<'LUA'
local key = weft.secret("env:WEFT_CANARY_KEY")
local tok = weft.secret("env:WEFT_CANARY_TOKEN")
-- printing, formatting, serializing
print(key, tostring(key), string.format("%s|%q", tostring(key), tostring(key)))
print(pcall(function() return "k=" .. key end))
print(pcall(function() return key .. "" end))
print(pcall(weft.json.encode, { auth = key }))
print(pcall(string.format, "%s", key))
local t = { provider = "openai", key = key, nested = { tok } }
for k, v in pairs(t) do print(k, v) end
-- debug tricks
print(pcall(getmetatable, key), debug.getmetatable(key) and "has mt")
local mt = debug.getmetatable(key)
for k, v in pairs(mt) do print("mt", k, type(v)) end
print(pcall(function() return key.value, key.secret, key[1], rawlen and rawlen(key) end))
for i = 1, 3 do print(pcall(debug.getupvalue, mt.__index, i)) end
print(pcall(debug.getfenv, key))
-- logs at every level, errors, tracebacks, retries through the mock
weft.log.debug("debug line", { k = tostring(key) })
weft.log.info("the raw value would be " .. os.getenv("WEFT_CANARY_KEY"))
local m = weft.mock.start { keys = { openai = os.getenv("WEFT_CANARY_KEY") }, faults = { { sequence = { 500, 503 } } } }
local policy = weft.retry.policy { base = 0.01 }
local res = weft.retry.run(policy, function()
    local r = weft.http.request { method = "POST", url = m.url .. "/v1/chat/completions?key=x",
        body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
        auth = { { secret = key, format = "Bearer {}" }, { secret = tok, query = "token" } } }
    local e = weft.retry.http_error(r)
    if e then error(e, 0) end
    return r
end)
print("status", res.status)
print(weft.json.encode(m:requests()))
print(weft.http.request { url = m.url .. "/_mock/requests" }.body)
local ok, err = pcall(weft.http.request, { url = "http://127.0.0.1:1/x", auth = { secret = key, query = "key" } })
print(ok, err)
m:close()
error("script failed while holding " .. tostring(key) .. " and " .. os.getenv("WEFT_CANARY_TOKEN"))
LUA
WEFT_LOG=debug "$WEFT" run "$dir/leak.lua" > "$dir/out" 2> "$dir/err"
rc=$?
fails=0
[ "$rc" = 1 ] && echo "ok 1 - the script ran to its final error" || { echo "not ok 1 - exit $rc"; cat "$dir/err"; fails=1; }
grep -q '<secret env:WEFT_CANARY_KEY>' "$dir/out" && echo "ok 2 - handles print as <secret NAME>" || { echo "not ok 2"; fails=1; }
grep -q 'status	200' "$dir/out" && echo "ok 3 - the call with injected credentials succeeded after retries" || { echo "not ok 3"; fails=1; }
grep -q '"level":"debug"' "$dir/err" && echo "ok 4 - debug logging was on" || { echo "not ok 4"; fails=1; }
if "$WEFT_SOURCE_DIR/scripts/check-canaries.sh" "$dir/out" "$dir/err"; then
    echo "ok 5 - no canary value in any output"
else
    echo "not ok 5 - a canary value leaked"
    fails=1
fi
echo "1..5"
[ "$fails" = 0 ]
