#!/bin/bash
# mock_cli_test.sh: `weft mock` from the command line: URL on the first
# line, --key, --profile (limits, keys, context windows, strict models), the
# admin endpoint, bad arguments and profiles (one line, exit 2), --help's
# fault rule format and default keys, --strict-models, --max-connections, a
# garbage-hit server that keeps serving, SIGINT -> 130.
set -u
: "${WEFT:?run through ctest}" "${WEFT_TEST_HELPERS:?run through ctest}"
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
start() { # args...
    : > "$dir/url" # (emptied before: never the URL of the mock stopped before)
    "$WEFT" mock "$@" > "$dir/url" 2> "$dir/err" &
    pid=$!
    url=
    # until it prints its URL or exits (no deadline: a loaded machine is slow)
    while :; do
        url=$(head -1 "$dir/url")
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
}
stop() { kill -INT "$pid"; wait "$pid"; rc=$?; pid=; }

check "--help prints usage" bash -c "'$WEFT' mock --help | grep -q -- '--profile'"
check "an unknown flag exits 2" bash -c "'$WEFT' mock --nope 2>/dev/null; [ \$? = 2 ]"
check "a bad port exits 2" bash -c "'$WEFT' mock --port 99999 2>/dev/null; [ \$? = 2 ]"

start --port 0 --key my-test-key
check "the URL is the first line on stdout" bash -c "[[ '$url' =~ ^http://127\.0\.0\.1:[0-9]+$ ]]"
chat='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
check "--key sets the expected key" bash -c "curl -fsS '$url/v1/chat/completions' -H 'Authorization: Bearer my-test-key' -d '$chat' | grep -q '\"content\":\"echo: hi\"'"
check "the default key is refused then" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer sk-weft-mock' -d '$chat') = 401 ]"
printf 'BLAH \x00\x01\r\n\r\n' | "$WEFT_TEST_HELPERS/rawclient" "${url##*:}" > "$dir/garbage"
check "garbage gets 400" grep -q '^HTTP/1.1 400' "$dir/garbage"
curl -fsS -X POST "$url/_mock/faults" -d '[{"sequence":[503]}]' > /dev/null
check "faults set through the admin endpoint apply" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer my-test-key' -d '$chat') = 503 ]"
check "stats count what arrived" bash -c "curl -fsS '$url/_mock/stats' | grep -q '\"requests\":3'"
check "the request log never holds the key" bash -c "! curl -fsS '$url/_mock/requests' | grep -q my-test-key"
stop
check "SIGINT stops it with 130" [ "$rc" = 130 ]

cat > "$dir/profile.lua" <<'LUA'
return { limits = { rpm = 1 }, keys = { openai = "from-profile" }, context = { ["gpt-4o"] = 5 } }
LUA
start --port 0 --profile "$dir/profile.lua"
code() { curl -s -o /dev/null -w '%{http_code}' "$url/v1/chat/completions" -H 'Authorization: Bearer from-profile' -d "$chat"; }
check "--profile sets keys and limits (rpm=1: 200 then 429)" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer from-profile' -d '$chat') = 200 ] && [ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer from-profile' -d '$chat') = 429 ]"
long='{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'
curl -s -w '\n%{http_code}' "$url/v1/chat/completions" -H 'Authorization: Bearer from-profile' -d "$long" > "$dir/long"
check "--profile sets context windows (a longer prompt: 400 context_length_exceeded, before the rpm)" \
    bash -c "tail -1 '$dir/long' | grep -qx 400 && grep -q '\"code\":\"context_length_exceeded\"' '$dir/long'"
check "stats count closed_early" bash -c "curl -fsS '$url/_mock/stats' | grep -q '\"closed_early\":0'"
stop
echo 'return 42' > "$dir/bad.lua"
check "a profile that is not a table is refused (exit 2)" bash -c "'$WEFT' mock --profile '$dir/bad.lua' > /dev/null 2>&1; [ \$? = 2 ]"
echo 'return { context = { ["gpt-4o"] = 0 } }' > "$dir/badctx.lua"
check "a context window that is not a positive integer is refused" \
    bash -c "'$WEFT' mock --profile '$dir/badctx.lua' 2>&1 > /dev/null | grep -q 'must be a positive integer'"
check "--help names the context option and the closed_early stat" \
    bash -c "'$WEFT' mock --help | grep -q 'context = ' && '$WEFT' mock --help | grep -q closed_early"

