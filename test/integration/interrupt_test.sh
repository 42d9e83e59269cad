#!/bin/bash
# interrupt_test.sh: SIGINT while 200 HTTP requests are in flight and a
# server is streaming to a client: every task is cancelled, every transfer
# and connection freed, and weft exits 130 (under ASan in the sanitized
# build, so a use-after-free on this path fails the test).
set -u
: "${WEFT:?run through ctest}" "${WEFT_TEST_HELPERS:?run through ctest}"
dir=$(mktemp -d)
fs_pid= weft_pid=
trap 'kill $fs_pid $weft_pid 2>/dev/null; rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}

# The server's stdin is a fifo held open by this shell: it exits when we do.
mkfifo "$dir/fs_in"
"$WEFT_TEST_HELPERS/faultserver" < "$dir/fs_in" > "$dir/fs" &
fs_pid=$!
exec 3> "$dir/fs_in"
for _ in $(seq 100); do port=$(sed -n 's/^PORT //p' "$dir/fs"); [ -n "$port" ] && break; sleep 0.05; done
[ -n "$port" ] || { echo "faultserver did not start"; exit 1; }

cat > "$dir/script.lua" <<LUA
local http = weft.http
for i = 1, 200 do
    weft.spawn(function()
        local ok, err = pcall(http.request, { url = "http://127.0.0.1:$port/hang" })
        if not ok and err.kind == "cancelled" then io.stderr:write("request cancelled\n") end
    end)
end
local srv = http.serve { port = 0, handler = function(req, res)
    res:start(200, { ["content-type"] = "text/event-stream" })
    while true do
        if not res:write("data: tick\n\n") then return end
        weft.sleep(0.01)
    end
end }
-- a client of our own streaming server, also in flight
weft.spawn(function()
    pcall(http.request, { url = "http://127.0.0.1:" .. srv.port .. "/", on_data = function() end })
end)
weft.sleep(0.3)
io.stdout:write("ready\n"); io.stdout:flush()
local ok, err = pcall(weft.sleep, 60)
io.stderr:write("main saw ", tostring(err and err.kind), "\n")
error(err, 0)
LUA
WEFT_CHECK_REFS=1 "$WEFT" run "$dir/script.lua" > "$dir/out" 2> "$dir/err" &
weft_pid=$!
for _ in $(seq 200); do grep -q ready "$dir/out" && break; sleep 0.05; done
check "the script got its 200 requests in flight" grep -q ready "$dir/out"
kill -INT "$weft_pid"
wait "$weft_pid"; rc=$?
weft_pid=
check "SIGINT exits 130" [ "$rc" = 130 ]
check "the main task saw kind cancelled" grep -q "main saw cancelled" "$dir/err"
check "every in-flight request was cancelled" bash -c "[ \$(grep -c '^request cancelled' '$dir/err') = 200 ]"
check "no sanitizer report, no leaked registry refs" \
    bash -c "! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error|leaked' '$dir/err'"
[ "$fails" = 0 ] || cat "$dir/err"
echo "1..$n"
[ "$fails" = 0 ]
