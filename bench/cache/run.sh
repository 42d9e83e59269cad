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
. "$root/bench/mock_server.sh"
start_mock "$WEFT" "$root/bench/policy/profile.lua"
echo "target: weft mock $url (own process), N=$N per measurement, REPS=$REPS"
WEFT_LOG=warn timeout 300 "$WEFT" --log-level warn run --no-summary "$here/client.lua" "$N" "$REPS" "$url"
