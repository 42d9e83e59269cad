#!/bin/bash
# bench/pipeline/run.sh: the whole call pipeline (weft.model: limiter,
# breaker, retry bookkeeping, the openai plugin's encode/decode in Lua,
# host auth, metrics and call records) against two C clients, same run,
# same `weft mock` server in its own process: the baseline, raw
# libcurl-multi sending the plugin's body with the same key header and
# discarding the answer (bench/http/baseline.c), and the floor, the same
# client doing the work a call must do (bench/pipeline/floor.c: the request
# built as a Lua table and cjson.encode'd, the answer cjson.decode'd and its
# text and token counts read, in a plain Lua state). The pipeline's cost
# over the floor is what Lua code and weft's mechanisms add.
#
#   bench/pipeline/run.sh [BUILD_DIR]      (default: build)
#   env: N (100000) C (64) PAIRS (5)
#
# Prints per run calls/s and client CPU per call ((user+sys)/N of the
# client process, its start included: weft's ~5 ms of loading and
# configuring is 0.05 us a call at N=100,000, 0.3 us at 20,000) for the
# pipeline, for the same request through weft.http alone (what the
# pipeline adds to it is the difference), for the floor and
# for the baseline, each run of the four in turn; then the medians and the
# medians of the per-run ratios (pipeline/baseline: target <= 1.8, aim 1.5;
# pipeline/floor); callgrind instructions per call of each; then the
# garbage one call leaves on the Lua heap (garbage.lua), what the pipeline
# adds to a stream's time to first token (ttft.lua) and memory per
# in-flight call with 5,000 held open (inflight.lua). Loopback only; every
# step has a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
WEFT="$build/weft"
BASE="$build/bench/bench_baseline"
FLOOR="$build/bench/bench_floor"
N=${N:-100000} C=${C:-64} PAIRS=${PAIRS:-5}
INFLIGHT=5000 # calls held open at once by inflight.lua (issue 19)
for f in "$WEFT" "$BASE" "$FLOOR"; do [ -x "$f" ] || { echo "missing $f: build first (make build)" >&2; exit 1; }; done

dir=$(mktemp -d)
mock_pid=
trap '[ -n "${WIRE_PID:-}" ] && { kill $WIRE_PID 2>/dev/null || true; }; [ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
# (inflight.lua holds INFLIGHT connections open from this one address, with
# room for the last run's while they close; by default the mock takes 2,500
# from one address)
WEFT_LOG=warn "$WEFT" mock --port 0 --profile "$here/profile.lua" --max-connections $((2 * INFLIGHT)) \
    > "$dir/url" 2> "$dir/mock.err" &
mock_pid=$!
for _ in $(seq 100); do url=$(head -1 "$dir/url"); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "weft mock did not start" >&2; exit 1; }
WEFT_LOG=warn "$WEFT" run "$here/client.lua" body "$dir/body.json"
KEY=$(WEFT_LOG=off "$WEFT" -e 'print(weft.mock.DEFAULT_KEYS.openai)')
echo "target: weft mock $url (own process), body $(wc -c < "$dir/body.json") bytes, N=$N C=$C, $PAIRS pairs"

# ---- the four clients send the same request (bench/wire.sh): the
# plugin's headers, weft's User-Agent
. "$here/../wire.sh"
wire_start "$WEFT" "$dir"
wire_send "$WEFT" run "$here/client.lua" 1 1 "$WIRE_URL"
wire_send "$WEFT" run "$here/client.lua" http 1 1 "$WIRE_URL"
wire_send "$FLOOR" 1 1 "$WIRE_URL/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json"
wire_send "$BASE" 1 1 "$WIRE_URL/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json"
wire_check

