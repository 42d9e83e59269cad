#!/bin/bash
# bench/serve/run.sh: the `weft serve` gateway against nginx as a reverse
# proxy, same client, same `weft mock` upstream, same run.
#
#   bench/serve/run.sh [BUILD_DIR]     (default: build-me)
#   env: N (100000) C (64) PAIRS (3) S (500)
#
# Legs, N non-streaming chat completions each at concurrency C, from wrk
# (one thread, keep-alive; bench/serve/load.lua stops it after N answers):
#   direct   wrk -> weft mock
#   nginx    wrk -> nginx proxy_pass, upstream keepalive -> weft mock
#   gateway  wrk -> weft serve (model "fast" = openai/gpt-4o-mini) -> weft mock
# For each run: requests/s; client-side latency p50 and p99 (wrk's
# per-request histogram) and what a proxy adds to them over the direct run
# of the same round; CPU per request of the proxy (utime+stime from
# /proc/PID/stat of the process and its children, nginx master + worker,
# before and after the load, / N) and of the mock, for context. The legs
# run in turn, PAIRS rounds (CPU per request swings on shared 2-core
# machines: three busy processes on two cores), then the medians and the
# median of the per-round ratios gateway/nginx CPU per request (target <= 3,
# aim 2; printed, not enforced). /proc CPU counts in clock ticks (10 ms):
# 0.1 us a request at N=100,000, where the whole script takes about a
# minute with a gateway at 20,000 requests/s. At a fixed concurrency the
# latency of a closed-loop client is about C / (requests/s): once a proxy
# saturates its core, what it adds to p50 mirrors its throughput.
# Then memory per open stream: S streaming requests (wrk -cS) through a
# fresh gateway to a mock that sends a stream event every 3 s; the
# gateway's VmRSS before and while all of them are open and past their
# first token (the mock's in_flight count), (difference)/S; then wrk closes
# them, and the mock's closed_early count says whether the gateway cut the
# upstream streams; and when a single stream's first bytes come through
# the gateway.
# A gateway leg that cannot run (no `weft serve` yet, or it fails to start
# or to answer) is reported unavailable. Loopback only; every step is
# bounded by a timeout; everything started is stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build-me}" && pwd)
WEFT="$build/weft"
N=${N:-100000} C=${C:-64} PAIRS=${PAIRS:-3} S=${S:-500}
KEY=sk-weft-mock
MAX_S=300 # wrk's -d: a bound, runs end after N answers
[ -x "$WEFT" ] || { echo "missing $WEFT: build first" >&2; exit 1; }
for t in wrk nginx curl; do command -v $t > /dev/null || { echo "$t missing (scripts/deps.sh)" >&2; exit 1; }; done
TCK=$(getconf CLK_TCK)

dir=$(mktemp -d)
pids=() # everything started in the background, stopped by cleanup
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for _ in $(seq 50); do # SIGTERM drains; give it 5 s, then SIGKILL
        local left=0
        for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# ---- helpers
# start_url NAME CMD...: starts CMD (a weft command printing its URL as its
# first stdout line); sets started_pid, started_url; 1 when no URL in 10 s
start_url() {
    local name=$1
    shift
    "$@" > "$dir/$name.out" 2> "$dir/$name.err" &
    started_pid=$!
    pids+=("$started_pid")
    started_url=
    for _ in $(seq 200); do
        started_url=$(head -1 "$dir/$name.out" 2> /dev/null || true)
        [ -n "$started_url" ] && return 0
        kill -0 "$started_pid" 2> /dev/null || break
        sleep 0.05
    done
    return 1
}

# cpu_ticks PID: utime+stime(+cutime+cstime) of PID and its live children
cpu_ticks() {
    local t=0 p v
    for p in "$1" $(ps -o pid= --ppid "$1" 2> /dev/null || true); do
        # fields after "(comm) ": utime is the 12th, stime, cutime, cstime follow
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2> /dev/null | awk '{ print $12 + $13 + $14 + $15 }') || v=0
        t=$((t + ${v:-0}))
    done
    echo "$t"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# chat URL MODEL [KEY]: one non-streaming request; 0 when it is a completion
chat() {
    local auth=()
    [ -n "${3:-}" ] && auth=(-H "Authorization: Bearer $3")
    curl -sS -m 10 -X POST "$1/v1/chat/completions" -H 'Content-Type: application/json' "${auth[@]}" \
        -d '{"model":"'"$2"'","messages":[{"role":"user","content":"Bring your passport?"}],"max_tokens":16}' \
        > "$dir/chat.out" 2>&1 && grep -q '"choices"' "$dir/chat.out"
}

