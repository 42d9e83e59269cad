#!/bin/bash
# serve_signals_test.sh: weft serve's life cycle under signals.
#  1. SIGTERM with 100 streams in flight: every stream finishes whole
#     (ends with data: [DONE]), new connections are refused, exit status 0.
#  2. SIGTERM when streams outlast gateway.drain_timeout: they are cancelled
#     at the bound (cut short), exit status 0, not before the bound.
#  3. SIGHUP with a changed alias while clients keep calling: new requests
#     go to the new target, no request fails; then the same through the
#     file watch (no signal).
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
mock_pid= gw_pid=
trap '[ -n "$gw_pid" ] && kill -9 $gw_pid 2>/dev/null; [ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "not ok - $*"; [ -f "$dir/gw.err" ] && tail -20 "$dir/gw.err"; exit 1; }
wait_url() { for _ in $(seq 200); do u=$(head -1 "$1" 2>/dev/null); [ -n "$u" ] && { echo "$u"; return; }; sleep 0.05; done; }

cat > "$dir/profile.lua" <<'LUA'
return { faults = { { model = "gpt-4o", stream_delay_ms = 60 } } }
LUA
"$WEFT" mock --port 0 --profile "$dir/profile.lua" --max-connections 1000 > "$dir/mock.url" 2> "$dir/mock.err" &
mock_pid=$!
mock=$(wait_url "$dir/mock.url")
[ -n "$mock" ] || fail "weft mock did not start"
export MOCK_OPENAI_KEY=sk-weft-mock MOCK_ANTHROPIC_KEY=sk-ant-weft-mock

config() { # MAIN_TARGET DRAIN_TIMEOUT
    cat > "$dir/gw.lua.new" <<LUA
return {
    providers = {
        openai = { base_url = "$mock", secret = "env:MOCK_OPENAI_KEY" },
        anthropic = { base_url = "$mock", secret = "env:MOCK_ANTHROPIC_KEY" },
    },
    models = { main = "$1", slow = "openai/gpt-4o" },
    gateway = { drain_timeout = $2 },
}
LUA
    mv "$dir/gw.lua.new" "$dir/gw.lua"
}
start_gw() { # extra args
    "$WEFT" -l info serve --config "$dir/gw.lua" --port 0 "$@" > "$dir/gw.url" 2> "$dir/gw.err" &
    gw_pid=$!
    gw=$(wait_url "$dir/gw.url")
    [ -n "$gw" ] || fail "weft serve did not start"
}

