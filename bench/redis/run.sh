#!/bin/bash
# bench/redis/run.sh: what sharing a provider's limits through Redis costs
# per call when the limits do not bind: client CPU per call and call
# latency (its difference is the admission through Redis), shared limits
# against the same limits kept locally, in one run; and the round trips to Redis
# per admitted call (Redis's own command counts: target <= 1). Against
# `weft mock` and a redis-server on a UNIX socket, both started here and
# stopped at the end. Loopback only; every step has a timeout.
#   bench/redis/run.sh [BUILD_DIR]     env: N (5000) C (50) REPS (3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
WEFT="$build/weft"
N=${N:-5000} C=${C:-50} REPS=${REPS:-3}
[ -x "$WEFT" ] || { echo "missing $WEFT: build first (make build)" >&2; exit 1; }
command -v redis-server > /dev/null || { echo "redis-server missing (scripts/deps.sh test)" >&2; exit 1; }
. "$root/bench/mock_server.sh"
start_mock "$WEFT" "$root/bench/policy/profile.lua"
sock="$bench_dir/redis.sock"
pw=bench-redis-$RANDOM$RANDOM
timeout 10 redis-server --port 0 --unixsocket "$sock" --requirepass "$pw" --daemonize yes \
    --pidfile "$bench_dir/redis.pid" --dir "$bench_dir" --save '' --appendonly no --logfile "$bench_dir/redis.log"
for _ in $(seq 500); do [ -S "$sock" ] && [ -f "$bench_dir/redis.pid" ] && break; sleep 0.01; done
trap 'kill "$(cat "$bench_dir/redis.pid" 2>/dev/null)" 2>/dev/null; bench_cleanup' EXIT
echo "target: weft mock $url, redis unix://$sock; N=$N calls per measurement, C=$C callers, REPS=$REPS"
REDIS_SOCK=$sock REDIS_PW=$pw WEFT_LOG=warn timeout 600 "$WEFT" --log-level warn run --no-summary \
    "$here/client.lua" "$N" "$C" "$REPS" "$url"