# load URL MODEL KEY N PROXY_PID: one wrk run; prints
# "req_per_s p50_us p99_us proxy_cpu_us_per_req mock_cpu_us_per_req"
# (proxy "-" without PROXY_PID); 1 when an answer was not a 200 or N not reached
load() {
    local url=$1 model=$2 key=$3 n=$4 proxy=${5:-} m0 m1 p0=0 p1=0 out
    m0=$(cpu_ticks "$mock_pid")
    [ -n "$proxy" ] && p0=$(cpu_ticks "$proxy")
    out=$(timeout $((MAX_S + 30)) wrk -t1 -c"$C" -d"${MAX_S}s" --timeout 5s -s "$here/load.lua" \
        "$url/v1/chat/completions" -- "$n" "$model" "" "$key") || { echo "wrk failed: $out" >&2; return 1; }
    m1=$(cpu_ticks "$mock_pid")
    [ -n "$proxy" ] && p1=$(cpu_ticks "$proxy")
    echo "$out" | awk -v n="$n" -v tck="$TCK" -v m="$((m1 - m0))" -v p="$((p1 - p0))" -v proxy="$proxy" '
        $1 == "RESULT" {
            found = 1
            if ($2 < n || $6 > 0) { print "FAILED: " $2 " answers of " n ", " $6 " not 200" > "/dev/stderr"; exit 1 }
            if ($7 + $8 + $9 + $10 > 0)
                print "note: socket errors connect " $7 " read " $8 " write " $9 " timeout " $10 > "/dev/stderr"
            printf "%.0f %d %d %s %.1f\n", $2 / ($3 / 1e6), $4, $5,
                proxy == "" ? "-" : sprintf("%.1f", p * 1e6 / tck / $2), m * 1e6 / tck / $2
        }
        END { if (!found) { print "FAILED: no RESULT line from wrk" > "/dev/stderr"; exit 1 } }'
}

# ---- the upstream: weft mock, limits far above what one core serves
cat > "$dir/mock.lua" << 'EOF'
return { limits = { rpm = 1e9, tpm = 1e12 } }
EOF
start_url mock "$WEFT" -l warn mock --port 0 --profile "$dir/mock.lua" ||
    { echo "weft mock did not start" >&2; cat "$dir/mock.err" >&2; exit 1; }
mock_pid=$started_pid mock_url=$started_url
chat "$mock_url" gpt-4o-mini "$KEY" || { echo "weft mock does not answer:" >&2; cat "$dir/chat.out" >&2; exit 1; }
mock_port=${mock_url##*:}

# ---- nginx: proxy_pass to the mock, upstream keep-alive
mkdir -p "$dir/tmp"
nginx_pid=
for _ in $(seq 20); do
    port=$((10000 + RANDOM % 20000)) # below the ephemeral range
    cat > "$dir/nginx.conf" << EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
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
    upstream mock {
        server 127.0.0.1:$mock_port;
        keepalive $C;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx.err" &
    nginx_pid=$!
    pids+=("$nginx_pid")
    sleep 0.3
    if kill -0 "$nginx_pid" 2> /dev/null && chat "http://127.0.0.1:$port" gpt-4o-mini "$KEY"; then
        break
    fi
    kill "$nginx_pid" 2> /dev/null || true
    nginx_pid=
done
[ -n "$nginx_pid" ] || { echo "could not start nginx" >&2; cat "$dir/nginx.err" >&2; exit 1; }
nginx_url="http://127.0.0.1:$port"

# ---- the gateway: weft serve, model "fast" on the mock
# gateway_start NAME MOCK_URL: sets gw_pid, gw_url; 1 (with the reason on
# stderr) when it does not start or does not answer
gateway_start() {
    cat > "$dir/$1.lua" << EOF
return {
    providers = { openai = { base_url = "$2", secret = "env:BENCH_MOCK_KEY" } },
    models = { fast = "openai/gpt-4o-mini" },
    gateway = {},
}
EOF
    if ! start_url "$1" env BENCH_MOCK_KEY=$KEY "$WEFT" -l warn serve --config "$dir/$1.lua" --port 0; then
        echo "weft serve did not print its URL:" >&2
        tail -5 "$dir/$1.err" >&2
        return 1
    fi
    gw_pid=$started_pid gw_url=$started_url
    chat "$gw_url" fast || { echo "weft serve does not answer a chat completion:" >&2; head -c 600 "$dir/chat.out" >&2; echo >&2; return 1; }
}
gw_pid='' gw_url=''
if ! timeout 10 "$WEFT" serve --help > "$dir/serve.help" 2>&1; then
    echo "gateway: unavailable (\`weft serve --help\` fails: $(head -1 "$dir/serve.help"))"
elif ! gateway_start gateway "$mock_url"; then
    echo "gateway: unavailable (see above)"
    gw_pid='' gw_url=''
fi
legs="direct nginx"
[ -n "$gw_pid" ] && legs="$legs gateway"

run_leg() { # leg n
    case $1 in
        direct) load "$mock_url" gpt-4o-mini "$KEY" "$2" ;;
        nginx) load "$nginx_url" gpt-4o-mini "$KEY" "$2" "$nginx_pid" ;;
        gateway) load "$gw_url" fast "" "$2" "$gw_pid" ;;
    esac
}

