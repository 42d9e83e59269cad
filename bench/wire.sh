# bench/wire.sh: checks that a benchmark's clients send the same request
# (method, path, body length and headers), so that no client is charged
# for work another one skips. Sourced by the benchmarks' run.sh (which
# run under set -euo pipefail; their EXIT trap calls wire_stop):
#   wire_start WEFT DIR      starts bench/wire.lua; sets WIRE_URL
#   wire_send CMD ARGS...    runs a client for its one request (timeout 30 s)
#   wire_check               stops the server; returns 0 when it saw one
#                            request a wire_send and all of them the same,
#                            else prints them and returns 1
#   wire_stop                stops the server if it runs
WIRE_PID=
WIRE_SENT=0

wire_start() {
    WIRE_LOG=$2/wire.log
    : > "$WIRE_LOG"
    WEFT_LOG=warn timeout 300 "$1" run "$(dirname "${BASH_SOURCE[0]}")/wire.lua" > "$WIRE_LOG" 2> "$WIRE_LOG.err" &
    WIRE_PID=$!
    WIRE_URL=
    for _ in $(seq 100); do
        WIRE_URL=$(head -1 "$WIRE_LOG" 2> /dev/null || true)
        [ -n "$WIRE_URL" ] && break
        sleep 0.05
    done
    if [ -z "$WIRE_URL" ]; then
        echo "bench/wire.lua did not start" >&2
        cat "$WIRE_LOG.err" >&2
        wire_stop
        return 1
    fi
}

wire_send() {
    WIRE_SENT=$((WIRE_SENT + 1))
    # (only the program is named: the arguments may hold a key)
    WEFT_LOG=warn timeout 30 "$@" > /dev/null || { echo "wire check: $1 failed" >&2; return 1; }
}

wire_stop() {
    if [ -n "$WIRE_PID" ]; then
        kill "$WIRE_PID" 2> /dev/null || true
        wait "$WIRE_PID" 2> /dev/null || true
        WIRE_PID=
    fi
}

wire_check() {
    wire_stop
    local n distinct
    n=$(tail -n +2 "$WIRE_LOG" | wc -l)
    distinct=$(tail -n +2 "$WIRE_LOG" | sort -u | wc -l)
    if [ "$n" -ne "$WIRE_SENT" ] || [ "$n" -lt 2 ] || [ "$distinct" -ne 1 ]; then
        echo "the $WIRE_SENT clients do not send the same one request ($n requests seen):" >&2
        tail -n +2 "$WIRE_LOG" >&2
        return 1
    fi
    echo "same request from all $n clients: $(tail -1 "$WIRE_LOG")"
}
