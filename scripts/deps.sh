#!/bin/sh
# Install weft's build and test dependencies from Debian's packages.
# Idempotent: when every package is already installed it does nothing.
# luajit2 and wrk must be in one apt transaction: wrk alone pulls in
# upstream LuaJIT, which conflicts with OpenResty's libluajit2-5.1-dev.
set -eu

PKGS="build-essential cmake pkg-config \
luajit2 libluajit2-5.1-dev lua-cjson lua-cjson-dev libev-dev \
libcurl4-openssl-dev libhiredis-dev libedit-dev libhttp-parser-dev \
redis-server nginx wrk hyperfine prometheus lua-busted \
valgrind strace openssl ca-certificates tmux clang"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
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