echo "upstream: weft mock $mock_url; nginx $nginx_url${gw_url:+; gateway $gw_url}"
echo "client: wrk -t1 -c$C, N=$N non-streaming chat completions a run, $PAIRS rounds of: $legs"
for leg in $legs; do run_leg "$leg" $((N / 10)) > /dev/null; done # warm-up (JIT, pools, page cache)

printf "%-5s %-8s %8s %8s %8s %8s %8s %12s %12s\n" round leg "req/s" "p50 us" "p99 us" "+p50 us" "+p99 us" "proxy us/req" "mock us/req"
for i in $(seq "$PAIRS"); do
    for leg in $legs; do
        read -r rps p50 p99 pc mc < <(run_leg "$leg" "$N") || { echo "$leg run failed" >&2; exit 1; }
        [ -n "${rps:-}" ] || { echo "$leg run failed" >&2; exit 1; }
        if [ "$leg" = direct ]; then
            d50=$p50 d99=$p99 a50=- a99=-
        else
            a50=$((p50 - d50)) a99=$((p99 - d99))
            echo "$a50" >> "$dir/$leg.a50"
            echo "$a99" >> "$dir/$leg.a99"
            echo "$pc" >> "$dir/$leg.pc"
        fi
        echo "$rps" >> "$dir/$leg.rps"
        echo "$p50" >> "$dir/$leg.p50"
        echo "$p99" >> "$dir/$leg.p99"
        echo "$mc" >> "$dir/$leg.mc"
        printf "%-5s %-8s %8s %8s %8s %8s %8s %12s %12s\n" "$i" "$leg" "$rps" "$p50" "$p99" "$a50" "$a99" "$pc" "$mc"
    done
    if [ -n "$gw_pid" ]; then
        awk -v g="$(tail -1 "$dir/gateway.pc")" -v x="$(tail -1 "$dir/nginx.pc")" 'BEGIN { printf "%.3f\n", g / x }' >> "$dir/ratio"
    fi
done

echo
echo "medians over $PAIRS rounds (added latency: versus the direct run of the same round):"
for leg in $legs; do
    line=$(printf "  %-8s %8s req/s, p50 %s us, p99 %s us" "$leg" "$(median < "$dir/$leg.rps")" "$(median < "$dir/$leg.p50")" "$(median < "$dir/$leg.p99")")
    if [ "$leg" != direct ]; then
        line="$line, added p50 $(median < "$dir/$leg.a50") us, p99 $(median < "$dir/$leg.a99") us, proxy CPU $(median < "$dir/$leg.pc") us/req"
    fi
    echo "$line, mock CPU $(median < "$dir/$leg.mc") us/req"
done
echo "  RSS after the load: mock $(rss_kib "$mock_pid") KiB, nginx master+worker $(($(rss_kib "$nginx_pid") + $(rss_kib "$(ps -o pid= --ppid "$nginx_pid" | head -1 | tr -d ' ')"))) KiB${gw_pid:+, gateway $(rss_kib "$gw_pid") KiB}"
if [ -n "$gw_pid" ]; then
    r=$(median < "$dir/ratio")
    verdict=$(awk -v r="$r" 'BEGIN { print (r <= 3 ? "PASS" : "FAIL") }')
    echo "gateway/nginx CPU per request: median of per-round ratios $r ($(paste -sd' ' "$dir/ratio")); target <= 3, aim 2: $verdict"