measure() { # name n c -> "calls_per_s cpu_us_per_call"
    local name=$1 n=$2 c=$3 out
    if [ "$name" = weft ]; then
        out=$( { WEFT_LOG=warn /usr/bin/time -f "TIME %U %S %e" timeout 300 "$WEFT" run "$here/client.lua" "$n" "$c" "$url"; } 2>&1 )
    elif [ "$name" = http ]; then
        out=$( { WEFT_LOG=warn /usr/bin/time -f "TIME %U %S %e" timeout 300 "$WEFT" run "$here/client.lua" http "$n" "$c" "$url"; } 2>&1 )
    elif [ "$name" = floor ]; then
        out=$( { /usr/bin/time -f "TIME %U %S %e" timeout 300 "$FLOOR" "$n" "$c" "$url/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json"; } 2>&1 )
    else
        out=$( { /usr/bin/time -f "TIME %U %S %e" timeout 300 "$BASE" "$n" "$c" "$url/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json"; } 2>&1 )
    fi
    echo "$out" | awk -v n="$n" '/^TIME/ { printf "%.0f %.1f\n", n / $4, ($2 + $3) * 1e6 / n }
                                 / failed/ { if ($4 != 0) { print "FAILED: " $0 > "/dev/stderr"; exit 1 } }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

measure weft 2000 "$C" > /dev/null   # warm-up
measure floor 2000 "$C" > /dev/null
measure baseline 2000 "$C" > /dev/null
printf "%-5s %-9s %10s %15s\n" pair client "calls/s" "CPU us/call"
for f in w wr h f fr b br r hr fl; do : > "$dir/$f"; done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", a / b }'; }
for i in $(seq "$PAIRS"); do
    read -r wr wc < <(measure weft "$N" "$C")
    read -r hr hc < <(measure http "$N" "$C")
    read -r fr fc < <(measure floor "$N" "$C")
    read -r br bc < <(measure baseline "$N" "$C")
    printf "%-5s %-9s %10s %15s\n" "$i" pipeline "$wr" "$wc"
    printf "%-5s %-9s %10s %15s\n" "$i" weft.http "$hr" "$hc"
    printf "%-5s %-9s %10s %15s\n" "$i" floor "$fr" "$fc"
    printf "%-5s %-9s %10s %15s\n" "$i" baseline "$br" "$bc"
    echo "$wc" >> "$dir/w"; echo "$wr" >> "$dir/wr"; echo "$hc" >> "$dir/h"
    echo "$fc" >> "$dir/f"; echo "$fr" >> "$dir/fr"; echo "$bc" >> "$dir/b"; echo "$br" >> "$dir/br"
    ratio "$wc" "$bc" >> "$dir/r"
    ratio "$hc" "$bc" >> "$dir/hr"
    ratio "$wc" "$fc" >> "$dir/fl"
done
echo
echo "median calls/s:          weft pipeline $(median < "$dir/wr"), floor $(median < "$dir/fr"), baseline $(median < "$dir/br")"
echo "median CPU us/call:      weft pipeline $(median < "$dir/w"), weft.http alone $(median < "$dir/h"), floor $(median < "$dir/f"), baseline $(median < "$dir/b")"
echo "median ratio weft.http/baseline CPU per call: $(median < "$dir/hr")"
echo "median ratio pipeline/baseline CPU per call: $(median < "$dir/r") (target <= 1.8, aim 1.5)"
echo "median ratio pipeline/floor CPU per call: $(median < "$dir/fl") (the floor: the same work in C with cjson)"

# instructions per call (callgrind, differencing 2,000 and 4,000 calls)
. "$here/../instr.sh"
pi=$(WEFT_LOG=warn instr_per_unit 2000 4000 "$WEFT" run "$here/client.lua" @N "$C" "$url")
hi=$(WEFT_LOG=warn instr_per_unit 2000 4000 "$WEFT" run "$here/client.lua" http @N "$C" "$url")
fl=$(instr_per_unit 2000 4000 "$FLOOR" @N "$C" "$url/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json")
bi=$(instr_per_unit 2000 4000 "$BASE" @N "$C" "$url/v1/chat/completions" "$dir/body.json" "Authorization: Bearer $KEY" "Accept: application/json")
if [ -n "$pi" ]; then
    echo "instructions/call (callgrind): pipeline $pi, weft.http $hi, floor $fl, baseline $bi;" \
        "ratios to baseline: pipeline $(ratio "$pi" "$bi"), weft.http $(ratio "$hi" "$bi"), floor $(ratio "$fl" "$bi");" \
        "pipeline/floor $(ratio "$pi" "$fl")"
fi
WEFT_LOG=warn timeout 300 "$WEFT" run --no-summary "$here/garbage.lua" "$url" 10000
WEFT_LOG=warn timeout 300 "$WEFT" run --no-summary "$here/ttft.lua" "$url" 500
# (one process each: what one variant freed and kept would count for the
# next; the mock was started to take all of them from this address)
for m in pipeline http; do
    WEFT_LOG=warn timeout 300 "$WEFT" run --no-summary "$here/inflight.lua" "$url" "$m" "$INFLIGHT" | tail -1
done
