"""Engine and session. Who commits, and what else a commit carries (the audit entry,
the realtime events), is renkei/work.py's business."""
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import scoped_session, sessionmaker

session = scoped_session(sessionmaker(expire_on_commit=False))
AUDIT_LOCK_ID = 73110001  # PostgreSQL advisory lock serialising the audit chain's head


def normalize_url(url: str) -> str:
    # psycopg (v3) is the driver we ship; plain postgresql:// would ask for psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str):
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below through
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # One writer at a time: a transaction that reads a version (or the audit
            # head) and then writes cannot interleave with another one.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def bind(engine):
    session.remove()
    session.configure(bind=engine)


def lock_audit_head():
    """Serialise appends to the hash chain (SQLite already holds its write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_ID})


def database_down(exc) -> bool:
    """Connection lost or refused (not a constraint or a bad statement)."""
    return bool(getattr(exc, "connection_invalidated", False)) or exc.__class__.__name__ == "OperationalError"


def conflict(exc) -> bool:
    """The database rolled the transaction back: deadlock or serialisation failure."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "").startswith("40")
