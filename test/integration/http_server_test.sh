#!/bin/bash
# http_server_test.sh: weft.http.serve in its own process, hit from outside
# with curl and raw bytes: garbage, a 10 MB header, a half-closed
# connection, pipelining; the server must keep serving throughout, and
# SIGINT must stop it with exit 130.
set -u
: "${WEFT:?run through ctest}" "${WEFT_TEST_HELPERS:?run through ctest}"
RAW="$WEFT_TEST_HELPERS/rawclient"
dir=$(mktemp -d)
trap 'kill $srv_pid 2>/dev/null; rm -rf "$dir"' EXIT
fails=0 n=0
check() { # check NAME COMMAND...
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}

"$WEFT" run server_fixture.lua > "$dir/out" 2> "$dir/err" &
srv_pid=$!
for _ in $(seq 100); do
    port=$(sed -n 's/^PORT //p' "$dir/out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "server did not start"; cat "$dir/err"; exit 1; }
url="http://127.0.0.1:$port"

alive() { curl -fsS "$url/hello" | grep -qx hello; }

check "GET /hello" alive
check "keep-alive: two requests on one connection" \
    bash -c "curl -sv '$url/hello' '$url/hello' 2>&1 | grep -q 'Re-using existing connection'"
check "POST body reaches the handler" \
    bash -c "curl -fsS -d '{\"a\":1}' -H 'content-type: application/json' '$url/echo' | grep -q '\"body\":\"{\\\\\"a\\\\\":1}\"'"
check "streaming response arrives whole" \
    bash -c "[ \"\$(curl -fsSN '$url/stream')\" = \"\$(printf 'data: 1\n\ndata: 2\n\ndata: 3')\" ]"
check "handler error is a 500" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/fail') = 500 ]"
check "unknown path is the handler's 404" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/nope') = 404 ]"

printf 'GARBAGE \x01\x02\x03 NOT HTTP\r\n\r\n' | "$RAW" "$port" > "$dir/garbage"
check "garbage bytes get 400" grep -q '^HTTP/1.1 400' "$dir/garbage"
check "still serving after garbage" alive

printf 'GET /hello HTTP/1.1\r\nHost: x\r\n' | "$RAW" "$port" --repeat-header 10000000 > "$dir/big"
check "a 10 MB header gets 431" grep -q '^HTTP/1.1 431' "$dir/big"
check "still serving after a 10 MB header" alive

printf 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n' | "$RAW" "$port" > "$dir/body"
check "a body over the limit gets 413" grep -q '^HTTP/1.1 413' "$dir/body"

printf 'GET /hello HTTP/1.1\r\nHost: x\r\n\r\n' | "$RAW" "$port" --shut-wr > "$dir/half"
check "half-closed connection still gets its answer" grep -q '^hello' "$dir/half"
check "still serving after a half-close" alive

printf 'GET /slow?ms=100 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' \
    | "$RAW" "$port" > "$dir/pipe"
check "pipelined requests are answered in order" \
    bash -c "tr -d '\r' < '$dir/pipe' | grep -E '^(slow|hello)$' | tr '\n' ' ' | grep -qx 'slow hello '"

# Many slow requests at once all complete (each handler is its own task).
for i in $(seq 50); do curl -fsS "$url/slow?ms=200" > "$dir/slow.$i" & done
wait $(jobs -p | grep -v "^$srv_pid\$") 2>/dev/null
check "50 concurrent slow handlers all answered" \
    bash -c "[ \$(cat '$dir'/slow.* | grep -c '^slow') = 50 ]"

# A client that disappears mid-request does not hurt the others.
"$RAW" "$port" --timeout 0.2 < <(printf 'GET /slow?ms=500 HTTP/1.1\r\nHost: x\r\n\r\n') > /dev/null
check "still serving after a client left early" alive

# A script whose first JSON is a json = true answer (weft.json not loaded
# by the script): decoded all the same.
printf 'local r = weft.http.request { url = arg[1] .. "/echo?x=1", json = true }\nprint(r.status, r.json.path, r.json.query)\n' > "$dir/json_first.lua"
check "json = true in a script that loaded no weft.json" \
    bash -c "timeout 20 '$WEFT' run '$dir/json_first.lua' '$url' 2>&1 | grep -qx \$'200\t/echo\tx=1'"

check "server process still alive" kill -0 "$srv_pid"
kill -INT "$srv_pid"
wait "$srv_pid"; rc=$?
check "SIGINT stops the server with exit 130" [ "$rc" = 130 ]
srv_pid=
if grep -q '"level":"error"' "$dir/err"; then
    grep -v 'handler exploded' "$dir/err" | grep '"level":"error"' && fails=$((fails + 1))
fi
echo "1..$n"
[ "$fails" = 0 ]