# Bad profiles: `weft mock: <message>` on one line, exit 2, nothing of weft's
# internals (no traceback, no path into lua/weft/).
refused() { # name file expected-text
    "$WEFT" mock --profile "$2" > /dev/null 2> "$dir/refused"
    local rc=$?
    [ "$rc" = 2 ] || { echo "# exit $rc"; cat "$dir/refused"; return 1; }
    [ "$(wc -l < "$dir/refused")" = 1 ] || { cat "$dir/refused"; return 1; }
    grep -q '^weft mock: ' "$dir/refused" || { cat "$dir/refused"; return 1; }
    grep -qF -- "$3" "$dir/refused" || { echo "# wanted: $3"; cat "$dir/refused"; return 1; }
    ! grep -qE 'traceback|mock/init\.lua|mock/cli\.lua|lua/weft/|bad argument' "$dir/refused" || { cat "$dir/refused"; return 1; }
}
cat > "$dir/status.lua" <<'LUA'
return { faults = { { dialect = "openai", probability = 1.0, status = 503 } } }
LUA
check "a fault rule with an unknown key: named, with the accepted keys (issue 17)" \
    refused status "$dir/status.lua" 'faults: rule 1: unknown key "status"; a rule takes dialect, model, endpoint, sequence, probability, latency, retry_after, stream_delay_ms, bytes'
check "... and how to answer with a status" refused status "$dir/status.lua" 'probability = { [503] = 1.0 }'
echo 'return { faults = { { dialect = "openai", probability = 1.0 } } }' > "$dir/prob.lua"
check "probability that is not a table: the accepted form with an example" \
    refused prob "$dir/prob.lua" 'rule 1: probability must map faults to chances from 0 to 1, e.g. probability = { [503] = 1.0 }'
echo 'return { faults = { { sequence = { 503 } }, { latency = "slow" } } }' > "$dir/lat.lua"
check "a latency of the wrong type names rule 2 and the forms" refused lat "$dir/lat.lua" 'rule 2: latency must be milliseconds before answering: latency = 250, latency = { min = 100, max = 900 }'
echo 'return { limit = { rpm = 1 } }' > "$dir/limit.lua"
check "an unknown option is named (limit for limits)" refused limit "$dir/limit.lua" 'unknown option "limit"; accepted: host, port, keys, limits'
echo 'return { limits = { rpn = 1 } }' > "$dir/rpn.lua"
check "an unknown limit is named" refused rpn "$dir/rpn.lua" 'limits: unknown key "rpn"'
check "a profile that is not a table: one line" refused bad "$dir/bad.lua" 'must return a table of options, got number'
echo 'error("boom")' > "$dir/boom.lua"
check "a profile that fails: its own message, no traceback" refused boom "$dir/boom.lua" 'boom'
echo 'return {' > "$dir/syntax.lua"
check "a profile that does not parse" refused syntax "$dir/syntax.lua" 'cannot load profile'

check "--help documents the fault rule format with examples" bash -c "'$WEFT' mock --help > '$dir/help' \
    && grep -qF 'probability = { [503] = 0.2, reset = 0.1 }' '$dir/help' && grep -qF 'sequence = { 429, 500, \"ok\" }' '$dir/help' \
    && grep -qF 'latency = 250' '$dir/help' && grep -qF '{ median = 300, tail = 1.5, cap = 5000 }' '$dir/help' \
    && grep -qF 'retry_after = 2' '$dir/help' && grep -qF 'stream_delay_ms' '$dir/help' && grep -qF 'bytes = ' '$dir/help' \
    && grep -qF 'return { faults = { { dialect = \"openai\", probability = { [503] = 1.0 } } } }' '$dir/help' \
    && grep -qF 'mid_stream_error' '$dir/help'"
check "--help names each dialect's default key" bash -c "grep -qF 'Authorization: Bearer sk-weft-mock' '$dir/help' \
    && grep -qF 'x-api-key: sk-ant-weft-mock' '$dir/help' && grep -qF 'x-goog-api-key: weft-mock-key' '$dir/help'"
check "--help documents --strict-models" bash -c "grep -qF -- '--strict-models' '$dir/help' && grep -qF 'strict_models = true' '$dir/help'"

# POST /_mock/faults refuses a wrong rule with 400 {"error"} (no paths), --strict-models
start --port 0 --strict-models
curl -s -w '\n%{http_code}' -X POST "$url/_mock/faults" -d '[{"dialect":"openai","probability":1.0,"status":503}]' > "$dir/faults"
check "POST /_mock/faults: a wrong rule is a 400 naming it, without internals" bash -c "tail -1 '$dir/faults' | grep -qx 400 \
    && grep -qF 'rule 1: unknown key' '$dir/faults' && ! grep -qE '\.lua:[0-9]|traceback' '$dir/faults'"
