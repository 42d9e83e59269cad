#!/bin/bash
# tls_test.sh: weft.http.request against a real TLS server (nginx with a
# certificate from a CA made here with openssl, HTTP/2 enabled) on
# 127.0.0.1: verification always on, CA file configurable, HTTP/2 used.
set -u
: "${WEFT:?run through ctest}"
command -v nginx > /dev/null && command -v openssl > /dev/null || { echo "nginx/openssl missing: run scripts/deps.sh"; exit 1; }
dir=$(mktemp -d)
nginx_pid=
trap '[ -n "$nginx_pid" ] && kill $nginx_pid 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj "/CN=weft test CA" 2> /dev/null
openssl req -x509 $ec -keyout other.key -out other.pem -days 2 -subj "/CN=other CA" 2> /dev/null
openssl req $ec -keyout srv.key -out srv.csr -subj "/CN=localhost" 2> /dev/null
printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" > ext.cnf
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
    -extfile ext.cnf 2> /dev/null || { echo "openssl failed"; exit 1; }
mkdir tmp
for _ in $(seq 20); do
    # below the ephemeral range (32768+), where client sockets could hold it
    port=$((10000 + RANDOM % 20000))
    cat > nginx.conf <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $dir/srv.pem;
        ssl_certificate_key $dir/srv.key;
        location / { default_type text/plain; return 200 "tls ok\n"; }
    }
}
CONF
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
    nginx_pid=$!
    up=
    for _ in $(seq 50); do
        if curl -fsk -o /dev/null "https://127.0.0.1:$port/"; then up=1; break; fi
        kill -0 $nginx_pid 2> /dev/null || break
        sleep 0.1
    done
    [ -n "$up" ] && break
    kill $nginx_pid 2> /dev/null; wait $nginx_pid 2> /dev/null
    nginx_pid=
done
[ -n "$nginx_pid" ] || { echo "could not start nginx"; cat error.log; exit 1; }
cd "$OLDPWD"
"$WEFT" run tls_check.lua "https://127.0.0.1:$port/" "$dir/ca.pem" "$dir/other.pem"
