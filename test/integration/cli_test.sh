#!/bin/bash
# cli_test.sh: the weft command line: version, help (each command's
# --help), usage errors (unknown options and log levels, a missing plugin
# directory: exit 2), run/-e with arg, uncaught errors (exit 1, message +
# traceback), SIGINT (exit 130, tasks cancelled cleanly), deadlock
# detection, no leaked registry refs.
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
export WEFT_CHECK_REFS=1

"$WEFT" version > "$dir/v"
check "version names weft, LuaJIT, libcurl, libev" \
    bash -c "grep -q '^weft ' '$dir/v' && grep -q '^LuaJIT 2.1' '$dir/v' && grep -q '^libcurl ' '$dir/v' && grep -q '^libev 4' '$dir/v'"
check "--help prints usage" bash -c "'$WEFT' --help | grep -q 'run \[RUN OPTIONS\] SCRIPT'"
check "unknown command exits 2" bash -c "'$WEFT' frobnicate 2>/dev/null; [ \$? = 2 ]"

# COMMAND --help: that command's usage on stdout, exit 0, nothing run
help_ok() { # name of the usage's command line, then the weft arguments
    local want=$1
    shift
    "$WEFT" "$@" > "$dir/help.out" 2> "$dir/help.err" && [ ! -s "$dir/help.err" ] &&
        head -1 "$dir/help.out" | grep -q "^usage: weft .*$want"
}
check "run --help prints run's usage" help_ok 'run \[RUN OPTIONS\] SCRIPT' run --help
check "... with its options" grep -q -- '--metrics HOST:PORT' "$dir/help.out"
check "run -h, also after other run options" help_ok 'run \[RUN OPTIONS\]' run --quiet -h
check "-e --help prints -e's usage" help_ok '-e CHUNK' -e --help
check "check --help prints check's usage" help_ok 'check PLUGIN.lua' check --help
check "mock --help prints mock's usage" help_ok 'mock \[--host HOST\]' mock --help
check "repl --help prints repl's usage" help_ok 'repl \[--config FILE\]' repl --help
check "version --help prints version's usage" help_ok 'version' version --help
check "help run is run --help" help_ok 'run \[RUN OPTIONS\]' help run
check "help mock is mock --help" help_ok 'mock \[--host HOST\]' help mock
check "a script's own --help is its argument, not weft's" \
    bash -c "[ \"\$('$WEFT' -e 'print(...)' --help)\" = --help ]"