else
    echo "gateway/nginx CPU per request: unavailable (no gateway leg)"
fi

# ---- memory per open stream
echo
if [ -z "$gw_pid" ]; then
    echo "memory per open stream: unavailable (no gateway leg)"
    exit 0
fi
kill "$gw_pid" 2> /dev/null || true # the throughput gateway is done
# a second mock whose streams send an event every GAP seconds (the first at
# once): a stream lasts ~8 GAPs, the answer being 6 tokens
GAP=3
cat > "$dir/slow.lua" << EOF
return { limits = { rpm = 1e9, tpm = 1e12 }, max_connections = $((4 * S + 4000)),
         faults = { { dialect = "openai", stream_delay_ms = $((GAP * 1000)) } } }
EOF
start_url slow "$WEFT" -l warn mock --port 0 --profile "$dir/slow.lua" ||
    { echo "slow weft mock did not start" >&2; cat "$dir/slow.err" >&2; exit 1; }
slow_url=$started_url
if ! gateway_start gateway2 "$slow_url"; then
    echo "memory per open stream: unavailable (the gateway did not start)"
    exit 0
fi
# stream_stats: "in_flight closed_early" of the slow mock (in_flight without
# the stats request itself)
stream_stats() {
    curl -sS -m 5 "$slow_url/_mock/stats" | awk '{
        match($0, /"in_flight":[0-9]+/); f = substr($0, RSTART + 12, RLENGTH - 12)
        match($0, /"closed_early":[0-9]+/); c = substr($0, RSTART + 15, RLENGTH - 15)
        print f - 1, c }'
}
# one stream through the gateway: when its first bytes come
ttfb=$(curl -sN -m $((GAP + 3)) -o "$dir/stream.out" -w '%{time_starttransfer}' -X POST "$gw_url/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d '{"model":"fast","messages":[{"role":"user","content":"Bring your passport?"}],"max_tokens":16,"stream":true}' || true)
grep -q '^data: {.*chat.completion.chunk' "$dir/stream.out" ||
    echo "note: no stream event through the gateway within $((GAP + 3)) s: $(head -c 300 "$dir/stream.out")"

# hold K: K streams through the gateway, held open by wrk (-c K, one
# request each); VmRSS once every stream is past its first content event;
# then wrk closes them. Prints "rss_before rss_open rss_after
# streams_open_at_rss upstream_still_running closed_early_upstream" (KiB, counts)
hold() {
    local k=$1 before open after wpid f c0 c n
    for _ in $(seq 100); do read -r f c0 < <(stream_stats); [ "$f" -le 0 ] && break; sleep 0.3; done
    before=$(rss_kib "$gw_pid")
    timeout 200 wrk -t1 -c"$k" -d120s --timeout 2s -s "$here/load.lua" "$gw_url/v1/chat/completions" \
        -- 0 fast stream > "$dir/hold.out" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    for _ in $(seq 300); do read -r f _ < <(stream_stats); [ "$f" -ge "$k" ] && break; sleep 0.1; done
    [ "$f" -ge "$k" ] || echo "note: only $f of $k streams reached the mock in 30 s" >&2
    sleep $((GAP + 1)).5 # every stream has sent its second event (its first token)
    open=$(rss_kib "$gw_pid")
    read -r n _ < <(stream_stats)
    kill -INT "$wpid" 2> /dev/null || true # wrk stops, its connections close
    wait "$wpid" 2> /dev/null || true
    for _ in $(seq 50); do read -r f c < <(stream_stats); [ "$f" -le 0 ] && break; sleep 0.2; done
    after=$(rss_kib "$gw_pid")
    echo "$before $open $after $n $f $((c - c0))"
}
read -r _ _ _ _ _ _ < <(hold 20) # warm-up: the streaming path compiled, pools grown
read -r before open after n left closed < <(hold "$S")
echo "memory per open stream ($S streams through the gateway, an event every $GAP s, measured after the first token):"
echo "  gateway VmRSS: $before KiB before, $open KiB with $n open, $after KiB after closing them"
awk -v b="$before" -v o="$open" -v s="$n" 'BEGIN { if (s > 0) printf "  %.1f KiB per open stream\n", (o - b) / s }'
echo "  upstream: $closed of $S streams cut when the clients left, $left still running 10 s later"
echo "  one stream alone: first bytes through the gateway after ${ttfb:-?} s (the mock sends its first event at once, the next after $GAP s)"