# The client: N streams of the slow model at once; "ready" in READY once
# each has its first bytes; then prints how many ended whole and how many
# were cut.
cat > "$dir/streams.lua" <<'LUA'
local url, n, ready = arg[1], tonumber(arg[2]), arg[3]
local words = {}
for i = 1, 30 do words[i] = "word" .. i end
local body = weft.json.encode { model = "slow", stream = true, messages = { { role = "user", content = table.concat(words, " ") } } }
local started, whole, cut = 0, 0, 0
local tasks = {}
for i = 1, n do
    tasks[i] = weft.spawn(function()
        local got, first = {}, false
        local ok = pcall(weft.http.request, { method = "POST", url = url .. "/v1/chat/completions", body = body,
            timeout = 60, on_data = function(chunk)
                if not first then
                    first = true
                    started = started + 1
                    if started == n then local f = io.open(ready, "w") f:write("ready\n") f:close() end
                end
                got[#got + 1] = chunk
            end })
        local text = table.concat(got)
        if ok and text:find("data: %[DONE%]\n\n$") then whole = whole + 1 else cut = cut + 1 end
    end)
end
for i = 1, n do tasks[i]:wait() end
print(("started=%d whole=%d cut=%d"):format(started, whole, cut))
LUA

# ---- 1. SIGTERM with 100 streams in flight: all finish, exit 0
config openai/gpt-4o-mini 30
start_gw
"$WEFT" run "$dir/streams.lua" "$gw" 100 "$dir/ready1" > "$dir/client1.out" 2> "$dir/client1.err" &
client=$!
for _ in $(seq 600); do [ -f "$dir/ready1" ] && break; sleep 0.05; done
[ -f "$dir/ready1" ] || fail "the 100 streams did not all start"
kill -TERM $gw_pid
sleep 0.3
if curl -s -m 2 -o /dev/null "$gw/healthz"; then fail "a new connection was accepted while draining"; fi
wait $gw_pid; rc=$?; gw_pid=
wait $client
[ $rc -eq 0 ] || fail "weft serve exited $rc after SIGTERM with streams in flight"
grep -q "started=100 whole=100 cut=0" "$dir/client1.out" || { cat "$dir/client1.out" "$dir/client1.err"; fail "not every stream finished whole"; }
grep -q '"finished":100' "$dir/gw.err" || fail "the drain did not report 100 finished calls"
echo "ok 1 - SIGTERM with 100 streams in flight: 100 finished whole, exit 0"

# ---- 2. streams that outlast drain_timeout are cancelled at the bound
config openai/gpt-4o-mini 0.5
start_gw
"$WEFT" run "$dir/streams.lua" "$gw" 20 "$dir/ready2" > "$dir/client2.out" 2> "$dir/client2.err" &
client=$!
for _ in $(seq 600); do [ -f "$dir/ready2" ] && break; sleep 0.05; done
[ -f "$dir/ready2" ] || fail "the 20 streams did not all start"
t0=$(date +%s%N)
kill -TERM $gw_pid
wait $gw_pid; rc=$?; gw_pid=
t1=$(date +%s%N)
wait $client
[ $rc -eq 0 ] || fail "weft serve exited $rc after cancelling at the bound"
[ $(( (t1 - t0) / 1000000 )) -ge 500 ] || fail "the drain ended before its bound ($(( (t1 - t0) / 1000000 )) ms)"
grep -q "started=20 whole=0 cut=20" "$dir/client2.out" || { cat "$dir/client2.out"; fail "streams past the bound were not cut"; }
grep -q '"cancelled":20' "$dir/gw.err" || fail "the drain did not report 20 cancelled calls"
echo "ok 2 - SIGTERM: streams past drain_timeout cancelled at the bound, exit 0"

# ---- 3. SIGHUP, then a file change, with a changed alias and no failed request
cat > "$dir/callers.lua" <<'LUA'
-- 4 callers of "main" until STOP exists; prints each answer's provider in order
-- of completion and the failures.
local url, stop = arg[1], arg[2]
local body = weft.json.encode { model = "main", messages = { { role = "user", content = "hi" } } }
local seen, failures = {}, 0
local function caller()
    while not io.open(stop) do
        local ok, r = pcall(weft.http.request, { method = "POST", url = url .. "/v1/chat/completions", body = body, timeout = 10 })
        if ok and r.status == 200 then seen[#seen + 1] = r.headers["x-weft-provider"]
        else failures = failures + 1 io.stderr:write(ok and (r.status .. " " .. r.body) or tostring(r), "\n") end
        weft.sleep(0.005)
    end
end
local t = {}
for i = 1, 4 do t[i] = weft.spawn(caller) end
for i = 1, 4 do t[i]:wait() end
print("failures=" .. failures .. " calls=" .. #seen)
print(table.concat(seen, " "))
LUA
config openai/gpt-4o-mini 30
start_gw --no-watch # only the signal reloads
"$WEFT" run "$dir/callers.lua" "$gw" "$dir/stop" > "$dir/callers.out" 2> "$dir/callers.err" &
client=$!
sleep 0.5
config anthropic/claude-3-5-haiku-latest 30
sleep 0.3 # (not reloaded: the answers stay openai's until the signal)
kill -HUP $gw_pid
sleep 0.5
touch "$dir/stop"
wait $client
head -1 "$dir/callers.out" | grep -q "^failures=0 " || { cat "$dir/callers.out" "$dir/callers.err"; fail "a request failed across the SIGHUP reload"; }
seq_line=$(sed -n 2p "$dir/callers.out")
case "$seq_line" in openai*) ;; *) fail "the first answers were not openai's: ${seq_line:0:80}";; esac
case "$seq_line" in *anthropic) ;; *) fail "after SIGHUP the alias did not route to anthropic: ${seq_line: -80}";; esac
grep -q '"reason":"SIGHUP"' "$dir/gw.err" || fail "the SIGHUP reload was not logged"
kill -TERM $gw_pid; wait $gw_pid; rc=$?; gw_pid=
[ $rc -eq 0 ] || fail "exit $rc"
# the file watch: change the alias back without a signal
rm -f "$dir/stop"
start_gw
"$WEFT" run "$dir/callers.lua" "$gw" "$dir/stop" > "$dir/callers.out" 2> "$dir/callers.err" &
client=$!
sleep 0.5
config openai/gpt-4o-mini 30
for _ in $(seq 100); do grep -q '"reason":"file change"' "$dir/gw.err" && break; sleep 0.05; done
sleep 0.3
touch "$dir/stop"
wait $client
head -1 "$dir/callers.out" | grep -q "^failures=0 " || { cat "$dir/callers.out" "$dir/callers.err"; fail "a request failed across the file-change reload"; }
seq_line=$(sed -n 2p "$dir/callers.out")
case "$seq_line" in anthropic*openai) ;; *) fail "the file change did not route the alias back to openai";; esac
kill -TERM $gw_pid; wait $gw_pid; rc=$?; gw_pid=
[ $rc -eq 0 ] || fail "exit $rc"
echo "ok 3 - SIGHUP and a file change reroute the alias; no request failed"
