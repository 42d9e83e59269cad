#!/bin/bash
# mock_cli_test.sh: `weft mock` from the command line: URL on the first
# line, --key, --profile (limits, keys, context windows), the admin endpoint, bad
# arguments, a garbage-hit server that keeps serving, SIGINT -> 130.
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
    "$WEFT" mock "$@" > "$dir/url" 2> "$dir/err" &
    pid=$!
    url=
    for _ in $(seq 100); do url=$(head -1 "$dir/url"); [ -n "$url" ] && break; sleep 0.05; done
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
check "a profile that is not a table is refused" bash -c "'$WEFT' mock --profile '$dir/bad.lua' > /dev/null 2>&1; [ \$? = 1 ]"
echo 'return { context = { ["gpt-4o"] = 0 } }' > "$dir/badctx.lua"
check "a context window that is not a positive integer is refused" \
    bash -c "'$WEFT' mock --profile '$dir/badctx.lua' 2>&1 > /dev/null | grep -q 'must be a positive integer'"
check "--help names the context option and the closed_early stat" \
    bash -c "'$WEFT' mock --help | grep -q 'context = ' && '$WEFT' mock --help | grep -q closed_early"
echo "1..$n"
[ "$fails" = 0 ]
