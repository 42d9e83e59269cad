#!/bin/bash
# bench/cache/run.sh: CPU per cache hit (a `cache` policy model answering
# from memory) against a provider call through the whole pipeline, in one
# weft process, against `weft mock` in its own process on 127.0.0.1 (port
# chosen at run time). Loopback only; every step has a timeout.
#   bench/cache/run.sh [BUILD_DIR]     env: N (20000) REPS (5)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
WEFT="$build/weft"
N=${N:-20000} REPS=${REPS:-5}
[ -x "$WEFT" ] || { echo "missing $WEFT: build first (make build)" >&2; exit 1; }
dir=$(mktemp -d)
mock_pid=
cleanup() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
WEFT_LOG=warn timeout 600 "$WEFT" mock --port 0 --profile "$root/bench/policy/profile.lua" > "$dir/url" 2> "$dir/mock.err" &
mock_pid=$!
url=
for _ in $(seq 100); do url=$(head -1 "$dir/url" 2>/dev/null || true); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "weft mock did not start:" >&2; cat "$dir/mock.err" >&2; exit 1; }
echo "target: weft mock $url (own process), N=$N per measurement, REPS=$REPS"
WEFT_LOG=warn timeout 300 "$WEFT" --log-level warn run --no-summary "$here/client.lua" "$N" "$REPS" "$url"
