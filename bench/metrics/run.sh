#!/bin/bash
# bench/metrics/run.sh [BUILD_DIR]: cost of recording metrics from C (the
# baseline) and from Lua, in the same run. Bounded; no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
out=$("$build/bench/bench_observe")
echo "$out" | head -1
eval "$(echo "$out" | tail -1)"
WEFT_LOG=warn "$build/weft" run "$here/observe.lua" "${N:-5000000}" "$C_OBSERVE_NS" "$C_LABELLED_NS"
