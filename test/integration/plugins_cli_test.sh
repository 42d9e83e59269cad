#!/bin/bash
# plugins_cli_test.sh: the plugin and configuration command line.
#  - `weft check`: the shipped provider plugins and the example plugins
#    (mistral at plugin API 1, deepseek at API 2) pass; a syntax error, a
#    wrong error mapping (against its fixtures), a missing function and an
#    unsupported API version are findings with exit 1; no file is a usage
#    error (exit 2);
#  - `weft run --config FILE --plugins DIR`: a provider configured by file
#    (key from the environment: the canary) served by the example plugin
#    against `weft mock` in its own process, and the API 2 example, whose
#    schema validator refuses a bad value at configure time (exit 2); a bad
#    config file exits 2 naming the file, line and key before the script
#    runs.
set -u
: "${WEFT:?run through ctest}" "${WEFT_CANARY_KEY:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
src=$WEFT_SOURCE_DIR
dir=$(mktemp -d)
mock_pid=
cleanup() { [ -n "$mock_pid" ] && kill "$mock_pid" 2> /dev/null; wait 2> /dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
status() { "$@" > "$dir/out" 2> "$dir/err"; echo $?; }

check "the shipped provider plugins pass weft check" \
    [ "$(status "$WEFT" check "$src"/plugins/providers/*.lua)" = 0 ]
check "... each with its recorded fixtures replayed" \
    [ "$(grep -c 'classify .* -> rate_limited' "$dir/out")" = 4 ]
check "the example third-party plugin passes" \
    [ "$(status "$WEFT" check "$src/examples/plugins/providers/mistral.lua")" = 0 ]
check "... loaded as what it is written for: plugin API 1" grep -q 'provider mistral, version 0.3.0, plugin API 1 ' "$dir/out"
check "the plugin API 2 example passes" \
    [ "$(status "$WEFT" check "$src/examples/plugins/providers/deepseek.lua")" = 0 ]
check "... as plugin API 2, its fixtures replayed" \
    bash -c "grep -q 'provider deepseek, version 0.1.0, plugin API 2 ' '$dir/out' && grep -q 'classify 3 (HTTP 402) -> quota_exhausted' '$dir/out'"

mkdir -p "$dir/bad/providers"
printf 'return {\n  api = 1,\n  name = "x" kind = "provider" }\n' > "$dir/bad/providers/syntax.lua"
check "a syntax error is a finding (exit 1) with file and line" \
    [ "$(status "$WEFT" check "$dir/bad/providers/syntax.lua")" = 1 ]
check "... naming the line" grep -q 'syntax.lua:3:' "$dir/out"

# the mistral plugin with 429 mapped to transient: its fixtures say rate_limited
sed 's/if status == 429 then return "rate_limited" end/if status == 429 then return "transient" end/' \
    "$src/examples/plugins/providers/mistral.lua" > "$dir/bad/providers/mistral.lua"
check "a wrong error mapping fails against the fixtures" \
    [ "$(status "$WEFT" check "$dir/bad/providers/mistral.lua")" = 1 ]
check "... saying which" grep -q 'kind transient, the fixture expects rate_limited' "$dir/out"
printf 'return { api = 1, name = "nodecode", kind = "provider", encode = function() end, classify = function() end }\n' \
    > "$dir/bad/providers/nodecode.lua"
check "a missing function is a finding" [ "$(status "$WEFT" check "$dir/bad/providers/nodecode.lua")" = 1 ]
check "... naming it" grep -q 'must have function decode' "$dir/out"
printf 'return { api = 7, name = "future", kind = "provider" }\n' > "$dir/bad/providers/future.lua"
check "an unsupported plugin API version is refused" [ "$(status "$WEFT" check "$dir/bad/providers/future.lua")" = 1 ]
check "... with the range this weft loads" grep -q 'plugin API version 7 is not supported: this weft loads plugin API 1 to 2' "$dir/out"
check "weft check without files is a usage error" [ "$(status "$WEFT" check)" = 2 ]

# --config and --plugins against weft mock (its key is the canary, from the environment)
"$WEFT" mock --port 0 --key "$WEFT_CANARY_KEY" > "$dir/mock.url" 2> "$dir/mock.err" &
mock_pid=$!
for _ in $(seq 100); do [ -s "$dir/mock.url" ] && break; sleep 0.1; done
url=$(head -1 "$dir/mock.url")
cat > "$dir/config.lua" <<CFG
return {
    providers = {
        mistral = { base_url = "$url", secret = "env:WEFT_TEST_MISTRAL_KEY", limits = { rpm = 600 } },
    },
    models = { main = { provider = "mistral", model = "mistral-small-latest", max_tokens = 50 } },
}
CFG
cat > "$dir/script.lua" <<'LUA'
local r = weft.model("main"):complete("hello from the config")
print(r.text, r.provider, r.model, r.plugin_version, r.attempts)
LUA
WEFT_TEST_MISTRAL_KEY=$WEFT_CANARY_KEY "$WEFT" run --config "$dir/config.lua" --plugins "$src/examples/plugins" \
    "$dir/script.lua" > "$dir/run.out" 2> "$dir/run.err"
check "a provider from --config served by a plugin from --plugins" \
    grep -qx $'echo: hello from the config\tmistral\tmistral-small-latest\t0.3.0\t1' "$dir/run.out"
check "... with no canary in any output" bash -c "! grep -qF -- '$WEFT_CANARY_KEY' '$dir/run.out' '$dir/run.err'"

# the plugin API 2 example the same way; its schema's validators run at configure time
cat > "$dir/config2.lua" <<CFG
return {
    providers = {
        deepseek = { base_url = "$url", secret = "env:WEFT_TEST_DEEPSEEK_KEY", response_format = "json_object" },
    },
    models = { main = { provider = "deepseek", model = "deepseek-chat", max_tokens = 50 } },
}
CFG
WEFT_TEST_DEEPSEEK_KEY=$WEFT_CANARY_KEY "$WEFT" run --config "$dir/config2.lua" --plugins "$src/examples/plugins" \
    "$dir/script.lua" > "$dir/run2.out" 2> "$dir/run2.err"
check "a provider served by the plugin API 2 example" \
    grep -qx $'echo: hello from the config\tdeepseek\tdeepseek-chat\t0.1.0\t1' "$dir/run2.out"
sed -i 's/"json_object"/"xml"/' "$dir/config2.lua"
check "a value its validator refuses exits 2 before the script runs" \
    [ "$(status "$WEFT" run --config "$dir/config2.lua" --plugins "$src/examples/plugins" "$dir/script.lua")" = 2 ]
check "... naming the provider, the key, its line and why" \
    grep -qF "config2.lua:$(grep -n 'response_format' "$dir/config2.lua" | cut -d: -f1): config: providers.deepseek.response_format: must be \"text\" or \"json_object\", got \"xml\"" "$dir/err"

cat > "$dir/bad.lua" <<'CFG'
return {
    providers = {
        openai = {
            limits = {
                rpm = 500,
                tpmm = 1000,
            },
        },
    },
}
CFG
check "a bad config file exits 2 before the script runs" \
    [ "$(status "$WEFT" run --config "$dir/bad.lua" "$dir/script.lua")" = 2 ]
check "... naming file, line and key" \
    grep -qF "weft: $dir/bad.lua:6: config: providers.openai.limits.tpmm: unknown limit" "$dir/err"
check "... and the script did not run" [ ! -s "$dir/out" ]
check "--config without a file is a usage error" [ "$(status "$WEFT" run --config)" = 2 ]

echo "1..$n"
[ "$fails" = 0 ]
