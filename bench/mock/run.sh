#!/bin/bash
# bench/mock/run.sh [BUILD_DIR]: non-streaming chat completions per second
# that one `weft mock` process (one core: one loop, one Lua state) serves
# to wrk over keep-alive on loopback. Bounded: 3 runs of DURATION seconds.
#   env: DURATION (5) CONNECTIONS (64)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
DURATION=${DURATION:-5} CONNECTIONS=${CONNECTIONS:-64}
command -v wrk > /dev/null || { echo "wrk missing: scripts/deps.sh installs it" >&2; exit 1; }
dir=$(mktemp -d)
mock_pid=
trap '[ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
WEFT_LOG=warn "$build/weft" mock --port 0 --profile "$here/profile.lua" > "$dir/url" &
mock_pid=$!
for _ in $(seq 100); do url=$(head -1 "$dir/url"); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "weft mock did not start" >&2; exit 1; }
echo "weft mock at $url; wrk -t1 -c$CONNECTIONS -d${DURATION}s, POST /v1/chat/completions"
wrk -t1 -c"$CONNECTIONS" -d2s -s "$here/post.lua" "$url/v1/chat/completions" > /dev/null # warm-up
for i in 1 2 3; do
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$here/post.lua" "$url/v1/chat/completions")
    rps=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx/ { print $5 }')
    lat=$(echo "$out" | awk '/Latency/ { print $2 }')
    echo "run $i: $rps requests/s, mean latency $lat, non-2xx: ${bad:-0}"
done
cpu=$(ps -o times= -p "$mock_pid")
echo "mock process CPU seconds so far: $cpu"
