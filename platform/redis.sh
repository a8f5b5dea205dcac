#!/usr/bin/env bash
# A throwaway Redis for development and tests, on loopback only.
#   platform/redis.sh start DIR [PORT]  -> prints the URL
#   platform/redis.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory} port=${3:-63799}
case "$cmd" in
start)
  command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 3; }
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "redis://127.0.0.1:$port/0"
  ;;
stop)
  [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
  ;;
*) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
