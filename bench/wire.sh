# bench/wire.sh: checks that a benchmark's clients send the same request
# (method, path, body length and headers), so that no client is charged
# for work another one skips. Sourced by the benchmarks' run.sh:
#   wire_start WEFT DIR      starts bench/wire.lua; sets WIRE_URL
#   wire_send CMD ARGS...    runs a client for its one request (timeout 30 s)
#   wire_check               stops the server; returns 0 when every request
#                            it saw was the same, else prints them, returns 1
wire_start() {
    WIRE_LOG=$2/wire.log
    WEFT_LOG=warn timeout 300 "$1" run "$(dirname "${BASH_SOURCE[0]}")/wire.lua" > "$WIRE_LOG" 2> "$WIRE_LOG.err" &
    WIRE_PID=$!
    WIRE_URL=
    for _ in $(seq 100); do
        WIRE_URL=$(head -1 "$WIRE_LOG")
        [ -n "$WIRE_URL" ] && break
        sleep 0.05
    done
    [ -n "$WIRE_URL" ] || { echo "bench/wire.lua did not start" >&2; cat "$WIRE_LOG.err" >&2; return 1; }
}

wire_send() {
    WEFT_LOG=warn timeout 30 "$@" > /dev/null || { echo "wire check: failed: $*" >&2; return 1; }
}

wire_check() {
    kill "$WIRE_PID" 2> /dev/null
    wait "$WIRE_PID" 2> /dev/null || true
    local n distinct
    n=$(tail -n +2 "$WIRE_LOG" | wc -l)
    distinct=$(tail -n +2 "$WIRE_LOG" | sort -u | wc -l)
    if [ "$n" -lt 2 ] || [ "$distinct" -ne 1 ]; then
        echo "the clients do not send the same request ($n requests):" >&2
        tail -n +2 "$WIRE_LOG" >&2
        return 1
    fi
    echo "same request from all $n clients: $(tail -1 "$WIRE_LOG")"
}
