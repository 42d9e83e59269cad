#!/bin/bash
# exit_test.sh: how a script ends.
#  - a script whose server and tasks outlive it keeps running, and weft
#    says so once on stderr (what, and where the script made it); a
#    request that calls weft.exit(7) then ends it with status 7, every
#    task cancelled;
#  - no hint when what is left ends by itself, for background servers,
#    for `weft mock` (its server is the point), after weft.exit;
#  - weft.exit / os.exit: the clean shutdown (tasks see `cancelled`,
#    buffered output flushed, the --summary printed, no registry ref
#    leaked), the code after it never runs, the status is the code given;
#    in a request handler, that request's connection is dropped;
#    also from a task while the main one waits, and in a --config file;
#    a bad code is an error;
#  - the os.exit path under memcheck (plain builds).
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2> /dev/null
    wait 2> /dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
wait_for() { # file, pattern, tenths of a second (a hang guard)
    for _ in $(seq "$3"); do grep -q "$2" "$1" 2> /dev/null && return 0; sleep 0.1; done
    return 1
}
export WEFT_CHECK_REFS=1
cd "$dir" || exit 1
HINT='the script has ended but'

# --- the hint, then weft.exit from a request
cat > lingers.lua <<'LUA'
-- a server and two tasks outlive the script; GET /exit ends it with weft.exit(7)
local srv = weft.http.serve { port = 0, handler = function(req)
    if req.path == "/exit" then weft.spawn(function() weft.exit(7) end) end
    return { status = 200, body = "bye\n" }
end }
local f = assert(io.open("port", "w"))
f:write(srv.port) f:close()
weft.spawn(function()
    local _, err = pcall(weft.sleep, 3600)
    io.stderr:write("sleeper: ", tostring(err), "\n")
end)
weft.spawn(function()
    while true do weft.sleep(0.05) end
end)
LUA
timeout 120 "$WEFT" run lingers.lua > lingers.out 2> lingers.err &
pid=$!
wait_for lingers.err "$HINT" 600
check "a script that leaves a server and tasks open is told so on stderr" grep -q "$HINT" lingers.err
want="weft: the script has ended but 1 server (weft.http.serve at lingers.lua:2) and 2 tasks"
want="$want (weft.spawn at lingers.lua:8, lingers.lua:12) keep it running; close them"
want="$want (srv:close(), task:cancel()) or call weft.exit()"
check "... naming what, and the lines that made them" grep -qxF "$want" lingers.err
check "... and keeps running (a hint, not an exit)" kill -0 $pid
sleep 2.5 # twice the hint's delay: a second hint would have come by now
curl -s -o /dev/null "http://127.0.0.1:$(cat port)/exit"
wait $pid
rc=$?
pid=
check "weft.exit(7) from a request ends it with status 7" [ "$rc" = 7 ]
check "the hint came once" [ "$(grep -c "$HINT" lingers.err)" = 1 ]
check "weft.exit cancelled the sleeping task" \
    grep -qxF 'sleeper: cancelled: the script called weft.exit' lingers.err
check "no registry reference leaked" bash -c "! grep -q 'leaked' lingers.err"

# weft.exit inside a handler: its request is dropped with the task, so
# the client's open connection does not keep the process running
cat > handler.lua <<'LUA'
local srv = weft.http.serve { port = 0, handler = function() weft.exit(4) end }
local f = assert(io.open("hport", "w"))
f:write(srv.port) f:close()
LUA
timeout 120 "$WEFT" run handler.lua > /dev/null 2> handler.err &
pid=$!
wait_for hport . 600
# (timeout: a hang guard only) the connection is dropped: curl's "empty reply" (52) or a reset (56)
timeout 600 curl -s -o /dev/null "http://127.0.0.1:$(cat hport)/"
crc=$?
wait $pid
rc=$?
pid=
check "weft.exit(4) in a request handler exits 4, dropping that request's connection" \
    bash -c "[ $rc = 4 ] && { [ $crc = 52 ] || [ $crc = 56 ]; }"

cat > one.lua <<'LUA'
local function worker() weft.sleep(3600) end
weft.spawn(worker)
LUA
timeout 120 "$WEFT" run one.lua > /dev/null 2> one.err &
pid=$!
wait_for one.err "$HINT" 600
kill -INT $pid
wait $pid
pid=
check "one task: said in the singular" grep -qxF "weft: the script has ended but 1 task (weft.spawn at one.lua:1) keeps it running; cancel it (task:cancel()) or call weft.exit()" one.err

# --- no hint
"$WEFT" -e 'weft.spawn(function() for _ = 1, 3 do weft.sleep(0) end end)' > /dev/null 2> short.err
rc=$?
check "tasks that end by themselves: exit 0, nothing said" bash -c "[ $rc = 0 ] && [ ! -s short.err ]"
"$WEFT" -e 'weft.http.serve { background = true, handler = function() return {} end }' 2> bg.err
rc=$?
check "a background server keeps nothing running: exit 0, nothing said" bash -c "[ $rc = 0 ] && [ ! -s bg.err ]"
"$WEFT" -e 'weft.http.serve { handler = function() return {} end } weft.spawn(weft.sleep, 60) weft.exit()' 2> ex0.err
rc=$?
check "weft.exit() with a server open: exit 0, nothing said" bash -c "[ $rc = 0 ] && [ ! -s ex0.err ]"
WEFT_LOG=warn "$WEFT" mock --port 0 > mock.out 2> mock.err &
pid=$!
wait_for mock.out '^http://' 600
sleep 2 # past the hint's delay
kill -INT $pid
wait $pid
pid=
check "weft mock serves without the hint (its server is the point)" bash -c "! grep -q '$HINT' mock.err"

