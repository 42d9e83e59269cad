#!/bin/bash
# serve_sdk_test.sh: the official `openai` and `@anthropic-ai/sdk` npm SDKs
# as clients of `weft serve`, which points at `weft mock` with faults
# (test/compat/serve_compat.mjs): chat, streams, tools, embeddings, models,
# typed errors, a call that fails over inside weft, a stream the client
# aborts (the mock must see its connection closed). The virtual keys are
# canaries: afterwards the gateway's log (debug level), its /metrics and
# everything the mock received are grepped for them.
# Skipped (exit 77) only when Node.js or npm is missing.
set -u
: "${WEFT:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "SKIP: Node.js/npm not found; the SDK test needs them"
    exit 77
fi
compat="$WEFT_SOURCE_DIR/test/compat"
bash "$compat/install.sh" || exit 1
dir=$(mktemp -d)
mock_pid= gw_pid=
trap '[ -n "$gw_pid" ] && kill $gw_pid 2>/dev/null; [ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
fail() { echo "not ok - $*"; exit 1; }

cat > "$dir/profile.lua" <<'LUA'
return { faults = {
    { model = "gpt-4.1", probability = { [503] = 1.0 } },          -- the failover's first target is down
    { model = "gpt-3.5-turbo", probability = { [429] = 1.0 }, retry_after = 7 },
    { model = "gpt-4o", stream_delay_ms = 150 },                  -- slow streams, to abort
    { model = "claude-3-opus-latest", stream_delay_ms = 150 },
} }
LUA
"$WEFT" mock --port 0 --profile "$dir/profile.lua" > "$dir/mock.url" 2> "$dir/mock.err" &
mock_pid=$!
for _ in $(seq 100); do mock=$(head -1 "$dir/mock.url"); [ -n "$mock" ] && break; sleep 0.05; done
[ -n "$mock" ] || { cat "$dir/mock.err"; fail "weft mock did not start"; }

export GW_KEY_ALICE="sk-gw-wcanary-Alice7Hq2Zp"
export GW_KEY_BOB="sk-gw-wcanary-Bob4Tn8Wd1"
export MOCK_OPENAI_KEY=sk-weft-mock MOCK_ANTHROPIC_KEY=sk-ant-weft-mock
bob_sha=$(printf %s "$GW_KEY_BOB" | sha256sum | cut -d' ' -f1)
cat > "$dir/gateway.lua" <<LUA
return {
    providers = {
        openai = { base_url = "$mock", secret = "env:MOCK_OPENAI_KEY", retry = { base = 0.01, max_attempts = 2 } },
        anthropic = { base_url = "$mock", secret = "env:MOCK_ANTHROPIC_KEY" },
        openai2 = { plugin = "openai", base_url = "$mock", secret = "env:MOCK_OPENAI_KEY", retry = { max_attempts = 1 } },
        -- the canary as a provider key the mock refuses: the gateway's problem, never shown
        leaky = { plugin = "openai", base_url = "$mock", secret = "env:WEFT_CANARY_KEY", retry = { max_attempts = 1 } },
    },
    models = {
        fast = "openai/gpt-4o-mini",
        claude = { provider = "anthropic", model = "claude-3-5-haiku-latest", max_tokens = 200 },
        emb = "openai/text-embedding-3-small",
        failover = { policy = "fallback", targets = { "openai/gpt-4.1", "fast" } },
        limited = "openai2/gpt-3.5-turbo",
        slow = "openai/gpt-4o",
        slowclaude = "anthropic/claude-3-opus-latest",
        leaky = "leaky/gpt-4o-mini",
    },
    gateway = {
        keys = {
            alice = { secret = "env:GW_KEY_ALICE" },
            bob = { sha256 = "$bob_sha", models = { "fast" } },
        },
    },
}
LUA
"$WEFT" -l debug serve --config "$dir/gateway.lua" --port 0 > "$dir/gw.url" 2> "$dir/gw.err" &
gw_pid=$!
for _ in $(seq 100); do gw=$(head -1 "$dir/gw.url"); [ -n "$gw" ] && break; sleep 0.05; done
[ -n "$gw" ] || { cat "$dir/gw.err"; fail "weft serve did not start"; }
echo "# weft serve at $gw -> weft mock at $mock"

timeout 120 node "$compat/serve_compat.mjs" "$gw" "$mock"
rc=$?

: "${WEFT_CANARY_KEY:?run through ctest}"
code=$(curl -s -o "$dir/leaky.body" -D "$dir/leaky.head" -w '%{http_code}' "$gw/v1/chat/completions" \
    -H "authorization: Bearer $GW_KEY_ALICE" -d '{"model":"leaky","messages":[{"role":"user","content":"x"}]}')
[ "$code" = 502 ] && grep -qi '^x-weft-error-kind: auth' "$dir/leaky.head" ||
    fail "a provider key the upstream refuses: expected 502 kind auth, got $code"
echo "ok - a provider key the upstream refuses is a 502 for the client (kind auth)"
curl -sf "$gw/metrics" > "$dir/metrics" || fail "GET /metrics"
curl -sf "$mock/_mock/requests" > "$dir/mock_requests" || fail "GET /_mock/requests"
grep -q 'weft_gateway_requests_total{key="alice",dialect="openai",endpoint="chat",status="200"}' "$dir/metrics" ||
    fail "per-key request counter missing"
grep -q 'weft_gateway_requests_total{key="unauthenticated"' "$dir/metrics" || fail "unauthenticated requests not counted"
grep -q 'weft_gateway_client_gone_total{key="alice"} [1-9]' "$dir/metrics" || fail "aborted streams not counted"
kill -TERM $gw_pid
wait $gw_pid
grc=$?
gw_pid=
[ $grc -eq 0 ] || { tail -5 "$dir/gw.err"; fail "weft serve exited $grc on SIGTERM"; }
for v in "$GW_KEY_ALICE" "$GW_KEY_BOB" "$bob_sha" sk-not-a-gateway-key sk-ant-not-a-gateway-key; do
    for f in gw.err gw.url metrics mock_requests mock.err; do
        if grep -qF -- "$v" "$dir/$f"; then fail "a client key (or its digest) appears in $f"; fi
    done
done
echo "ok - no client key in the gateway's log, metrics, or what the mock received"
"$WEFT_SOURCE_DIR/scripts/check-canaries.sh" "$dir/gw.err" "$dir/leaky.body" "$dir/leaky.head" "$dir/metrics" ||
    fail "a canary (the provider's key) leaked"
echo "ok - the provider's key (a canary) is in no answer, log line or metric"
exit $rc
