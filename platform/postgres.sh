#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for development and tests, on loopback only.
#   platform/postgres.sh start DIR [PORT]   -> prints the SQLAlchemy URL
#   platform/postgres.sh stop DIR
# Runs the server as the `postgres` system user when called as root (PostgreSQL
# refuses to run as root). Trust authentication: never use this for production.
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start|stop} dir=${2:?data directory} port=${3:-54329}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Tests trade durability for speed; RENKEI_PG_DURABLE=1 keeps PostgreSQL's defaults
# (fsync, synchronous commit), as the fault drill (bench/drill.py) and production need.
durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
[ "${RENKEI_PG_DURABLE:-0}" = 1 ] && durability=""

case "$cmd" in
start)
  [ -x "$PGBIN/initdb" ] || { echo "PostgreSQL 15 server binaries not found in $PGBIN" >&2; exit 3; }
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$PGBIN/initdb" -D "$dir/data" -U renkei --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  fi
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=300" >/dev/null
  echo "postgresql+psycopg://renkei@127.0.0.1:$port/postgres"
  ;;
stop)
  as_owner "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
