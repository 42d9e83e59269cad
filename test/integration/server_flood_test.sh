#!/bin/bash
# server_flood_test.sh: `weft mock` (weft.http.serve with its default limits:
# 10,000 connections, a quarter of them per client address) under the two
# floods of issue 14, driven by the floodclient helper:
#   1. 20 connections each pipelining 50,000 GETs without reading an answer;
#   2. 10,000 idle connections (nothing sent) from one address, then 10,000
#      with half a request head from 8 addresses (the server full).
# Throughout, a well-behaved client (curl, from 127.0.0.1 and 127.0.0.2:
# Linux routes all of 127/8 to lo) must get its answers while the flood is
# held open, and the server's resident set (VmRSS) must grow by less than
# 20 MB. Also checks that a paused pipelining connection answers every
# request once its client reads. Then (3.) the same defences at a small
# scale on a weft.http.serve script with max_connections = 40 and
# max_connections_per_address = 10, run under memcheck in plain builds:
# srv:stats() counts evicted and paused connections, and bad option values
# are refused. The RSS checks are skipped in a sanitized build (ASan's
# allocator makes the figures meaningless); the rest runs there too.
# No wall-time upper bound is asserted: curl's 30 s cap only detects a hang.
set -u
: "${WEFT:?run through ctest}" "${WEFT_TEST_HELPERS:?run through ctest}"
FLOOD="$WEFT_TEST_HELPERS/floodclient"
command -v curl > /dev/null || { echo "1..0 # SKIP curl not found"; exit 77; }
[ -r /proc/self/status ] || { echo "1..0 # SKIP no /proc"; exit 77; }
LIMIT_KIB=$((20 * 1024))
check_rss=1
if grep -qs '^WEFT_SANITIZE:BOOL=ON' "${WEFT_BUILD_DIR:-/nonexistent}/CMakeCache.txt"; then
    check_rss=0
fi

