#!/bin/bash
# install.sh: the providers' SDKs into test/compat/node_modules (ignored by
# git), once. The SDK tests run in parallel under ctest and both need them:
# the check and the install happen under one lock, so the second test waits
# for the first's install instead of racing it in the same directory.
set -u
compat=$(cd "$(dirname "$0")" && pwd)
have() {
    [ -d "$compat/node_modules/openai" ] && [ -d "$compat/node_modules/@anthropic-ai/sdk" ] &&
        [ -d "$compat/node_modules/@google/genai" ]
}
exec 9> "$compat/node_modules.lock"
flock -w 600 9 || { echo "install.sh: could not take $compat/node_modules.lock"; exit 1; }
have && exit 0
echo "# installing the SDKs into $compat/node_modules"
(cd "$compat" && timeout 300 npm install --no-audit --no-fund --no-package-lock > /dev/null) ||
    { echo "npm install failed"; exit 1; }
have || { echo "npm install did not install the SDKs"; exit 1; }
