"""gunicorn for Renkei: `gunicorn -c platform/gunicorn.conf.py wsgi:app`.

Flask-SocketIO runs in threading mode: each worker is a process with many threads
(one per open websocket plus request threads). Clients use the websocket transport
only, so a connection lives in one worker and no sticky sessions are needed; the
workers (and other machines) share events through Redis (RENKEI_REDIS_URL), which
is required whenever workers > 1. Every worker also runs, from its start, a sealer thread
for the access log (one in the whole deployment holds the lease and seals:
docs/ARCHITECTURE.md, "The access log") and a sender of pushes and mails (they share the
queue in the database: "Push and e-mail")."""
import multiprocessing
import os

bind = f"{os.environ.get('RENKEI_HOST', '127.0.0.1')}:{os.environ.get('RENKEI_PORT', '8000')}"
workers = int(os.environ.get("RENKEI_WORKERS", min(4, multiprocessing.cpu_count())))
worker_class = "gthread"
threads = int(os.environ.get("RENKEI_THREADS", "200"))  # bounds open websockets per worker
# gthread accepts no connection beyond worker_connections (default 1000): with more
# threads than that, open websockets alone would shut out every request.
worker_connections = threads + 100
timeout = 60
graceful_timeout = 30
keepalive = 5  # Retry-After (renkei/work.py) is longer, so an obedient client never races it
# Database connections: each worker has a pool of RENKEI_DB_POOL_SIZE (default 10). Most
# of a worker's threads hold idle websockets and need none; a connection is held only
# while a request runs its queries (never while a body is uploaded). Size it so that
#   machines × workers × RENKEI_DB_POOL_SIZE ≤ PostgreSQL max_connections − 10 (admin, backups);
# with the default max_connections 100: e.g. 2 machines × 4 workers × 10 = 80. A request
# that finds the pool busy for RENKEI_DB_POOL_TIMEOUT seconds gets 503 with Retry-After.
max_requests = 0  # a restart would drop every websocket of the worker
accesslog = "-" if os.environ.get("RENKEI_ACCESS_LOG") else None
errorlog = "-"
# Access log lines hold method, path and status only: identifiers, never content.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
forwarded_allow_ips = os.environ.get("RENKEI_FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):
    if workers > 1 and not os.environ.get("RENKEI_REDIS_URL"):
        raise SystemExit("RENKEI_REDIS_URL is required with more than one worker: "
                         "without it a worker's events would not reach the others' sockets")


def post_worker_init(worker):
    """A worker starts its sealer and its sender of pushes and mails at once, not at its
    first request: pushes queued before a restart go out without waiting for a visitor."""
    from renkei.app import start_background
    start_background(worker.wsgi)
