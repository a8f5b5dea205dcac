"""gunicorn for Renkei: `gunicorn -c platform/gunicorn.conf.py wsgi:app`.

Each worker is a process serving requests and websockets as gevent greenlets (gevent
patches the standard library in the worker before the app loads; Flask-SocketIO then
runs in gevent mode: realtime/__init__.py). A thread per websocket, as in gthread, made
each event pushed to 1,000 sockets cost 1,000 thread wake-ups (docs/ARCHITECTURE.md,
"Realtime fan-out"). Clients use the websocket transport
only, so a connection lives in one worker and no sticky sessions are needed; the
workers (and other machines) share events through Redis (RENKEI_REDIS_URL), which
is required whenever workers > 1. Every worker also runs, from its start, a sealer thread
for the access log (one in the whole deployment holds the lease and seals:
docs/ARCHITECTURE.md, "The access log") and a sender of pushes and mails (they share the
queue in the database: "Push and e-mail")."""

import multiprocessing
import os
import resource

bind = f"{os.environ.get('RENKEI_HOST', '127.0.0.1')}:{os.environ.get('RENKEI_PORT', '8000')}"
workers = int(os.environ.get("RENKEI_WORKERS", min(4, multiprocessing.cpu_count())))
worker_class = "gevent"
# Open connections a worker accepts, websockets and requests together: when websockets
# fill it, requests wait. An idle websocket costs the memory in the README's fan-out table.
worker_connections = int(os.environ.get("RENKEI_CONNECTIONS", "4000"))
# Never preload: gevent patches each worker before it imports the app. Loaded earlier,
# its sockets, locks, queues and psycopg's waits would block the whole worker.
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5  # Retry-After (renkei/common/work.py) is longer, so an obedient client never races it
# Database connections: each worker has a pool of RENKEI_DB_POOL_SIZE (default 10). Most
# of a worker's connections are idle websockets and need none; a connection is held only
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
    if not os.environ.get("RENKEI_DATABASE_URL", "").startswith("postgres"):
        raise SystemExit(
            "gunicorn serves Renkei on PostgreSQL (RENKEI_DATABASE_URL=postgresql://...): a worker's "
            "greenlets share one thread, and SQLite's wait for its write lock would hold them all "
            "while the one holding it waits its turn. SQLite is for `python wsgi.py` on one machine."
        )
    if workers > 1 and not os.environ.get("RENKEI_REDIS_URL"):
        raise SystemExit(
            "RENKEI_REDIS_URL is required with more than one worker: "
            "without it a worker's events would not reach the others' sockets"
        )
    # Each connection is a file descriptor, besides the database's, Redis's and the log's;
    # the usual soft limit (1,024) would refuse sockets long before worker_connections.
    wanted = worker_connections + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        top = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < wanted:
            server.log.warning(
                "open files limited to %d (hard limit), below %d connections + 200: raise it "
                "(systemd LimitNOFILE) or lower RENKEI_CONNECTIONS",
                top,
                worker_connections,
            )


def post_worker_init(worker):
    """A worker starts its sealer and its sender of pushes and mails at once, not at its
    first request: pushes queued before a restart go out without waiting for a visitor."""
    # imported in the worker, after gevent patched it (see preload_app)
    from realtime import async_mode
    from renkei.app import start_background

    if async_mode() != "gevent":
        raise SystemExit("this worker was not patched by gevent before the app loaded (preload_app?)")
    worker.log.info("worker %s: sockets and requests as gevent greenlets", worker.pid)
    start_background(worker.wsgi)
