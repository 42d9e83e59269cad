#!/bin/bash
# mtls_test.sh: mutual TLS against `openssl s_server` on 127.0.0.1 that
# requires a client certificate; certificates made here with openssl.
set -u
: "${WEFT:?run through ctest}"
command -v openssl > /dev/null || { echo "openssl missing: run scripts/deps.sh"; exit 1; }
dir=$(mktemp -d)
srv_pid=
trap '[ -n "$srv_pid" ] && kill $srv_pid 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
umask 077
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=weft mtls CA" 2> /dev/null
openssl req $ec -keyout srv.key -out srv.csr -subj "/CN=localhost" 2> /dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\n" > srv.ext
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile srv.ext 2> /dev/null
openssl req $ec -keyout client.key -out client.csr -subj "/CN=weft client" 2> /dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 2> /dev/null
openssl req -x509 $ec -keyout other.key -out other.pem -days 2 -subj "/CN=intruder" 2> /dev/null
for _ in $(seq 20); do
    port=$((10000 + RANDOM % 20000))
    openssl s_server -quiet -accept "127.0.0.1:$port" -cert srv.pem -key srv.key -CAfile ca.pem \
        -Verify 1 -verify_return_error -www > s_server.log 2>&1 &
    srv_pid=$!
    up=
    for _ in $(seq 30); do
        if curl -fsS -o /dev/null --cacert ca.pem --cert client.pem --key client.key "https://127.0.0.1:$port/"; then up=1; break; fi
        kill -0 $srv_pid 2> /dev/null || break
        sleep 0.1
    done
    [ -n "$up" ] && break
    kill $srv_pid 2> /dev/null; wait $srv_pid 2> /dev/null
    srv_pid=
done
[ -n "$srv_pid" ] || { echo "could not start openssl s_server"; cat s_server.log; exit 1; }
cd "$OLDPWD"
"$WEFT" run mtls_check.lua "https://127.0.0.1:$port/" "$dir"
