#!/bin/sh
# Install weft's dependencies from Debian's packages:
#   scripts/deps.sh build   what building weft and `make example` need
#   scripts/deps.sh test    that, plus the test and benchmark tools
#                           (`make test`: busted, valgrind, redis, nginx, ...)
# Idempotent: when every package is already installed it does nothing.
# Installing needs root (or sudo) and the network (apt). luajit2 and wrk
# must be in one apt transaction: wrk alone pulls in upstream LuaJIT, which
# conflicts with OpenResty's libluajit2-5.1-dev; so `test` always names
# the build packages too.
set -eu

BUILD_PKGS="build-essential cmake pkg-config \
luajit2 libluajit2-5.1-dev lua-cjson lua-cjson-dev libev-dev \
libcurl4-openssl-dev libssl-dev libhiredis-dev libedit-dev libhttp-parser-dev ca-certificates"
TEST_PKGS="redis-server nginx wrk hyperfine prometheus lua-busted \
valgrind strace openssl tmux clang"

case "${1:-test}" in
    build) PKGS=$BUILD_PKGS ;;
    test) PKGS="$BUILD_PKGS $TEST_PKGS" ;;
    *) echo "usage: scripts/deps.sh [build|test]" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present (${1:-test})"
    exit 0
fi

echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps: missing packages:$missing" >&2
    echo "deps: run this script as root (or install sudo) to install them" >&2
    exit 1
fi

$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PKGS
