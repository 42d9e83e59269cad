#!/bin/bash
# install_test.sh: after `cmake --install`, the installed binary finds its
# Lua library in <prefix>/share/weft, from any working directory.
set -u
: "${WEFT_BUILD_DIR:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cmake --install "$WEFT_BUILD_DIR" --prefix "$dir/prefix" > "$dir/install.log" 2>&1 || { cat "$dir/install.log"; exit 1; }
cd /
out=$(env -u WEFT_HOME "$dir/prefix/bin/weft" -e 'print(package.weft_home, weft.json.encode(weft.json.array()), type(weft.http.request))')
echo "$out"
case "$out" in
    "$dir/prefix/share/weft"*"[]"*function) echo "ok 1 - installed weft finds share/weft"; exit 0 ;;
    *) echo "not ok 1 - installed weft finds share/weft"; exit 1 ;;
esac
