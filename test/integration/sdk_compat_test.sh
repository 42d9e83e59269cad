#!/bin/bash
# sdk_compat_test.sh: the providers' official npm SDKs (openai,
# @anthropic-ai/sdk, @google/genai) against `weft mock`: chat/messages/
# generateContent, streaming, embeddings, models, error parsing, and the
# batch APIs: OpenAI Files (multipart upload, retrieve, list, content,
# delete) + Batches (create, poll to completed, output and error files,
# list, cancel) and Anthropic Message Batches (create, poll to ended, JSONL
# results, list, cancel, delete), with the mock's batch time compressed
# (POST /_mock/batch). The SDKs are installed into test/compat/node_modules
# (ignored by git) on first run.
# Skipped (exit 77) only when Node.js or npm is missing.
set -u
: "${WEFT:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "SKIP: Node.js/npm not found; the SDK compatibility test needs them"
    exit 77
fi
compat="$WEFT_SOURCE_DIR/test/compat"
bash "$compat/install.sh" || exit 1
dir=$(mktemp -d)
mock_pid=
trap '[ -n "$mock_pid" ] && kill $mock_pid 2>/dev/null; rm -rf "$dir"' EXIT
"$WEFT" mock --port 0 > "$dir/url" 2> "$dir/err" &
mock_pid=$!
for _ in $(seq 100); do url=$(head -1 "$dir/url"); [ -n "$url" ] && break; sleep 0.05; done
[ -n "$url" ] || { echo "weft mock did not start"; cat "$dir/err"; exit 1; }
echo "# weft mock at $url; SDKs: $(cd "$compat" && node -e 'const fs = require("fs"); for (const p of ["openai", "@anthropic-ai/sdk", "@google/genai"]) process.stdout.write(p + "@" + JSON.parse(fs.readFileSync("node_modules/" + p + "/package.json")).version + " ")')"
timeout 120 node "$compat/sdk_compat.mjs" "$url"
