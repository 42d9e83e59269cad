#!/bin/sh
# check-canaries.sh FILE...: fail when any canary secret value from
# test/canaries.txt appears in the given files (test logs, captured output).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
hits=0
for v in $(sed -n 's/^WEFT_CANARY_[A-Z]*=//p' "$here/test/canaries.txt"); do
    for f in "$@"; do
        [ -f "$f" ] || continue
        if grep -qF -- "$v" "$f"; then
            echo "canary check: a secret value leaked into $f:" >&2
            grep -nF -- "$v" "$f" | sed "s/$v/<CANARY>/g" | head -5 >&2
            hits=$((hits + 1))
        fi
    done
done
[ "$hits" = 0 ] && echo "canary check: no secret value in $# file(s)"
[ "$hits" = 0 ]
