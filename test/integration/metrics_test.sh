#!/bin/bash
# metrics_test.sh: the observability acceptance run.
#  - `weft mock` with three injected 503s; metrics_run.lua makes 10 chat
#    calls (and calls exercising every other standard metric) under
#    `weft run --metrics 127.0.0.1:0 --summary`;
#  - the exposition passes `promtool check metrics` and holds the exact
#    counts (attempts 13, retries 3, success 10, ...);
#  - a real Prometheus (Debian's package) on 127.0.0.1 scrapes weft and
#    the series is read back through its HTTP query API;
#  - the summary table, the once-per-model price warning, logfmt, and bad
#    --metrics addresses.
set -u
: "${WEFT:?run through ctest}" "${WEFT_CANARY_KEY:?run through ctest}"
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
mock_pid= weft_pid= prom_pid=
cleanup() {
    for p in $weft_pid $prom_pid $mock_pid; do kill "$p" 2> /dev/null; done
    wait 2> /dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
wait_for() { # file, tenths of a second
    for _ in $(seq "$2"); do [ -s "$1" ] && return 0; sleep 0.1; done
    return 1
}
for tool in promtool prometheus curl; do
    command -v $tool > /dev/null || { echo "missing $tool (scripts/deps.sh installs it)"; exit 1; }
done

# The mock expects the canary as its key: weft sends it from a secret.
"$WEFT" mock --port 0 --key "$WEFT_CANARY_KEY" > "$dir/mock.url" 2> "$dir/mock.err" &
mock_pid=$!
wait_for "$dir/mock.url" 100 || { echo "mock did not start"; cat "$dir/mock.err"; exit 1; }
url=$(head -1 "$dir/mock.url")
curl -fsS -X POST "$url/_mock/faults" -d '[{"dialect":"openai","sequence":[503,503,503]}]' > /dev/null

WEFT_LOG=info WEFT_LOG_FORMAT=json timeout 300 "$WEFT" run --metrics 127.0.0.1:0 --summary \
    "$here/metrics_run.lua" "$url" "$dir" > "$dir/run.out" 2> "$dir/run.err" &
weft_pid=$!
if ! wait_for "$dir/ready" 300; then
    echo "the script did not get ready"; cat "$dir/run.err"; exit 1
fi
port=$(cat "$dir/port")
curl -fsS -D "$dir/headers" "http://127.0.0.1:$port/metrics" > "$dir/metrics.txt"
check "the endpoint serves text format 0.0.4" grep -qi '^content-type: text/plain; version=0.0.4' "$dir/headers"
promtool check metrics < "$dir/metrics.txt" > "$dir/promtool.out" 2>&1
check "promtool check metrics passes" [ $? = 0 ]
cat "$dir/promtool.out"

has() { grep -qxF -- "$1" "$dir/metrics.txt" || { echo "# missing: $1"; return 1; }; }
L='provider="openai",model="gpt-4o-mini",operation="chat"'
check "10 calls with 3 injected 503s: 13 attempts" has "weft_attempts_total{$L} 13"
check "... 3 retries, by reason" has "weft_retries_total{$L,reason=\"transient\"} 3"
check "... 10 successes" has "weft_calls_total{$L,outcome=\"success\"} 10"
check "... 10 latency observations" has "weft_call_duration_seconds_count{$L} 10"
check "... 10 overhead observations" has "weft_overhead_seconds_count{$L} 10"
check "a failed call is counted by error kind" has 'weft_calls_total{provider="openai",model="broken",operation="chat",outcome="invalid_request"} 1'
check "the stream's time to first token" has 'weft_time_to_first_token_seconds_count{provider="openai",model="gpt-4o-mini",operation="stream"} 1'
check "tokens in (11 calls x 7)" has 'weft_tokens_total{provider="openai",model="gpt-4o-mini",direction="input"} 77'
check "tokens out (11 calls x 3)" has 'weft_tokens_total{provider="openai",model="gpt-4o-mini",direction="output"} 33'
# 77 * 0.15 + 33 * 0.6 USD per 1M tokens
check "cost from the price table" has 'weft_cost_usd_total{provider="openai",model="gpt-4o-mini"} 3.135e-05'
check "no cost without a price" bash -c "! grep -q 'weft_cost_usd_total{provider=\"openai\",model=\"gpt-unpriced\"' '$dir/metrics.txt'"
check "HTTP requests by status class (10 chat + 1 stream + 2 unpriced)" has 'weft_http_requests_total{method="POST",outcome="2xx"} 13'
check "HTTP 4xx answers (a 400 and a 401, not resent: its refresh read the same key)" has 'weft_http_requests_total{method="POST",outcome="4xx"} 2'
check "HTTP 5xx answers" has 'weft_http_requests_total{method="POST",outcome="5xx"} 3'
check "quota remaining from the provider's headers" grep -q '^weft_quota_remaining{provider="openai",unit="requests"} [0-9]' "$dir/metrics.txt"
check "limiter level" grep -q '^weft_limiter_level{limiter="openai",limit="rps"} [0-9]' "$dir/metrics.txt"
check "limiter queue length" has 'weft_limiter_queue_length{limiter="openai",priority="normal"} 0'
check "breaker state" has 'weft_breaker_state{breaker="openai"} 0'
check "cache hits" has 'weft_cache_requests_total{cache="answers",result="hit"} 1'
check "cache misses" has 'weft_cache_requests_total{cache="answers",result="miss"} 1'
check "plugin loads" has 'weft_plugin_loads_total{plugin="secrets/vault",outcome="ok"} 1'
check "plugin load failures" has 'weft_plugin_loads_total{plugin="secrets/no-such-plugin",outcome="failed"} 1'
check "secret loads" has 'weft_secret_events_total{event="load"} 2'
check "secret refreshes (one asked, one after the 401)" has 'weft_secret_events_total{event="refresh"} 2'
check "secrets rejected by the provider" has 'weft_secret_events_total{event="rejected"} 1'
check "a raising hook is counted" has 'weft_hook_errors_total{event="response"} 13'
check "sampled-out success lines are counted" grep -q '^weft_log_lines_sampled_out_total [1-9]' "$dir/metrics.txt"
check "the cardinality cap sends the rest to 'other'" has 'app_tenant_calls_total{tenant="other"} 2'
check "... and counts the overflow" has 'weft_metrics_overflow_total{metric="app_tenant_calls_total"} 2'
check "a custom token histogram" has 'app_prompt_tokens_bucket{route="summarise",le="1024"} 1'
# every standard metric has at least one sample
for m in weft_calls_total weft_attempts_total weft_retries_total weft_call_duration_seconds_count \
    weft_time_to_first_token_seconds_count weft_overhead_seconds_count weft_tokens_total \
    weft_cost_usd_total weft_http_requests_total weft_http_request_duration_seconds_count \
    weft_limiter_level weft_limiter_queue_length weft_quota_remaining weft_breaker_state \
    weft_cache_requests_total weft_plugin_loads_total weft_secret_events_total \
    weft_hook_errors_total weft_log_lines_sampled_out_total weft_metrics_overflow_total; do
    grep -q "^$m[{ ]" "$dir/metrics.txt" || { echo "# no sample of $m"; missing=1; }
done
check "every standard metric was exercised" [ -z "${missing:-}" ]

# A real Prometheus scrapes weft and answers a query about its series.
mkdir "$dir/prom"
for _ in $(seq 20); do
    pport=$((10000 + RANDOM % 20000)) # below the ephemeral range
    cat > "$dir/prom/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: weft
    static_configs:
      - targets: ["127.0.0.1:$port"]
YML
    prometheus --config.file="$dir/prom/prometheus.yml" --storage.tsdb.path="$dir/prom/data" \
        --web.listen-address="127.0.0.1:$pport" > "$dir/prom/log" 2>&1 &
    prom_pid=$!
    up=
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$pport/-/ready" 2> /dev/null && { up=1; break; }
        kill -0 $prom_pid 2> /dev/null || break
        sleep 0.1
    done
    [ -n "$up" ] && break
    kill $prom_pid 2> /dev/null; wait $prom_pid 2> /dev/null; prom_pid=
done
[ -n "$prom_pid" ] || { echo "could not start prometheus"; cat "$dir/prom/log"; exit 1; }
q='weft_attempts_total{operation="chat",model="gpt-4o-mini"}'
got=
for _ in $(seq 300); do
    curl -fsS -G "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$q" > "$dir/prom/answer" 2> /dev/null
    if grep -q '"result":\[{' "$dir/prom/answer"; then got=1; break; fi
    sleep 0.1
done
check "Prometheus scraped weft and answers a query about its series" [ -n "$got" ]
check "... with the value 13" grep -q '"value":\[[0-9.]*,"13"\]' "$dir/prom/answer"
check "... and the scrape target is up" bash -c "curl -fsS -G 'http://127.0.0.1:$pport/api/v1/query' --data-urlencode 'query=up{job=\"weft\"}' | grep -q '\"value\":\[[0-9.]*,\"1\"\]'"
kill $prom_pid; wait $prom_pid 2> /dev/null; prom_pid=

touch "$dir/stop"
wait $weft_pid
rc=$?
weft_pid=
check "the script ends although the metrics endpoint was serving (exit 0)" [ $rc = 0 ]
check "the summary table is printed (--summary)" grep -q '^  openai/gpt-4o-mini  *11  *0 ' "$dir/run.err"
check "the summary has errors by kind" grep -q '^  openai/broken  *1  *invalid_request 1 ' "$dir/run.err"
check "the summary has the cost" grep -q '0.000031' "$dir/run.err"
check "the missing price is warned about once per model" \
    [ "$(grep -c '"msg":"no price for this model: cost not recorded".*"model":"gpt-unpriced"' "$dir/run.err")" = 1 ]
check "every retry line carries the call id" \
    bash -c "[ \$(grep '\"msg\":\"retry\"' '$dir/run.err' | grep -c '\"call_id\":\"[0-9a-f]*-1\"') = 3 ]"
check "the call line has duration, outcome and attempts" \
    bash -c "grep '\"msg\":\"call\"' '$dir/run.err' | grep '\"call_id\":\"[0-9a-f]*-1\"' | grep '\"outcome\":\"success\"' | grep -q '\"attempts\":4'"
check "a raising hook is logged" grep -q '"msg":"hook failed".*a broken hook' "$dir/run.err"
check "the canary key appears nowhere" bash -c "! grep -qF '$WEFT_CANARY_KEY' '$dir/run.err' '$dir/run.out' '$dir/metrics.txt' '$dir/mock.err'"

# logfmt, and bad --metrics addresses
WEFT_LOG_FORMAT=logfmt "$WEFT" -e 'weft.log.warn("hello there", { a = "b c", n = 1, q = "x=\"y\"" })' 2> "$dir/logfmt"
check "logfmt lines" grep -q '^ts=[0-9T:.-]*Z level=warn msg="hello there" a="b c" n=1 q="x=\\"y\\""$' "$dir/logfmt"
if command -v script > /dev/null; then # util-linux: run under a pseudo-terminal
    script -qc "'$WEFT' -e 'weft.log.warn(\"on a tty\", { k = 1 })'" /dev/null > "$dir/tty" 2>&1
    check "logfmt is the default when stderr is a terminal" grep -q '^ts=.* level=warn msg="on a tty" k=1' "$dir/tty"
fi
"$WEFT" --log-format json -e 'weft.log.warn("j")' 2> "$dir/json"
check "--log-format json" grep -q '^{"ts":".*","level":"warn","msg":"j"}$' "$dir/json"
"$WEFT" --log-format yaml -e '' 2> /dev/null
check "an unknown log format exits 2" [ $? = 2 ]
"$WEFT" run --metrics nonsense "$here/metrics_run.lua" 2> "$dir/bad"
rc=$?
check "a bad --metrics address exits 2 with a clear message" bash -c "[ $rc = 2 ] && grep -q 'HOST:PORT' '$dir/bad'"
"$WEFT" run --metrics "127.0.0.1:${url##*:}" "$here/metrics_run.lua" 2> "$dir/bad" # the mock's port
rc=$?
check "a --metrics port in use exits 2" bash -c "[ $rc = 2 ] && grep -q 'in use' '$dir/bad'"
"$WEFT" run --bogus x.lua 2> /dev/null
check "an unknown run option exits 2" [ $? = 2 ]

# The endpoint's URL goes to stderr whatever the log level, as one line
# (port 0: the only way to learn the port).
echo 'print(weft.metrics.endpoint)' > "$dir/url.lua"
for level in off info; do
    WEFT_LOG=$level WEFT_LOG_FORMAT=json "$WEFT" run --metrics 127.0.0.1:0 "$dir/url.lua" \
        > "$dir/url.$level.out" 2> "$dir/url.$level.err"
    check "--metrics 127.0.0.1:0 prints the URL at log level $level" \
        bash -c "grep -qE '^http://127\.0\.0\.1:[1-9][0-9]*/metrics\$' '$dir/url.$level.out' &&
                 [ \"\$(cat '$dir/url.$level.err')\" = \"weft: metrics at \$(cat '$dir/url.$level.out')\" ]"
done

echo "1..$n"
[ $fails = 0 ]
