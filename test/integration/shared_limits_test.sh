#!/bin/bash
# shared_limits_test.sh: four weft processes, 100 concurrent callers each,
# against one `weft mock` whose own limit is 600 requests a minute (a fixed
# window), with the client limit (600 rpm) shared through a real
# redis-server (started here on a UNIX socket, stopped at the end):
# - shared, for 59.5 s (inside one mock window): the mock answers no 429
#   and the requests it admits are within 1% of the limit;
# - shared, for 20 s, Redis stopped (SIGSTOP) for 5 s, then killed and
#   started again: the mock sees at most the limit plus the documented
#   slack, each process says once each time that it fell back to its share
#   and that Redis answers again, and no call fails for another reason;
# - not shared, for 10 s: the failure it prevents, every process sending
#   the whole limit (at least 3.5 times the shared rate reaches the mock).
# A wrong Redis password is an auth error at the first call, the password
# never printed.
set -u
: "${WEFT:?run through ctest}"
command -v redis-server > /dev/null || { echo "redis-server missing (scripts/deps.sh test installs it)"; exit 1; }
dir=$(mktemp -d)
cd "$dir" || exit 1
mock_pid= redis_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2> /dev/null
    [ -f redis.pid ] && kill -CONT "$(cat redis.pid)" 2> /dev/null && kill "$(cat redis.pid)" 2> /dev/null
    cd / && rm -rf "$dir"
}
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
PW=$WEFT_CANARY_KEY
start_redis() {
    redis-server --port 0 --unixsocket "$dir/redis.sock" --requirepass "$PW" --daemonize yes \
        --pidfile "$dir/redis.pid" --dir "$dir" --save '' --appendonly no --logfile "$dir/redis.log"
    for _ in $(seq 500); do [ -S redis.sock ] && [ -f redis.pid ] && break; sleep 0.01; done
    [ -S redis.sock ] || { echo "redis-server did not start"; exit 1; }
}
start_redis

start_mock() { # LIMITS: a weft mock with these limits (a fixed window), its URL in $url
    if [ -n "$mock_pid" ]; then kill "$mock_pid"; wait "$mock_pid" 2> /dev/null; fi
    echo "return { limits = { $1, window = \"fixed\" } }" > profile.lua
    "$WEFT" mock --port 0 --profile profile.lua > mock.url 2> mock.err &
    mock_pid=$!
    url=
    for _ in $(seq 500); do url=$(head -1 mock.url 2> /dev/null); [ -n "$url" ] && break; sleep 0.01; done
    [ -n "$url" ] || { echo "weft mock did not start"; cat mock.err; exit 1; }
    export MOCK_URL=$url
}
start_mock "rpm = 600"

# client.lua SHARED(0|1) UNTIL(weft.time()) [tpm]: 100 callers until UNTIL;
# prints "ok N limited N other N tokens N" (tokens: the usage of the
# answered calls). With tpm: a shared limit of 6000 tokens a minute (a
# bucket of 60) instead of the 600 requests, for a prompt whose tokens the
# client underestimates (13 input tokens estimated, 26 counted by the mock,
# plus the 2 of max_tokens, which the answer uses up): only the
# reconciliation of each answer's usage keeps the fleet within the limit.
cat > client.lua <<'LUA'
local shared_on, untilt, tpm = arg[1] == "1", tonumber(arg[2]), arg[3] == "tpm"
local limits = tpm and { tpm = 6000, token_burst = 60 } or { rpm = 600, burst = 1 }
local prompt = tpm and "a b c d e f g h i j k l m n o p q r s t" or "hi"
local max_tokens = tpm and 2 or 1
if shared_on then
    limits.shared = { url = "unix://" .. os.getenv("REDIS_SOCK"), password = "env:REDIS_PW", processes = 4, timeout = 0.2 }
end
weft.configure { providers = { openai = { base_url = os.getenv("MOCK_URL"), limits = limits, breaker = false,
                                          secret = weft.secrets.value("k", "sk-weft-mock"),
                                          retry = { max_attempts = 1 } } } }
local m = weft.model("openai/gpt-4o-mini")
local ok, limited, other, tokens = 0, 0, 0, 0
local tasks = {}
for i = 1, 100 do
    tasks[i] = weft.spawn(function()
        while weft.time() < untilt do
            local left = untilt - weft.time()
            local good, err = pcall(m.complete, m, { prompt = prompt, max_tokens = max_tokens, deadline = weft.now() + left })
            if good then
                ok = ok + 1
                tokens = tokens + err.usage.input + err.usage.output
            elseif err.kind == "rate_limited" then
                -- as a caller should: wait what it was told (at most until the end)
                limited = limited + 1
                weft.sleep(math.max(0.001, math.min(tonumber(err.retry_after) or 0.1, untilt - weft.time())))
            else
                other = other + 1
                weft.sleep(0.01)
            end
        end
    end)
end
for _, t in ipairs(tasks) do t:wait() end
print(("ok %d limited %d other %d tokens %d"):format(ok, limited, other, tokens))
LUA

