#!/bin/bash
# map_tmux_test.sh: weft.map's progress bar on a real terminal (a tmux
# pane): while the map runs the pane shows done/total and the ETA on one
# line; at the end the line is gone and the script's own output remains.
set -u
: "${WEFT:?run through ctest}"
command -v tmux > /dev/null || { echo "tmux missing: skipped"; exit 77; }
dir=$(mktemp -d)
sock="$dir/tmux.sock"
session="weftmap$$"
cleanup() { tmux -S "$sock" kill-server 2> /dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
cat > "$dir/map.lua" << 'LUA'
local items = {}
for i = 1, 60 do items[i] = i end
local out = weft.map(items, function(x) weft.sleep(0.05) return x end, { concurrency = 2, label = "docs" })
print("finished " .. out.ok)
LUA
tmux -S "$sock" new-session -d -s "$session" -x 160 -y 20 \
    "'$WEFT' --log-level warn run --no-summary '$dir/map.lua'; echo EXITED; sleep 30"
# while it runs: the bar (about 1.5 s of work)
seen=
for _ in $(seq 100); do
    pane=$(tmux -S "$sock" capture-pane -p -t "$session" 2> /dev/null)
    if grep -q 'docs [0-9]*/60 .*ETA' <<< "$pane"; then seen=$pane; break; fi
    sleep 0.05
done
check "the bar shows done/total and an ETA while the map runs" [ -n "$seen" ]
done_pane=
for _ in $(seq 200); do
    pane=$(tmux -S "$sock" capture-pane -p -t "$session" 2> /dev/null)
    if grep -q EXITED <<< "$pane"; then done_pane=$pane; break; fi
    sleep 0.05
done
check "the script finished" grep -q 'finished 60' <<< "$done_pane"
check "the bar is gone at the end" bash -c '! grep -q "docs [0-9]*/60" <<< "$1"' _ "$done_pane"
echo "1..$n"
[ "$fails" = 0 ]
