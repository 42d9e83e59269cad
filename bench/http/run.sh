#!/bin/bash
# bench/http/run.sh: weft's HTTP client (driven from Lua) against a raw
# libcurl-multi C client, same load, same run, same local nginx.
#
#   bench/http/run.sh [BUILD_DIR]        (default: build)
#   env: N (100000) C (64) PAIRS (5) CG_N1/CG_N2 (500/1500) ST_N1/ST_N2 (1000/3000)
#
# Prints, per run, requests/s and client CPU per request ((user+sys)/N of
# the client process), then the medians and the median of the per-pair
# ratios weft/baseline (CPU per request swings about +-20% between runs on
# shared 2-core machines, hence alternating pairs and medians; /usr/bin/time
# counts in 10 ms, 0.1 us a request at N=100,000, 0.5 us at 20,000). Then
# instructions per request (valgrind callgrind) and syscalls per request
# (strace -c), each by differencing two run sizes so start-up cancels out.
# Only loopback is targeted; every step is bounded by a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
WEFT="$build/weft"
BASE="$build/bench/bench_baseline"
BODY="$here/request.json"
N=${N:-100000} C=${C:-64} PAIRS=${PAIRS:-5}
CG_N1=${CG_N1:-500} CG_N2=${CG_N2:-1500}
ST_N1=${ST_N1:-1000} ST_N2=${ST_N2:-3000}
for f in "$WEFT" "$BASE"; do [ -x "$f" ] || { echo "missing $f: build first (make build)" >&2; exit 1; }; done

dir=$(mktemp -d)
nginx_pid=
cleanup() {
    [ -n "${WIRE_PID:-}" ] && { kill "$WIRE_PID" 2>/dev/null || true; }
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- a local nginx answering a fixed ~300-byte chat completion
answer='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Bring your passport and an eTA; arrive three hours early."},"finish_reason":"stop"}],"usage":{"prompt_tokens":52,"completion_tokens":14,"total_tokens":66}}'
mkdir -p "$dir/tmp"
for _ in $(seq 20); do
    port=$((10000 + RANDOM % 20000)) # below the ephemeral range
    cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    server {
        listen 127.0.0.1:$port;
        location / { default_type application/json; return 200 '$answer'; }
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
    nginx_pid=$!
    sleep 0.3
    if kill -0 "$nginx_pid" 2>/dev/null && curl -fsS -o /dev/null -d @"$BODY" "http://127.0.0.1:$port/"; then
        break
    fi
    kill "$nginx_pid" 2>/dev/null || true
    nginx_pid=
done
[ -n "$nginx_pid" ] || { echo "could not start nginx" >&2; cat "$dir/error.log" >&2; exit 1; }
URL="http://127.0.0.1:$port/v1/chat/completions"
echo "target: nginx 127.0.0.1:$port, body $(wc -c < "$BODY") bytes, N=$N C=$C, $PAIRS pairs"

# ---- one measured run: prints "req_per_s cpu_us_per_req"
measure() { # name n c
    local name=$1 n=$2 c=$3 out
    if [ "$name" = weft ]; then
        out=$( { /usr/bin/time -f "TIME %U %S %e" timeout 300 "$WEFT" run "$here/client.lua" "$n" "$c" "$URL" "$BODY"; } 2>&1 )
    else
        out=$( { /usr/bin/time -f "TIME %U %S %e" timeout 300 "$BASE" "$n" "$c" "$URL" "$BODY"; } 2>&1 )
    fi
    echo "$out" | awk -v n="$n" '/^TIME/ { printf "%.0f %.1f\n", n / $4, ($2 + $3) * 1e6 / n }
                                 / failed/ { if ($4 != 0) { print "FAILED: " $0 > "/dev/stderr"; exit 1 } }'
}

# ---- both clients send the same request (bench/wire.sh)
. "$here/../wire.sh"
wire_start "$WEFT" "$dir"
wire_send "$WEFT" run "$here/client.lua" 1 1 "$WIRE_URL/v1/chat/completions" "$BODY"
wire_send "$BASE" 1 1 "$WIRE_URL/v1/chat/completions" "$BODY"
wire_check

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

measure weft 2000 "$C" > /dev/null   # warm-up (page cache, nginx)
measure baseline 2000 "$C" > /dev/null

printf "%-5s %-9s %10s %14s\n" pair client "req/s" "CPU us/req"
: > "$dir/w"; : > "$dir/b"; : > "$dir/r"; : > "$dir/wr"; : > "$dir/br"
for i in $(seq "$PAIRS"); do
    read -r wr wc < <(measure weft "$N" "$C")
    read -r br bc < <(measure baseline "$N" "$C")
    printf "%-5s %-9s %10s %14s\n" "$i" weft "$wr" "$wc"
    printf "%-5s %-9s %10s %14s\n" "$i" baseline "$br" "$bc"
    echo "$wc" >> "$dir/w"; echo "$bc" >> "$dir/b"; echo "$wr" >> "$dir/wr"; echo "$br" >> "$dir/br"
    awk -v a="$wc" -v b="$bc" 'BEGIN { printf "%.3f\n", a / b }' >> "$dir/r"
done
mw=$(median < "$dir/w"); mb=$(median < "$dir/b"); mr=$(median < "$dir/r")
echo
echo "median req/s:            weft $(median < "$dir/wr"), baseline $(median < "$dir/br")"
echo "median CPU us/request:   weft $mw, baseline $mb"
echo "median ratio weft/baseline CPU per request: $mr (target <= 1.15)"

# ---- instructions per request (callgrind), by differencing two sizes
. "$here/../instr.sh"
wi=$(instr_per_unit "$CG_N1" "$CG_N2" "$WEFT" run "$here/client.lua" @N "$C" "$URL" "$BODY")
bi=$(instr_per_unit "$CG_N1" "$CG_N2" "$BASE" @N "$C" "$URL" "$BODY")
if [ -n "$wi" ]; then
    echo "instructions/request (callgrind, N $CG_N1->$CG_N2): weft $wi, baseline $bi, ratio $(awk -v a="$wi" -v b="$bi" 'BEGIN { printf "%.3f", a / b }')"
fi

# ---- syscalls per request (strace -c), by differencing two sizes
calls() { # name n
    local name=$1 n=$2 log=$dir/st.log
    if [ "$name" = weft ]; then
        timeout 600 strace -f -c -o "$log" "$WEFT" run "$here/client.lua" "$n" "$C" "$URL" "$BODY" > /dev/null
    else
        timeout 600 strace -f -c -o "$log" "$BASE" "$n" "$C" "$URL" "$BODY" > /dev/null
    fi
    awk '$NF == "total" { print ($4 ~ /^[0-9]+$/) ? $4 : $3 }' "$log"
}
if command -v strace > /dev/null; then
    ws=$(awk -v a="$(calls weft "$ST_N2")" -v b="$(calls weft "$ST_N1")" -v d=$((ST_N2 - ST_N1)) 'BEGIN { printf "%.2f", (a - b) / d }')
    bs=$(awk -v a="$(calls baseline "$ST_N2")" -v b="$(calls baseline "$ST_N1")" -v d=$((ST_N2 - ST_N1)) 'BEGIN { printf "%.2f", (a - b) / d }')
    echo "syscalls/request (strace -c, N $ST_N1->$ST_N2): weft $ws, baseline $bs"
fi