stats() { curl -s "$url/_mock/stats"; }
status_count() { stats | python3 -c "import json,sys; print(json.load(sys.stdin)['by_status'].get('$1', 0))"; }
requests() { stats | python3 -c "import json,sys; print(json.load(sys.stdin)['requests'])"; }

export REDIS_SOCK=$dir/redis.sock REDIS_PW=$PW
run_shared() { # NAME SECONDS [tpm]: four clients, shared limits
    curl -s -X POST "$url/_mock/reset" > /dev/null
    until=$(python3 -c "import time; print(time.time() + $2)")
    pids=
    for i in 1 2 3 4; do
        "$WEFT" run client.lua 1 "$until" ${3:-} > "$1$i.out" 2> "$1$i.err" &
        pids="$pids $!"
    done
}
# --- shared, 59.5 s inside one mock window
run_shared shared 59.5
for p in $pids; do wait "$p"; done
ok200=$(status_count 200)
s429=$(status_count 429)
echo "# shared: the mock answered $ok200 with 200 and $s429 with 429; clients: $(cat shared*.out | tr '\n' ';')"
check "shared: no 429 from the mock" [ "$s429" = 0 ]
check "shared: admitted within 1% of the limit for 59.5 s (595 +- 6)" test "$ok200" -ge 589 -a "$ok200" -le 601
check "shared: the password is never printed" bash -c "! grep -qF '$PW' shared*.err shared*.out"

# --- shared token limit, 58 s: the mock's 6000 tokens a minute (a fixed
# window, counting input plus max_tokens) and the client's shared 6000 with
# a bucket of 60: 58 s admit 5800 + 60 tokens
start_mock "tpm = 6000"
run_shared tokens 58 tpm
for p in $pids; do wait "$p"; done
ok200=$(status_count 200)
s429=$(status_count 429)
tokens=$(cat tokens*.out | awk '{s += $8} END {print s}')
echo "# shared tpm: the mock answered $ok200 with 200 ($tokens tokens) and $s429 with 429; clients: $(cat tokens*.out | tr '\n' ';')"
check "shared tpm: no 429 from the mock" [ "$s429" = 0 ]
check "shared tpm: tokens admitted within 2% of the limit for 58 s (5860 +- 117)" test "$tokens" -ge 5743 -a "$tokens" -le 5977
check "shared tpm: every answer counted 28 tokens (the estimate was 15)" test "$tokens" = $((ok200 * 28))
start_mock "rpm = 600"

# --- shared, 20 s: Redis stopped (SIGSTOP) from 5 s to 10 s, killed at 12 s, started again at 15 s
run_shared failing 20
sleep 5
kill -STOP "$(cat redis.pid)"
sleep 5
kill -CONT "$(cat redis.pid)"
sleep 2
kill "$(cat redis.pid)"
for _ in $(seq 500); do [ -f redis.pid ] || break; sleep 0.01; done
sleep 3
start_redis
for p in $pids; do wait "$p"; done
ok200=$(status_count 200)
echo "# Redis failing: the mock answered $ok200 with 200 and $(status_count 429) with 429 in 20 s; clients: $(cat failing*.out | tr '\n' ';')"
check "Redis failing: the mock sees at most the limit plus the documented slack (200 + 5)" [ "$ok200" -le 205 ]
check "... every process fell back to its share twice (stopped, killed), said once each time" \
    [ "$(grep -c 'each process keeps to its share' failing*.err | awk -F: '{s += $2} END {print s}')" = 8 ]
check "... and came back to the shared state twice" \
    [ "$(grep -c 'Redis answers again' failing*.err | awk -F: '{s += $2} END {print s}')" = 8 ]
check "... no call failed for another reason than the limit" bash -c "! grep -q 'other [1-9]' failing*.out"

# --- not shared, 10 s: every process sends the whole limit
curl -s -X POST "$url/_mock/reset" > /dev/null
until=$(python3 -c "import time; print(time.time() + 10)")
pids=
for i in 1 2 3 4; do
    "$WEFT" run client.lua 0 "$until" > "local$i.out" 2> "local$i.err" &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
reached=$(requests)
echo "# not shared: $reached requests reached the mock in 10 s ($(status_count 429) answered 429); clients: $(cat local*.out | tr '\n' ';')"
check "not shared: at least 3.5 times the shared rate reaches the mock (>= 350 in 10 s)" [ "$reached" -ge 350 ]

# --- a wrong password
cat > badpw.lua <<'LUA'
local r = weft.redis.connect { url = "unix://" .. os.getenv("REDIS_SOCK"), password = weft.secrets.value("bad", "wrong-pass-9876") }
local ok, err = pcall(r.ping, r)
print(ok, err.kind)
print(err.message)
LUA
"$WEFT" run badpw.lua > badpw.out 2>&1
check "a wrong password: kind auth at the first call" grep -qx $'false\tauth' badpw.out
check "... the password never printed" bash -c "! grep -q 'wrong-pass-9876' badpw.out"

echo "1..$n"
[ "$fails" = 0 ]
