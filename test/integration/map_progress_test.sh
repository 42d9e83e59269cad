#!/bin/bash
# map_progress_test.sh: weft.map's progress output. On a terminal
# (WEFT_PROGRESS_TTY=1 stands in for one) a line redrawn with \r and cleared
# at the end; piped, log lines ("progress", with done/total); --quiet: none.
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
cat > "$dir/map.lua" << 'LUA'
local out = weft.map({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24 },
    function(x) weft.sleep(0.02) if x == 5 then error("item five") end return x end, { concurrency = 4 })
print("ok " .. out.ok .. " failed " .. out.failed)
LUA
WEFT_PROGRESS_TTY=1 "$WEFT" --log-level info run "$dir/map.lua" > "$dir/tty.out" 2> "$dir/tty.err"
check "terminal: the map's result" grep -q "ok 23 failed 1" "$dir/tty.out"
check "terminal: the progress line is redrawn with \\r" grep -q $'\r''weft.map 24/24' "$dir/tty.err"
check "... shows errors, rate and ETA" grep -q 'errors 1' "$dir/tty.err"
check "... and is cleared at the end (the last bytes are blanks and a \\r)" \
    [ "$(tail -c 2 "$dir/tty.err" | od -An -c | tr -d ' \n')" = '\r' ]
"$WEFT" --log-level info run "$dir/map.lua" > "$dir/log.out" 2> "$dir/log.err"
check "piped: a progress log line instead" grep -q '"msg":"progress".*"done":24' "$dir/log.err"
check "... and no \\r" bash -c "! grep -q $'\r' '$dir/log.err'"
"$WEFT" --log-level info run --quiet "$dir/map.lua" > "$dir/q.out" 2> "$dir/q.err"
check "--quiet: the result" grep -q "ok 23 failed 1" "$dir/q.out"
check "... and no progress at all" bash -c "! grep -q 'progress\|weft.map' '$dir/q.err'"
echo "1..$n"
[ "$fails" = 0 ]
