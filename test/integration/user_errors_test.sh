#!/bin/bash
# user_errors_test.sh: a script's mistakes are shown at the user's code:
# a weft.configure error names the file and line once; a failed script's
# traceback stops at the user's frames (weft's own Lua frames only with
# WEFT_LOG=debug).
set -u
: "${WEFT:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
printf 'weft.configure { providers = { openai = { timeout = "x" } } }\n' > "$dir/conf.lua"
timeout 20 "$WEFT" run "$dir/conf.lua" 2> "$dir/conf.err"
check "a configure error exits 1" [ $? = 1 ]
check "... names the file and line once" grep -q "^weft: $dir/conf.lua:1: config: providers.openai.timeout: must be a number" "$dir/conf.err"
check "... not twice" [ "$(grep -o "conf.lua:1:" "$dir/conf.err" | wc -l)" -le 2 ]
check "... no frame of weft's own library" sh -c "! grep -q 'lua/weft/' '$dir/conf.err'"

printf 'local m = weft.model("openai/gpt-4o-mini")\nm:complete({ bogus = 1 })\n' > "$dir/req.lua"
timeout 20 "$WEFT" run "$dir/req.lua" 2> "$dir/req.err"
check "a bad request exits 1" [ $? = 1 ]
check "... says what is wrong" grep -q "unknown request field 'bogus'" "$dir/req.err"
check "... the traceback shows the user's line" grep -q "req.lua:2: in main chunk" "$dir/req.err"
check "... and none of weft's frames" sh -c "! grep -q 'lua/weft/' '$dir/req.err'"
WEFT_LOG=debug timeout 20 "$WEFT" run "$dir/req.lua" 2> "$dir/req_debug.err"
check "with WEFT_LOG=debug weft's frames are shown" grep -q "lua/weft/_pipeline.lua" "$dir/req_debug.err"
if [ "$fails" -gt 0 ]; then for f in "$dir"/*.err; do echo "# $f:"; sed 's/^/#   /' "$f"; done; fi
echo "1..$n"
[ "$fails" = 0 ]
