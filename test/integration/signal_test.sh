#!/bin/bash
# signal_test.sh: SIGINT/SIGTERM are honoured whatever Lua does (issue 14).
#  - an endless loop in a --config file (before the event loop runs) and in
#    a script (a JIT-compiled loop: no hook ever fires there): one SIGTERM
#    or SIGINT ends the process with 143 or 130 after the grace period;
#  - interpreted code (jit.off) is stopped by the stall hook instead, before
#    the grace period is over;
#  - a second signal ends the process at once, also while the clean
#    shutdown runs; cleanup code that never yields is on the same leash;
#  - the clean path: tasks and a server cancelled, 143 for SIGTERM, and the
#    grace exit did not happen (also not for cleanup that waits longer than
#    the grace period).
# Every wait is a hang detector with a generous bound (30 s), not a timing
# assertion; the measured times are printed.
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
GRACE_MSG='did not give control back within the grace period'

# start NAME CMD...: run CMD in the background (stdout/stderr to $dir/NAME.out/.err)
start() {
    name=$1
    shift
    "$@" > "$dir/$name.out" 2> "$dir/$name.err" &
    pid=$!
}
# wait_for FILE PATTERN: until FILE has a line matching PATTERN (10 s at most)
wait_for() {
    for _ in $(seq 200); do grep -q -- "$2" "$1" 2> /dev/null && return 0; sleep 0.05; done
    echo "# timed out waiting for '$2' in $1"
    return 1
}
# stop SIGNAL: send SIGNAL to $pid, wait for it to exit (30 s at most, then
# SIGKILL: a hang); sets rc and secs (time from the signal to the exit)
stop() {
    local t0
    t0=$(date +%s.%N)
    kill -s "$1" "$pid"
    waited "$t0"
}
waited() {
    local t1
    for _ in $(seq 300); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2> /dev/null; then
        kill -KILL "$pid"
        wait "$pid" 2> /dev/null
        rc=hung
    else
        wait "$pid"
        rc=$?
    fi
    pid=
    t1=$(date +%s.%N)
    secs=$(awk -v a="$1" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

echo 'print("the script ran")' > "$dir/script.lua"

# ---- 1. an endless loop in the configuration file (JIT-compiled)
cat > "$dir/cfg.lua" << 'LUA'
io.stderr:write("config started\n")
while true do end
LUA
for sig in TERM INT; do
    want=$([ $sig = TERM ] && echo 143 || echo 130)
    start cfg "$WEFT" run --config "$dir/cfg.lua" "$dir/script.lua"
    wait_for "$dir/cfg.err" 'config started'
    sleep 0.2 # well inside the loop
    stop $sig
    echo "# SIG$sig to an endless configuration loop: exit $rc after $secs s"
    check "SIG$sig ends an endless loop in --config with $want" [ "$rc" = "$want" ]
    check "... through the grace exit, which says so" grep -q "SIG$sig: Lua code $GRACE_MSG" "$dir/cfg.err"
    check "... and the script never ran" bash -c "! grep -q 'the script ran' '$dir/cfg.out'"
done

# ---- 2. an endless loop in a script (JIT-compiled)
cat > "$dir/spin.lua" << 'LUA'
io.stderr:write("spinning\n")
while true do end
LUA
start spin "$WEFT" run "$dir/spin.lua"
wait_for "$dir/spin.err" spinning
sleep 0.2
stop TERM
echo "# SIGTERM to an endless script loop: exit $rc after $secs s"
check "SIGTERM ends an endless JIT-compiled loop in a script with 143" [ "$rc" = 143 ]
check "... through the grace exit" grep -q "SIGTERM: Lua code $GRACE_MSG" "$dir/spin.err"

# ---- 2b. interpreted code: the stall hook stops it, then the clean path
cat > "$dir/interp.lua" << 'LUA'
jit.off()
io.stderr:write("spinning\n")
local ok, err = pcall(function() local i = 0 while true do i = i + 1 end end)
io.stderr:write("the loop raised ", tostring(err and err.kind), "\n")
weft.sleep(60) -- cancelled at once: the task is cancelled
LUA
start interp "$WEFT" run "$dir/interp.lua"
wait_for "$dir/interp.err" spinning
sleep 0.2
stop TERM
echo "# SIGTERM to an interpreted endless loop: exit $rc after $secs s"
check "an interpreted loop is interrupted with kind cancelled (half the grace)" \
    grep -q 'the loop raised cancelled' "$dir/interp.err"
check "... then the clean path: exit 143, no grace exit" \
    bash -c "[ '$rc' = 143 ] && ! grep -q '$GRACE_MSG' '$dir/interp.err'"

cat > "$dir/icfg.lua" << 'LUA'
jit.off()
io.stderr:write("config started\n")
local i = 0 while true do i = i + 1 end
LUA
start icfg "$WEFT" run --config "$dir/icfg.lua" "$dir/script.lua"
wait_for "$dir/icfg.err" 'config started'
stop INT
echo "# SIGINT to an interpreted endless configuration loop: exit $rc after $secs s"
check "an interpreted --config loop is interrupted: exit 130, no grace exit" \
    bash -c "[ '$rc' = 130 ] && ! grep -q '$GRACE_MSG' '$dir/icfg.err'"
check "... and the script never ran" bash -c "! grep -q 'the script ran' '$dir/icfg.out'"

# ---- 3. a second signal while the clean shutdown runs
cat > "$dir/stuck_cleanup.lua" << 'LUA'
print("ready") io.stdout:flush()
pcall(weft.sleep, 60)
io.stderr:write("cleanup started\n")
while true do end -- cleanup that never gives control back
LUA
# a grace period longer than the hang detector: only the second signal can end it
start second env WEFT_SIGNAL_GRACE=120 "$WEFT" run "$dir/stuck_cleanup.lua"
wait_for "$dir/second.out" ready
kill -TERM "$pid"
wait_for "$dir/second.err" 'cleanup started'
sleep 0.2
stop INT
echo "# a second signal (SIGINT) during a stuck shutdown: exit $rc after $secs s"
check "a second signal during the clean shutdown exits at once (130 for SIGINT)" [ "$rc" = 130 ]
check "... saying so" grep -q 'SIGINT again: exiting at once' "$dir/second.err"

# ... and without a second signal, the stuck cleanup is on the grace leash
start leash "$WEFT" run "$dir/stuck_cleanup.lua"
wait_for "$dir/leash.out" ready
stop TERM
echo "# one SIGTERM, cleanup that never yields: exit $rc after $secs s"
check "cleanup that never yields ends with the grace exit: 143" [ "$rc" = 143 ]
check "... which says so" grep -q "SIGTERM: Lua code $GRACE_MSG" "$dir/leash.err"

# ---- 4. the clean path
cat > "$dir/clean.lua" << 'LUA'
local srv = weft.http.serve { port = 0, handler = function(req, res)
    res:start(200, {})
    res:finish("hi")
end }
weft.spawn(function()
    local ok, err = pcall(weft.sleep, 60)
    io.stderr:write("sleeper saw ", tostring(err and err.kind), "\n")
end)
print("ready " .. srv.port) io.stdout:flush()
local ok, err = pcall(weft.sleep, 60)
io.stderr:write("main saw ", tostring(err and err.kind), "\n")
-- cleanup that waits longer than the grace period, in a new task: waiting is
-- not stalling
weft.spawn(function()
    weft.sleep(1.5)
    io.stderr:write("late cleanup done\n")
end)
LUA
start clean env WEFT_SIGNAL_GRACE=0.5 WEFT_CHECK_REFS=1 "$WEFT" run "$dir/clean.lua"
wait_for "$dir/clean.out" ready
stop TERM
echo "# SIGTERM, clean path with 1.5 s of cleanup (grace 0.5 s): exit $rc after $secs s"
check "the clean path: SIGTERM exits 143" [ "$rc" = 143 ]
check "... the sleeping task and the main task were cancelled" \
    bash -c "grep -q 'sleeper saw cancelled' '$dir/clean.err' && grep -q 'main saw cancelled' '$dir/clean.err'"
check "... cleanup that waits longer than the grace period finished" grep -q 'late cleanup done' "$dir/clean.err"
check "... the grace exit did not happen, nothing leaked" \
    bash -c "! grep -qE '$GRACE_MSG|again: exiting|leaked|ERROR: (Address|Leak)Sanitizer|runtime error' '$dir/clean.err'"

# the same clean path under memcheck (plain builds): the signal path leaks nothing
if [ -n "${WEFT_MEMCHECK:-}" ]; then
    start vg env WEFT_SIGNAL_GRACE=20 "$WEFT_MEMCHECK" -q --error-exitcode=99 --leak-check=full \
        --errors-for-leak-kinds=definite "$WEFT" run "$dir/clean.lua"
    for _ in $(seq 300); do grep -q ready "$dir/vg.out" && break; sleep 0.1; done
    stop TERM
    check "the clean path under memcheck: exit 143, no errors" [ "$rc" = 143 ]
    [ "$rc" = 143 ] || cat "$dir/vg.err"
fi

[ "$fails" = 0 ] || for f in "$dir"/*.err; do echo "== $f"; cat "$f"; done
echo "1..$n"
[ "$fails" = 0 ]
