#!/bin/bash
# bench/policy/run.sh: what an orchestration policy adds to a call. In one
# weft process (client.lua), CPU per call of the same chat completion
#   direct   weft.model("openai/gpt-4o-mini"): the whole provider pipeline
#   fallback a `fallback` policy whose first target is that model, healthy
#   balance  a `balance` policy (weighted) over two providers on the same
#            backend (openai and openai_b, both the openai plugin)
# against one `weft mock` server in its own process, on 127.0.0.1 with a
# port chosen at run time. Target (the issue): <= 3 us added per call.
#
#   bench/policy/run.sh [BUILD_DIR]      (default: build)
#   env: N (20000 calls per measurement) C ("1,64": sequential, and 64
#        concurrent tasks as bench/pipeline does) REPS (5)
#
# CPU is the client process's (os.clock: user+sys) from a full GC before
# the N calls to a full GC after them; each measurement is repeated REPS
# times, variants interleaved in a rotating order after a warm-up. Prints
# every measurement, then per concurrency the medians, the added us/call of
# each policy over direct (median of the per-rep differences) and whether
# the target holds. Exits 1 if a call failed or a policy call was not
# answered by its first pick. Loopback only; every step has a timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
WEFT="$build/weft"
N=${N:-20000} C=${C:-1,64} REPS=${REPS:-5}
[ -x "$WEFT" ] || { echo "missing $WEFT: build first (make build)" >&2; exit 1; }

. "$root/bench/mock_server.sh"
start_mock "$WEFT" "$here/profile.lua"
echo "target: weft mock $url (own process), N=$N per measurement, C=$C, REPS=$REPS"
WEFT_LOG=warn timeout 300 "$WEFT" run "$here/client.lua" "$N" "$C" "$REPS" "$url"