# usage errors: exit 2, the message, and for an unknown option the usage
"$WEFT" --frobnicate run x.lua > "$dir/opt.out" 2> "$dir/opt.err"; rc=$?
check "an unknown option exits 2" [ "$rc" = 2 ]
check "... saying which" bash -c "[ \"\$(head -1 '$dir/opt.err')\" = \"weft: unknown option '--frobnicate'\" ]"
check "... followed by the usage" grep -q '^usage: weft \[options\] <command>' "$dir/opt.err"
for form in "-l verbose" "--log-level verbose" "--log-level=verbose"; do
    # shellcheck disable=SC2086 # split on purpose
    "$WEFT" $form -e 'print("ran")' > "$dir/lvl.out" 2> "$dir/lvl.err"; rc=$?
    check "$form exits 2, naming the levels" bash -c "[ $rc = 2 ] && [ ! -s '$dir/lvl.out' ] &&
        [ \"\$(cat '$dir/lvl.err')\" = \"weft: unknown log level 'verbose' (error, warn, info, debug, off)\" ]"
done
"$WEFT" -l > /dev/null 2> "$dir/lvl.err"; rc=$?
check "-l without a level exits 2" bash -c "[ $rc = 2 ] && grep -q '^weft: -l needs a level' '$dir/lvl.err'"
echo 'print("ran")' > "$dir/ran.lua"
"$WEFT" run --plugins "$dir/nonexistent" "$dir/ran.lua" > "$dir/plug.out" 2> "$dir/plug.err"; rc=$?
check "--plugins with a missing directory exits 2 before running anything" \
    bash -c "[ $rc = 2 ] && [ ! -s '$dir/plug.out' ] &&
        [ \"\$(cat '$dir/plug.err')\" = \"weft: --plugins $dir/nonexistent: no such directory\" ]"
"$WEFT" run --plugins "$dir/ran.lua" "$dir/ran.lua" > /dev/null 2> "$dir/plug.err"; rc=$?
check "--plugins with a file exits 2" \
    bash -c "[ $rc = 2 ] && grep -q ': not a directory\$' '$dir/plug.err'"

cat > "$dir/args.lua" <<'LUA'
print(arg[0]:match("[^/]+$"), arg[1], arg[2], select("#", ...), ...)
LUA
check "run passes arg and ... like luajit" \
    bash -c "[ \"\$('$WEFT' run '$dir/args.lua' a 'b c')\" = \"\$(printf 'args.lua\ta\tb c\t2\ta\tb c')\" ]"
check "-e runs a chunk with the weft global" \
    bash -c "[ \"\$('$WEFT' -e 'weft.sleep(0.01) print(type(weft.spawn))')\" = function ]"

cat > "$dir/fail.lua" <<'LUA'
local function inner() error("something broke") end
local function outer() inner() end
outer()
LUA
"$WEFT" run "$dir/fail.lua" > "$dir/fail.out" 2> "$dir/fail.err"; rc=$?
check "uncaught error exits 1" [ "$rc" = 1 ]
check "the message is printed" grep -q 'fail.lua:1: something broke' "$dir/fail.err"
check "with a traceback through the callers" \
    bash -c "grep -q 'stack traceback' '$dir/fail.err' && grep -q \"in function 'outer'\" '$dir/fail.err' || grep -q 'fail.lua:2' '$dir/fail.err'"

"$WEFT" -e 'error(weft.error.new("timeout", "took too long"))' 2> "$dir/kind.err"; rc=$?
check "an error value prints kind and message" \
    bash -c "[ $rc = 1 ] && grep -q 'timeout: took too long' '$dir/kind.err'"

cat > "$dir/sig.lua" <<'LUA'
local cleaned = 0
for i = 1, 3 do
    weft.spawn(function()
        local ok, err = pcall(weft.sleep, 60)
        if not ok and err.kind == "cancelled" then
            cleaned = cleaned + 1
            io.stderr:write("cancelled ", i, "\n")
        end
    end)
end
io.stdout:write("ready\n"); io.stdout:flush()
weft.sleep(60)
LUA
"$WEFT" run "$dir/sig.lua" > "$dir/sig.out" 2> "$dir/sig.err" &
pid=$!
for _ in $(seq 100); do grep -q ready "$dir/sig.out" && break; sleep 0.05; done
kill -INT $pid; wait $pid; rc=$?
check "SIGINT exits 130" [ "$rc" = 130 ]
check "SIGINT cancels every task (each sees kind cancelled)" \
    bash -c "[ \$(grep -c '^cancelled ' '$dir/sig.err') = 3 ]"

"$WEFT" -e 'weft._task=nil; local T = require "weft._task"; T.suspend()' 2> "$dir/dead.err"; rc=$?
check "a main task waiting on nothing is reported, not hung" \
    bash -c "[ $rc = 1 ] && grep -qi 'deadlock\|nothing' '$dir/dead.err'"

cat > "$dir/many.lua" <<'LUA'
local ts = {}
for i = 1, 2000 do ts[i] = weft.spawn(function(x) weft.sleep(0.001) return x * 2 end, i) end
local sum = 0
for i = 1, #ts do sum = sum + ts[i]:wait() end
assert(sum == 2000 * 2001, sum)
local ok, err = pcall(weft.timeout, 0.01, function() weft.sleep(10) end)
assert(not ok and err.kind == "timeout")
print("ok")
LUA
check "2,000 tasks, then exit with no leaked registry refs" \
    bash -c "[ \"\$('$WEFT' run '$dir/many.lua')\" = ok ]"
WEFT_LOG=info "$WEFT" -e 'weft.log.info("hello", {a = 1, path = "/x", q = "say \"hi\"\n"}); weft.log.debug("hidden")' 2> "$dir/log.err"
log_line_ok() {
    [ "$(wc -l < "$dir/log.err")" = 1 ] &&
    grep -qE '^\{"ts":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z","level":"info","msg":"hello"' "$dir/log.err" &&
    grep -qF '"path":"/x"' "$dir/log.err" &&
    grep -qF '"q":"say \"hi\"\n"' "$dir/log.err"
}
check "log lines are one JSON object per line with ts, level, msg and fields" log_line_ok
WEFT_LOG=debug "$WEFT" -e 'weft.log.debug("shown")' 2> "$dir/dbg.err"
check "WEFT_LOG=debug shows debug lines" grep -q '"msg":"shown"' "$dir/dbg.err"
"$WEFT" -l error -e 'weft.log.warn("no")' 2> "$dir/quiet.err"
check "-l error hides warnings" bash -c "[ ! -s '$dir/quiet.err' ]"

# A failed script ends the process even with a server and a task still
# running (they used to keep it alive, serving on, after the error).
cat > "$dir/fails.lua" <<'LUA'
local srv = weft.http.serve { handler = function() return { status = 200 } end }
weft.spawn(function() while true do weft.sleep(0.05) end end)
weft.sleep(0.05)
error("the script failed")
LUA
timeout 60 "$WEFT" run "$dir/fails.lua" > /dev/null 2> "$dir/fails.err"
rc=$?
check "a failed script exits 1 although a server and a task were running" [ "$rc" = 1 ]
check "... reporting the error" grep -q 'the script failed' "$dir/fails.err"

echo "1..$n"
[ "$fails" = 0 ]
