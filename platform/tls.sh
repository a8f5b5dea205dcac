#!/usr/bin/env bash
# A TLS front (nginx from Debian) before Renkei, with a locally generated certificate.
#   bash platform/tls.sh start DIR HTTPS_PORT UPSTREAM_PORT   # prints https://127.0.0.1:PORT
#   bash platform/tls.sh stop DIR
# The certificate is self-signed for 127.0.0.1 and localhost (tests and trials); in
# production put the organisation's certificate in DIR/cert.pem and DIR/key.pem.
set -euo pipefail
cmd=$1; dir=$2
here="$(cd "$(dirname "$0")" && pwd)"
nginx=$(command -v nginx || echo /usr/sbin/nginx)
case "$cmd" in
  start)
    port=$3; upstream=$4
    mkdir -p "$dir"/tmp/{body,proxy,fastcgi,uwsgi,scgi}; chmod -R 777 "$dir/tmp"
    if [ ! -s "$dir/cert.pem" ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
      chmod 600 "$dir/key.pem"
    fi
    # The body limit follows the app's (RENKEI_ATTACHMENT_MAX_BYTES, 20 MiB by default) plus
    # room for the multipart framing: larger is refused by the app itself with a problem,
    # not by nginx's HTML 413 that the app never sees or logs.
    body=$(( ${RENKEI_ATTACHMENT_MAX_BYTES:-20971520} + 1048576 ))
    sed -e "s#@DIR@#$dir#g" -e "s#@PORT@#$port#g" -e "s#@UPSTREAM@#$upstream#g" -e "s#@BODY@#$body#g" \
      "$here/nginx.conf.template" > "$dir/nginx.conf"
    "$nginx" -c "$dir/nginx.conf" -p "$dir" >/dev/null 2>&1 || { cat "$dir/error.log" >&2; exit 1; }
    echo "https://127.0.0.1:$port"
    ;;
  stop)
    [ -f "$dir/nginx.pid" ] && "$nginx" -c "$dir/nginx.conf" -p "$dir" -s quit 2>/dev/null || true
    ;;
  *) echo "usage: $0 start DIR HTTPS_PORT UPSTREAM_PORT | stop DIR" >&2; exit 2 ;;
esac