# --- os.exit and weft.exit: the clean shutdown
cat > osexit.lua <<'LUA'
weft.retry.run(weft.retry.policy {}, function() return 1 end, { provider = "p", model = "m", operation = "chat" })
io.stdout:write("buffered, no newline")
local srv = weft.http.serve { port = 0, handler = function() return { status = 200 } end }
weft.spawn(function()
    local _, err = pcall(weft.sleep, 3600)
    io.stderr:write("cleanup: ", tostring(err), "\n")
end)
weft.sleep(0) -- the task starts
local ok = pcall(os.exit, 3)
print("not reached", ok, srv)
LUA
timeout 60 "$WEFT" -l error run --summary osexit.lua > osexit.out 2> osexit.err
rc=$?
check "os.exit(3) exits 3" [ "$rc" = 3 ]
check "... flushing buffered output, running nothing after it (not even under pcall)" \
    bash -c "[ \"\$(cat osexit.out)\" = 'buffered, no newline' ]"
check "... cancelling every task (its cleanup runs)" \
    grep -qxF 'cleanup: cancelled: the script called weft.exit' osexit.err
check "... printing the --summary as at the end of any script" grep -q '^  p/m  *1  *0 ' osexit.err
check "... with no registry reference leaked" bash -c "! grep -q 'leaked' osexit.err"

cat > waits.lua <<'LUA'
weft.spawn(function() weft.sleep(0.01) weft.exit(5) end)
weft.sleep(3600) -- cancelled by weft.exit: not an error of the script
LUA
timeout 60 "$WEFT" run waits.lua > /dev/null 2> waits.err
rc=$?
check "weft.exit(5) from a task while the script waits: exit 5, no error reported" \
    bash -c "[ $rc = 5 ] && [ ! -s waits.err ]"
for c in "false 1" "true 0"; do
    set -- $c
    "$WEFT" -e "os.exit($1)" 2> /dev/null
    check "os.exit($1) exits $2" [ $? = "$2" ]
done
echo 'os.exit(6)' > cfg.lua
echo 'print("not reached")' > ran.lua
"$WEFT" run --config cfg.lua ran.lua > cfg.out 2> cfg.err
rc=$?
check "os.exit(6) in a --config file exits 6, quietly" \
    bash -c "[ $rc = 6 ] && [ ! -s cfg.out ] && [ ! -s cfg.err ]"
echo 'pcall(os.exit, 7) return {}' > cfg_pcall.lua
"$WEFT" run --config cfg_pcall.lua ran.lua > cfg_pcall.out 2> cfg_pcall.err
rc=$?
check "os.exit(7) under pcall in a --config file still exits 7, the script not run" \
    bash -c "[ $rc = 7 ] && [ ! -s cfg_pcall.out ]"

# a task that catches its cancellation and loops without waiting: the grace ends it
cat > spin.lua <<'LUA'
weft.spawn(function() while true do pcall(weft.sleep, 1) end end)
weft.sleep(0.01)
weft.exit(5)
LUA
timeout 120 "$WEFT" run spin.lua > /dev/null 2> spin.err
rc=$?
check "weft.exit(5) with a task that swallows its cancellation and spins: still exits 5" [ $rc = 5 ]

# weft's own tasks (plugin file watchers) are not the script's
cat > watched.lua <<'LUA'
weft.model("openai/gpt-4o-mini") -- loads and watches a plugin file
local t = weft.spawn(function() weft.sleep(3600) end)
LUA
timeout 120 "$WEFT" run watched.lua > /dev/null 2> watched.err &
pid=$!
wait_for watched.err "$HINT" 600
kill -INT $pid
wait $pid
pid=
check "the hint names the script's task only, not weft's own" grep -q "1 task (weft.spawn at watched.lua:2) keeps it running" watched.err

"$WEFT" -l warn -e 'print("ok")' > lopt.out 2> lopt.err
check "-l LEVEL before -e parses (no read past '-l')" grep -qx ok lopt.out

"$WEFT" -e 'weft.exit(256)' 2> bad.err
rc=$?
check "weft.exit(256) is an error (exit 1)" \
    bash -c "[ $rc = 1 ] && grep -q 'weft.exit: code must be an integer from 0 to 255' bad.err"

# the same clean path under memcheck (plain builds)
if [ -n "${WEFT_MEMCHECK:-}" ]; then
    timeout 300 "$WEFT_MEMCHECK" -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
        "$WEFT" -l error run osexit.lua > vg.out 2> vg.err
    rc=$?
    check "os.exit under memcheck: exit 3, no errors" [ "$rc" = 3 ]
    [ "$rc" = 3 ] || cat vg.err
fi

[ "$fails" = 0 ] || for f in *.err; do echo "== $f"; cat "$f"; done
echo "1..$n"
[ "$fails" = 0 ]
