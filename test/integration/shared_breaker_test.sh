#!/bin/bash
# shared_breaker_test.sh: a circuit breaker shared by four weft processes
# through a real redis-server (started here on a UNIX socket, stopped at
# the end), against one `weft mock` answering 500 to every request:
# - one process sees the outage: its breaker opens (after min_calls
#   failures) and it publishes the open state;
# - three other processes then call for 1.5 cool-downs: the mock sees
#   exactly one request from them all, the fleet's single half-open probe
#   after the cool-down (which fails: the breaker opens again); every other
#   call fails at once with circuit_open;
# - the outage over, the next probe succeeds and the fleet's calls go
#   through again.
set -u
: "${WEFT:?run through ctest}"
command -v redis-server > /dev/null || { echo "redis-server missing (scripts/deps.sh test installs it)"; exit 1; }
dir=$(mktemp -d)
cd "$dir" || exit 1
mock_pid=
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2> /dev/null
    [ -f redis.pid ] && kill "$(cat redis.pid)" 2> /dev/null
    cd / && rm -rf "$dir"
}
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
PW=$WEFT_CANARY_KEY
redis-server --port 0 --unixsocket "$dir/redis.sock" --requirepass "$PW" --daemonize yes \
    --pidfile "$dir/redis.pid" --dir "$dir" --save '' --appendonly no --logfile "$dir/redis.log"
for _ in $(seq 500); do [ -S redis.sock ] && [ -f redis.pid ] && break; sleep 0.01; done
[ -S redis.sock ] || { echo "redis-server did not start"; exit 1; }

"$WEFT" mock --port 0 > mock.url 2> mock.err &
mock_pid=$!
url=
for _ in $(seq 500); do url=$(head -1 mock.url 2> /dev/null); [ -n "$url" ] && break; sleep 0.01; done
[ -n "$url" ] || { echo "weft mock did not start"; cat mock.err; exit 1; }
export MOCK_URL=$url REDIS_SOCK=$dir/redis.sock REDIS_PW=$PW
requests() { curl -s "$url/_mock/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['requests'])"; }
# every request answered 500 (a sequence longer than the test sends)
python3 -c "import json; print(json.dumps([{'sequence': [500] * 5000}]))" > faults.json
curl -fsS -X POST "$url/_mock/faults" -d @faults.json > /dev/null

COOLDOWN=4
# fleet.lua trip: calls until its breaker opens; prints the weft.time() it opened.
# fleet.lua watch UNTIL COOLDOWN_END: calls every 20 ms until UNTIL; prints
# "open N transient N ok N other N open_in_cooldown N".
# fleet.lua heal: calls until 5 succeed (at most 60 s); prints "ok N open N".
cat > fleet.lua <<LUA
weft.configure { providers = { openai = {
    base_url = os.getenv("MOCK_URL"), secret = weft.secrets.value("k", "sk-weft-mock"),
    retry = { max_attempts = 1 },
    breaker = { threshold = 0.5, min_calls = 5, window = 10, cooldown = $COOLDOWN,
                shared = { url = "unix://" .. os.getenv("REDIS_SOCK"), password = "env:REDIS_PW" } } } } }
local m = weft.model("openai/gpt-4o-mini")
local mode = arg[1]
if mode == "trip" then
    for _ = 1, 100 do
        local ok, err = pcall(m.complete, m, "hi")
        if not ok and err.kind == "circuit_open" then print(("%.3f"):format(weft.time())) return end
    end
    error("the breaker never opened")
elseif mode == "watch" then
    local untilt, cool_end = tonumber(arg[2]), tonumber(arg[3])
    local c = { open = 0, transient = 0, ok = 0, other = 0, open_in_cooldown = 0 }
    while weft.time() < untilt do
        local ok, err = pcall(m.complete, m, "hi")
        if ok then c.ok = c.ok + 1
        elseif err.kind == "circuit_open" then
            c.open = c.open + 1
            if weft.time() < cool_end then c.open_in_cooldown = c.open_in_cooldown + 1 end
        elseif err.kind == "transient" then c.transient = c.transient + 1
        else c.other = c.other + 1 io.stderr:write(tostring(err), "\n") end
        weft.sleep(0.02)
    end
    print(("open %d transient %d ok %d other %d open_in_cooldown %d"):format(c.open, c.transient, c.ok, c.other,
        c.open_in_cooldown))
else
    local good, open = 0, 0
    local stop = weft.time() + 60
    while good < 5 and weft.time() < stop do
        local ok, err = pcall(m.complete, m, "hi")
        if ok then good = good + 1 elseif err.kind == "circuit_open" then open = open + 1 end
        weft.sleep(0.05)
    end
    print(("ok %d open %d"):format(good, open))
end
LUA

"$WEFT" run fleet.lua trip > trip.out 2> trip.err
t_open=$(cat trip.out)
[ -n "$t_open" ] || { echo "the first process's breaker did not open"; cat trip.err; exit 1; }
r0=$(requests)
echo "# the first process opened its breaker at $t_open after $r0 requests"
check "one process saw the outage: its breaker opened after at least min_calls (5) requests" [ "$r0" -ge 5 ]
until=$(python3 -c "print($t_open + 1.5 * $COOLDOWN)")
cool_end=$(python3 -c "print($t_open + $COOLDOWN)")
pids=
for i in 1 2 3; do
    "$WEFT" run fleet.lua watch "$until" "$cool_end" > "watch$i.out" 2> "watch$i.err" &
    pids="$pids $!"
done
for p in $pids; do wait "$p"; done
r1=$(requests)
echo "# the three others: $(cat watch*.out | tr '\n' ';') and the mock saw $((r1 - r0)) requests from them"
check "the others sent exactly one request in 1.5 cool-downs: the fleet's single probe" [ $((r1 - r0)) = 1 ]
check "... which failed (one transient error among all their calls)" \
    [ "$(cat watch*.out | awk '{s += $4} END {print s}')" = 1 ]
check "... every other call failed at once with circuit_open, in each process during the cool-down" \
    bash -c "[ \$(grep -c 'open_in_cooldown [1-9]' watch*.out | awk -F: '{s += \$2} END {print s}') = 3 ] && ! grep -q 'other [1-9]' watch*.out && ! grep -q 'ok [1-9]' watch*.out"

# the outage ends: the next probe (after the cool-down set by the failed one) closes the fleet's breaker
curl -fsS -X POST "$url/_mock/faults" -d '[]' > /dev/null
"$WEFT" run fleet.lua heal > heal.out 2> heal.err
echo "# after the outage: $(cat heal.out)"
check "after the outage the probe succeeds and the calls go through again" grep -q '^ok 5 ' heal.out
check "the password is never printed" bash -c "! grep -qF '$PW' ./*.out ./*.err"

echo "1..$n"
[ "$fails" = 0 ]
