#!/bin/bash
# deps_script_test.sh: scripts/deps.sh installs what each README command
# needs: `build` (make example) only the build packages, `test` (make
# test) those and the test tools, in one apt transaction; nothing when all
# are present. Runs it against stand-ins for dpkg-query, apt-get and sudo.
set -u
: "${WEFT_SOURCE_DIR:?run through ctest}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}
mkdir "$dir/bin"
# nothing installed, unless ALL_PRESENT is set
cat > "$dir/bin/dpkg-query" <<'SH'
#!/bin/sh
[ -n "${ALL_PRESENT:-}" ] && echo "install ok installed"
exit 0
SH
printf '#!/bin/sh\necho "$@" >> "%s/apt.log"\n' "$dir" > "$dir/bin/apt-get"
printf '#!/bin/sh\n"$@"\n' > "$dir/bin/sudo"
printf '#!/bin/sh\necho 1000\n' > "$dir/bin/id"
chmod +x "$dir/bin/"*
run() { PATH="$dir/bin:$PATH" sh "$WEFT_SOURCE_DIR/scripts/deps.sh" "$@" > "$dir/out" 2>&1; }

run build
check "build: installs" grep -q "install .*libluajit2-5.1-dev" "$dir/apt.log"
check "... the build packages only (no test tools)" sh -c "! grep -qE 'valgrind|lua-busted|redis-server|wrk|nginx' '$dir/apt.log'"
rm -f "$dir/apt.log"
run test
check "test: installs the test tools" grep -qE "install .*lua-busted.*valgrind" "$dir/apt.log"
check "... with luajit2 in the same transaction as wrk" grep -qE "install .*luajit2 .*wrk" "$dir/apt.log"
rm -f "$dir/apt.log"
ALL_PRESENT=1 run test
check "all present: nothing to do" sh -c "[ ! -e '$dir/apt.log' ] && grep -q 'all packages present' '$dir/out'"
run bogus
check "an unknown mode: usage, exit 2" sh -c "[ $? = 2 ] && grep -q usage '$dir/out'"
echo "1..$n"
[ "$fails" = 0 ]