dir=$(mktemp -d)
srv_pid= flood_pid=
cleanup() {
    [ -n "$flood_pid" ] && kill "$flood_pid" 2> /dev/null
    [ -n "$srv_pid" ] && kill "$srv_pid" 2> /dev/null
    wait 2> /dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fails=0 n=0
ok() { # ok NAME CONDITION-STATUS
    n=$((n + 1))
    if [ "$2" = 0 ]; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
check() { # check NAME COMMAND...
    "${@:2}"
    ok "$1" $?
}

start_mock() {
    "$WEFT" mock --port 0 > "$dir/mock.out" 2>> "$dir/mock.err" &
    srv_pid=$!
    url=
    for _ in $(seq 100); do
        url=$(grep -o -m1 'http://[0-9.]*:[0-9]*' "$dir/mock.out")
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "Bail out! weft mock did not start"; cat "$dir/mock.err"; exit 1; }
    port=${url##*:}
    # warm up (JIT, first connection, Lua tables) before the baseline
    for _ in $(seq 20); do curl -fsS -o /dev/null "$url/_mock/stats"; done
    kill -0 "$srv_pid" 2> /dev/null || { echo "Bail out! weft mock exited"; cat "$dir/mock.err"; exit 1; }
    rss_before=$(rss)
    rss_max=$rss_before
}

stop_mock() { # SIGTERM, then SIGKILL after 30 s (a hang)
    kill "$srv_pid" 2> /dev/null
    for _ in $(seq 300); do kill -0 "$srv_pid" 2> /dev/null || break; sleep 0.1; done
    kill -KILL "$srv_pid" 2> /dev/null
    wait "$srv_pid" 2> /dev/null
    srv_pid=
}

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$srv_pid/status" 2> /dev/null || echo 0; }
sample_rss() {
    local r
    r=$(rss)
    [ "${r:-0}" -gt "$rss_max" ] && rss_max=$r
}

# A well-behaved client: one GET from SOURCE, answered 200 with the stats.
served() { # served SOURCE
    local body
    body=$(curl -fsS --max-time 30 --interface "$1" "$url/_mock/stats" 2> "$dir/curl.err") &&
        [[ "$body" == *'"requests":'* ]]
}

# Requests the mock has handled so far.
handled() {
    curl -fsS --max-time 30 "$url/_mock/stats" | grep -o '"requests":[0-9]*' | cut -d: -f2
}

stop_flood() {
    kill "$flood_pid" 2> /dev/null
    wait "$flood_pid" 2> /dev/null
    flood_pid=
}

rss_ok() { # rss_ok NAME
    local growth=$((rss_max - rss_before))
    echo "# $1: RSS before $rss_before KiB, peak $rss_max KiB, growth $growth KiB"
    if [ "$check_rss" = 1 ]; then
        [ "$growth" -lt "$LIMIT_KIB" ]
        ok "$1: RSS growth under 20 MB" $?
    else
        echo "# RSS not checked in a sanitized build"
    fi
}

wait_line() { # wait_line PATTERN FILE SECONDS
    local i
    for i in $(seq $(($3 * 10))); do
        grep -qs "$1" "$2" && return 0
        kill -0 "$flood_pid" 2> /dev/null || { grep -qs "$1" "$2"; return; }
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- 1. pipelining flood

start_mock
curl -s -o /dev/null --max-time 30 --interface 127.0.0.2 "$url/_mock/stats"
[ $? = 45 ] && { echo "1..0 # SKIP cannot bind 127.0.0.2 (loopback is not 127/8 here)"; exit 77; }
"$FLOOD" "$port" --conns 20 --requests 50000 --path /v1/models --rcvbuf 4096 \
    --duration 60 --hold 300 > "$dir/flood.out" &
flood_pid=$!
# Ask for answers all along the flood (one a second, six at least), until
# the server has stopped taking in requests (every flooding connection
# paused or done: the handled count stays put for two seconds) or 90 s pass.
good=0 bad=0 last=-1 same=0
for i in $(seq 90); do
    sample_rss
    if served "127.0.0.$((1 + i % 2))"; then good=$((good + 1)); else bad=$((bad + 1)); fi
    sample_rss
    now=$(handled)
    if [ -n "$now" ] && [ "$now" = "$last" ]; then
        same=$((same + 1))
        [ "$same" -ge 2 ] && [ "$i" -ge 6 ] && grep -q WRITTEN "$dir/flood.out" && break
    else
        same=0
    fi
    last=$now
    sleep 1
done
sample_rss
echo "# pipelining flood: $(head -1 "$dir/flood.out"), the server handled $last requests"
echo "# well-behaved requests during the flood: $good answered, $bad failed"
check "pipelining flood: flood client connected and wrote" grep -q '^WRITTEN requests=[1-9]' "$dir/flood.out"
ok "pipelining flood: every well-behaved request answered" $([ "$good" -ge 6 ] && [ "$bad" = 0 ]; echo $?)
check "pipelining flood: served while the flood is held open" kill -0 "$flood_pid"
rss_ok "pipelining flood"
stop_flood
check "pipelining flood: served after the flood" served 127.0.0.1

# A paused connection picks up where it stopped: 2 connections pipeline
# 20,000 requests each, reading only once everything is written, and get
# every answer.
"$FLOOD" "$port" --conns 2 --requests 20000 --path /v1/models --rcvbuf 4096 --read \
    --duration 120 --hold 0 > "$dir/read.out"
echo "# $(grep ANSWERED "$dir/read.out")"
check "pipelining: every pipelined request answered once the client reads" \
    grep -qx 'ANSWERED responses=40000' "$dir/read.out"
stop_mock

# -------------------------------------------------------------- 2. idle floods

# The flood client and the server each need 10,000 descriptors (both raise
# their soft limit to the hard one).
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 10240 ]; then
    n=$((n + 1))
    echo "ok $n - idle floods # SKIP the descriptor limit ($(ulimit -Hn)) is under 10240"
else
start_mock
"$FLOOD" "$port" --idle --conns 10000 --duration 60 --hold 300 > "$dir/idle.out" &
flood_pid=$!
wait_line '^READY' "$dir/idle.out" 90
echo "# idle flood from one address: $(grep READY "$dir/idle.out")"
sample_rss
check "idle flood (one address): served from 127.0.0.1 while the flood is open" served 127.0.0.1
check "idle flood (one address): served from 127.0.0.2 while the flood is open" served 127.0.0.2
sample_rss
check "idle flood (one address): the flood is still held open" kill -0 "$flood_pid"
stop_flood

# 1,250 connections from each of 8 addresses, each under its share: the
# server reaches its cap of 10,000, all waiting for a head.
"$FLOOD" "$port" --idle --partial --conns 10000 --duration 60 --hold 300 \
    --source 127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10 \
    > "$dir/idle8.out" &
flood_pid=$!
wait_line '^READY' "$dir/idle8.out" 90
echo "# idle flood from 8 addresses: $(grep READY "$dir/idle8.out")"
sample_rss
check "idle flood (server full): served from 127.0.0.1 while the flood is open" served 127.0.0.1
check "idle flood (server full): served from 127.0.0.2 while the flood is open" served 127.0.0.2
sample_rss
check "idle flood (server full): the flood is still held open" kill -0 "$flood_pid"
rss_ok "idle floods"
stop_flood
check "served after the idle floods" served 127.0.0.1
check "the server is still running" kill -0 "$srv_pid"
stop_mock
fi
if grep -q '"level":"error"' "$dir/mock.err"; then
    grep '"level":"error"' "$dir/mock.err" | head -5
    ok "no error logged by the server" 1
fi

# ------------------------------------- 3. small caps, srv:stats(), memcheck

for bad in 0 2.5 '"x"'; do
    "$WEFT" -e "weft.http.serve({ port = 0, handler = print, max_connections_per_address = $bad }):close()" \
        > /dev/null 2> "$dir/bad.err"
    check "max_connections_per_address = $bad is refused with a clear message" \
        grep -q 'max_connections_per_address must be an integer from 1 to' "$dir/bad.err"
done

# The same defences at a scale memcheck can run (plain builds run this part
# under it): weft.http.serve with max_connections = 40 and 10 per address.
cat > "$dir/capped.lua" <<'EOF'
local srv
srv = weft.http.serve {
    port = 0, max_connections = 40, max_connections_per_address = 10,
    handler = function(req)
        if req.path == "/stats" then return { status = 200, body = weft.json.encode(srv:stats()) } end
        return { status = 200, body = ("x"):rep(2000) }
    end,
}
print("PORT " .. srv.port)
io.stdout:flush()
EOF
memcheck=()
[ -n "${WEFT_MEMCHECK:-}" ] && memcheck=("$WEFT_MEMCHECK" -q --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite)
"${memcheck[@]}" "$WEFT" run "$dir/capped.lua" > "$dir/capped.out" 2> "$dir/capped.err" &
srv_pid=$!
port=
for _ in $(seq 300); do
    port=$(sed -n 's/^PORT //p' "$dir/capped.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "Bail out! the capped server did not start"; cat "$dir/capped.err"; exit 1; }
url="http://127.0.0.1:$port"
srv_stat() { # srv_stat NAME: a field of srv:stats() (-1 when missing)
    curl -fsS --max-time 30 "$url/stats" | grep -o "\"$1\":[0-9]*" | cut -d: -f2 | grep . || echo -1
}
served_any() { # served_any SOURCE: a 200 with the 2000-byte body
    [ "$(curl -fsS --max-time 30 --interface "$1" "$url/x" | wc -c)" = 2000 ]
}

"$FLOOD" "$port" --idle --conns 30 --duration 60 --hold 300 > "$dir/c1.out" &
flood_pid=$!
wait_line '^READY' "$dir/c1.out" 90
echo "# 30 idle connections from one address (share 10): $(grep READY "$dir/c1.out")"
check "caps: served from the flooding address while its share is full" served_any 127.0.0.1
ok "caps: the address's longest idle connections were evicted, none refused" \
    $([ "$(srv_stat evicted)" -ge 20 ] && [ "$(srv_stat rejected)" = 0 ]; echo $?)
stop_flood
before=$(srv_stat evicted)
"$FLOOD" "$port" --idle --partial --conns 40 --duration 60 --hold 300 \
    --source 127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6 > "$dir/c2.out" &
flood_pid=$!
wait_line '^READY' "$dir/c2.out" 90
echo "# 40 half heads from 4 addresses (server full): $(grep READY "$dir/c2.out")"
check "caps: served while the server is full of half heads" served_any 127.0.0.2
ok "caps: idle connections were evicted for it" $([ "$(srv_stat evicted)" -gt "$before" ]; echo $?)
ok "caps: never more than max_connections" $([ "$(srv_stat connections)" -le 40 ]; echo $?)
stop_flood

"$FLOOD" "$port" --conns 2 --requests 5000 --path /x --rcvbuf 4096 --duration 120 --hold 300 \
    > "$dir/c3.out" &
flood_pid=$!
paused=0
for _ in $(seq 120); do
    paused=$(srv_stat paused)
    [ "$paused" = 2 ] && break
    sleep 0.5
done
ok "caps: both connections that pipeline without reading are paused" $([ "$paused" = 2 ]; echo $?)
check "caps: served while they are paused" served_any 127.0.0.1
stop_flood
"$FLOOD" "$port" --conns 1 --requests 3000 --path /x --rcvbuf 4096 --read --duration 120 \
    --hold 0 > "$dir/c4.out"
check "caps: a paused connection answers all 3000 once read" grep -qx 'ANSWERED responses=3000' "$dir/c4.out"
kill -INT "$srv_pid"
rc=hung
for _ in $(seq 300); do kill -0 "$srv_pid" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$srv_pid" 2> /dev/null; then kill -KILL "$srv_pid"; else wait "$srv_pid"; rc=$?; fi
srv_pid=
[ "$rc" = 130 ] || sed -n 1,40p "$dir/capped.err"
ok "caps: the server stops on SIGINT (exit 130${WEFT_MEMCHECK:+, memcheck clean})" \
    $([ "$rc" = 130 ]; echo $?)
echo "1..$n"
[ "$fails" = 0 ]
