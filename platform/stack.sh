#!/usr/bin/env bash
# The production-like stack on this machine: PostgreSQL, Redis, migrations, demo data,
# gunicorn with several worker processes sharing Socket.IO through Redis, and a TLS
# front (nginx, platform/tls.sh) that Renkei trusts for one hop.
#   bash platform/stack.sh            # https://127.0.0.1:8443 until Ctrl-C
# Data and keys live in instance/stack/: the master and session keys are made there once
# (0600) unless RENKEI_MASTER_KEY(_FILE) / RENKEI_SECRET_KEY are given (platform/KEYS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${RENKEI_STACK_DIR:-$PWD/instance/stack}
mkdir -p "$dir"; chmod 777 "$dir"
pg_url=$(bash platform/postgres.sh start "$dir/pg" "${RENKEI_PG_PORT:-54329}")
redis_url=$(bash platform/redis.sh start "$dir/redis" "${RENKEI_REDIS_PORT:-63799}")
trap 'bash platform/tls.sh stop "$dir/tls"; bash platform/redis.sh stop "$dir/redis"; bash platform/postgres.sh stop "$dir/pg"' EXIT
base=${pg_url%/*}
psql "${base/+psycopg/}/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname='renkei'" | grep -q 1 \
  || psql "${base/+psycopg/}/postgres" -qc "CREATE DATABASE renkei"
for key in master.key secret.key audit.key; do
  [ -s "$dir/$key" ] || (umask 077; openssl rand -base64 32 > "$dir/$key")
done
[ -n "${RENKEI_MASTER_KEY:-}" ] || export RENKEI_MASTER_KEY_FILE=${RENKEI_MASTER_KEY_FILE:-$dir/master.key}
export RENKEI_AUDIT_KEY_FILE=${RENKEI_AUDIT_KEY_FILE:-$dir/audit.key}
export RENKEI_SECRET_KEY=${RENKEI_SECRET_KEY:-$(cat "$dir/secret.key")}
export RENKEI_DATABASE_URL="$base/renkei" RENKEI_REDIS_URL="$redis_url"
export RENKEI_WORKERS=${RENKEI_WORKERS:-2} RENKEI_PORT=${RENKEI_PORT:-8000} RENKEI_TRUSTED_PROXIES=1
python3 -m flask --app wsgi init-db
python3 -m flask --app wsgi seed-demo
front=$(bash platform/tls.sh start "$dir/tls" "${RENKEI_HTTPS_PORT:-8443}" "$RENKEI_PORT")
echo "Renkei: $front  ($RENKEI_WORKERS workers, PostgreSQL, Redis; certificate $dir/tls/cert.pem)"
python3 -m gunicorn -c platform/gunicorn.conf.py wsgi:app
