# bench/mock_server.sh: sourced by bench scripts. start_mock WEFT PROFILE
# starts `weft mock` on 127.0.0.1 with a port chosen at run time, in its
# own process (stopped, and its directory removed, when the script exits),
# and sets $url. Every step has a timeout.
bench_dir=$(mktemp -d)
mock_pid=
bench_cleanup() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$bench_dir"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

start_mock() {
    local weft=$1 profile=$2
    WEFT_LOG=warn timeout 600 "$weft" mock --port 0 --profile "$profile" > "$bench_dir/url" 2> "$bench_dir/mock.err" &
    mock_pid=$!
    url=
    for _ in $(seq 100); do url=$(head -1 "$bench_dir/url" 2>/dev/null || true); [ -n "$url" ] && break; sleep 0.05; done
    [ -n "$url" ] || { echo "weft mock did not start:" >&2; cat "$bench_dir/mock.err" >&2; exit 1; }
}
