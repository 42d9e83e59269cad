#!/bin/bash
# bench/limiter/run.sh [BUILD_DIR]: acquire cost from C and from Lua, and
# the 20-second accuracy run. Bounded; no network.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
"$build/bench/bench_acquire"
WEFT_LOG=warn "$build/weft" run "$here/acquire.lua"
WEFT_LOG=warn "$build/weft" run "$here/accuracy.lua" "${SECONDS_RUN:-20}"