check "POST /_mock/faults: invalid JSON said once" bash -c "curl -s -X POST '$url/_mock/faults' -d '{oops' | grep -q '\"error\":\"invalid JSON: ' \
    && ! curl -s -X POST '$url/_mock/faults' -d '{oops' | grep -q 'invalid JSON: invalid JSON'"
check "the wrong rule did not apply" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer sk-weft-mock' -d '$chat') = 200 ]"
nope='{"model":"gpt-nope","messages":[{"role":"user","content":"hi"}]}'
curl -s -w '\n%{http_code}' "$url/v1/chat/completions" -H 'Authorization: Bearer sk-weft-mock' -d "$nope" > "$dir/nope"
openai_404() {
    tail -1 "$dir/nope" | grep -qx 404 && grep -qF '"code":"model_not_found"' "$dir/nope" \
        && grep -qF 'The model `gpt-nope` does not exist or you do not have access to it.' "$dir/nope"
}
check "--strict-models: an unknown OpenAI model gets 404 model_not_found" openai_404
check "--strict-models: an unknown Anthropic model gets 404 not_found_error" bash -c "curl -s -w '\n%{http_code}' '$url/v1/messages' \
    -H 'x-api-key: sk-ant-weft-mock' -H 'anthropic-version: 2023-06-01' \
    -d '{\"model\":\"claude-nope\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' > '$dir/an' \
    && tail -1 '$dir/an' | grep -qx 404 && grep -qF 'model: claude-nope' '$dir/an'"
check "--strict-models: a known model is answered" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer sk-weft-mock' -d '$chat') = 200 ]"
port=${url##*:}
check "a port in use: one line, exit 1, no traceback" bash -c "'$WEFT' mock --port $port > /dev/null 2> '$dir/inuse'; rc=\$?; [ \$rc = 1 ] \
    && [ \$(wc -l < '$dir/inuse') = 1 ] && grep -q '^weft mock: cannot listen' '$dir/inuse' && ! grep -q traceback '$dir/inuse'"
stop
cat > "$dir/strict.lua" <<'LUA'
return { strict_models = true, models = { "my-model" } }
LUA
start --port 0 --profile "$dir/strict.lua"
check "a profile's strict_models and models" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer sk-weft-mock' -d '$nope') = 404 ] \
    && [ \$(curl -s -o /dev/null -w '%{http_code}' '$url/v1/chat/completions' -H 'Authorization: Bearer sk-weft-mock' -d '{\"model\":\"my-model\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}') = 200 ]"
stop

check "--help documents --max-connections" bash -c "grep -qF -- '--max-connections N' '$dir/help' && grep -qF 'max_connections = 10000' '$dir/help'"
check "a bad --max-connections exits 2" bash -c "'$WEFT' mock --max-connections 0 2>/dev/null; [ \$? = 2 ]"
echo 'return { max_connections = 0 }' > "$dir/maxconn.lua"
check "a profile's max_connections is checked" refused maxconn "$dir/maxconn.lua" 'max_connections must be an integer from 1 to 1000000'
# --max-connections reaches the server: with 2, both connections may come
# from this address (not a quarter), and a third is closed at once. The
# server accepts in the order connections were made, so the stats request
# made after both hanging ones have connected is the third.
start --port 0 --max-connections 2
curl -fsS -X POST "$url/_mock/faults" -d '[{"sequence":["hang","hang"]}]' > /dev/null
hangs=()
for h in 1 2; do
    curl -sv -m 600 "$url/v1/chat/completions" -H 'Authorization: Bearer sk-weft-mock' -d "$chat" > /dev/null 2> "$dir/hang$h" &
    hangs+=($!)
done
for h in 1 2; do
    while ! grep -q '^\* Connected to' "$dir/hang$h" && kill -0 "${hangs[h - 1]}" 2>/dev/null; do sleep 0.05; done
done
held_and_full() {
    ! curl -s "$url/_mock/stats" > "$dir/third" || { echo "# answered: $(cat "$dir/third")"; return 1; }
    kill -0 "${hangs[0]}" 2>/dev/null && kill -0 "${hangs[1]}" 2>/dev/null
}
check "--max-connections: one address holds all of them, one more is closed" held_and_full
kill "${hangs[@]}" 2>/dev/null; wait "${hangs[@]}" 2>/dev/null
stop
echo "1..$n"
[ "$fails" = 0 ]
