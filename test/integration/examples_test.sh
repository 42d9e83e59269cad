#!/bin/bash
# examples_test.sh: every runnable example runs against weft mock (no API
# key: examples/_setup.lua and the policy examples start the mock) and says
# what it claims; the shipped policy plugins pass `weft check`. An example
# that breaks fails here, not in a reader's first hour. The canary key is in
# the environment of none of them (the examples would use a real service).
set -u
: "${WEFT:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
src=$WEFT_SOURCE_DIR
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
unset OPENAI_API_KEY ANTHROPIC_API_KEY GEMINI_API_KEY
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
# run NAME ARGS...: the example's exit status; its output in $dir/NAME.out
run() {
    local name=$1
    shift
    timeout 60 "$WEFT" --log-level warn run "$@" > "$dir/$name.out" 2> "$dir/$name.err"
}
has() { grep -q -- "$2" "$dir/$1.out"; }

check "the flagship example runs" run flagship "$src/examples/fallback_and_race.lua"
check "... a fallback answered by the second provider, with its route" has flagship "smart: anthropic answered"
check "... a hedge won by the fast provider, the slow one cancelled" has flagship "cancelled (lost the race)"
check "... fallback over hedge" has flagship "resilient: openai answered"
# a decision each example must have made (its reason, as counted)
declare -A reason=([fallback]=rate_limited [hedge]=hedge_budget_exhausted [balance]=lowest_latency
                   [router]=default [priority]=high_priority)
for p in fallback hedge balance router priority; do
    check "examples/policies/$p.lua runs" run "policy_$p" "$src/examples/policies/$p.lua"
    check "... and shows its decisions (${reason[$p]})" has "policy_$p" "${reason[$p]}"
done
# the gateway example: weft serve with examples/gateway/{config,hooks}.lua in front of the mock
gateway_example() {
    local murl gurl mpid gpid ok=1
    "$WEFT" mock --port 0 > "$dir/gwm.url" 2> /dev/null &
    mpid=$!
    for _ in $(seq 100); do murl=$(head -1 "$dir/gwm.url"); [ -n "$murl" ] && break; sleep 0.05; done
    MOCK_URL=$murl OPENAI_API_KEY=sk-weft-mock ANTHROPIC_API_KEY=sk-ant-weft-mock TEAM_KEY=team-key-123 \
        CI_KEY=ci-key-456 "$WEFT" -l warn serve --config "$src/examples/gateway/config.lua" \
        --script "$src/examples/gateway/hooks.lua" --port 0 > "$dir/gw.url" 2> "$dir/gw.err" &
    gpid=$!
    for _ in $(seq 100); do gurl=$(head -1 "$dir/gw.url"); [ -n "$gurl" ] && break; sleep 0.05; done
    curl -s "$gurl/v1/chat/completions" -H "authorization: Bearer team-key-123" \
        -d '{"model": "smart", "messages": [{"role": "user", "content": "Hello"}]}' > "$dir/gw1.out"
    grep -q '"content":"echo: Hello"' "$dir/gw1.out" || ok=0
    curl -s "$gurl/v1/messages" -H "x-api-key: team-key-123" -d '{"model": "fast", "max_tokens": 50,
        "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111"}]}' > "$dir/gw2.out"
    grep -q 'does not forward card numbers' "$dir/gw2.out" || ok=0
    curl -s "$gurl/v1/chat/completions" -H "authorization: Bearer ci-key-456" \
        -d '{"model": "claude", "messages": [{"role": "user", "content": "Hello"}]}' > "$dir/gw3.out"
    grep -q 'model_not_found' "$dir/gw3.out" || ok=0
    kill -TERM $gpid; wait $gpid || ok=0
    kill $mpid; wait $mpid 2> /dev/null
    [ $ok = 1 ]
}
check "examples/gateway: weft serve answers, refuses a card number, keeps CI to its models" gateway_example
for c in openai anthropic gemini fallback; do
    check "switch_by_config with examples/config/$c.lua" \
        run "config_$c" --config "$src/examples/config/$c.lua" "$src/examples/switch_by_config.lua"
    check "... answered" has "config_$c" "answered by"
done
check "summarize_docs: 500 documents through map, router, fallback and cache" \
    run summarize "$src/examples/summarize_docs.lua"
check "... all summarized" has summarize "500 documents: 500 summarized, 0 failed"
check "... the repeats from the cache" has summarize "from the cache          98"
for p in openai anthropic; do
    check "batch.lua $p: 200 tickets through the provider's batch API" run "batch_$p" "$src/examples/batch.lua" "$p"
    check "... every one answered, at half price" grep -qE "200 of 200 answered, 0 failed" "$dir/batch_$p.out"
    check "... at half the price one by one" awk '/at the batch price/ {
        gsub(/[$()]/, ""); b = $7; o = $NF; ok = (b > 0 && (o - 2 * b) < 2e-6 && (2 * b - o) < 2e-6) }
        END { exit !ok }' "$dir/batch_$p.out"
done
for e in complete stream embed fastest_answer; do
    check "examples/$e.lua runs" run "$e" "$src/examples/$e.lua"
done
check "the shipped policy plugins pass weft check" \
    timeout 60 "$WEFT" check "$src"/plugins/policies/*.lua > "$dir/check.out" 2>&1
check "... each driven over simulated targets" \
    [ "$(grep -c "every target fails (transient)" "$dir/check.out")" = 7 ]
if [ "$fails" -gt 0 ]; then
    for f in "$dir"/*.err; do [ -s "$f" ] && { echo "# $(basename "$f"):"; sed 's/^/#   /' "$f" | tail -5; }; done
fi
echo "1..$n"
[ "$fails" = 0 ]
