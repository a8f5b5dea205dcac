"""Engine and session. Who commits, and what else a commit carries (the access-log entry,
the realtime events), is renkei/common/work.py's business."""

import logging
import time

from psycopg import ServerCursor
from psycopg.pq import TransactionStatus
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DisconnectionError, TimeoutError
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.sql import Select

log = logging.getLogger("renkei")

session = scoped_session(sessionmaker(expire_on_commit=False))


def normalize_url(url: str) -> str:
    # psycopg (v3) is the driver we ship; plain postgresql:// would ask for psycopg2.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str,
    pool_size: int = 10,
    pool_timeout: float = 10,
    lock_timeout_ms: int = 2000,
    idle_transaction_timeout_ms: int = 5000,
):
    """pool_size: connections a worker may hold at once (platform/gunicorn.conf.py says how
    to size it); a request that waits pool_timeout seconds for one gets 503, never 500.
    On PostgreSQL a request waits at most lock_timeout_ms for a lock (then 503), and the
    server ends a transaction left idle for idle_transaction_timeout_ms — a frozen or
    stuck worker cannot hold a row against everyone else for long.
    A request's transaction is never idle for long (its statements are milliseconds
    apart), so 5 s only ever ends a frozen one; the fault drill (bench/drill.py) showed a
    worker stopped with SIGSTOP holding its team's event rows until this ended it.
    (No statement timeout: verifying the access log is one long scan.)"""
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
            cur.execute("PRAGMA secure_delete=ON")  # freed space is zeroed: a shredded key leaves no copy
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # One writer at a time: a transaction that reads a version (or the access
            # log's tree head) and then writes cannot interleave with another one.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options = f"-c lock_timeout={lock_timeout_ms} -c idle_in_transaction_session_timeout={idle_transaction_timeout_ms}"
    engine = create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args={"options": options},
    )
    event.listen(engine, "before_cursor_execute", _begin_before_writing)
    _ping_when_idle(engine)
    return engine


# --- PostgreSQL: a transaction begins at the first write ------------------------------
# Connections are in autocommit mode and a transaction is opened (BEGIN) just before
# the first statement that is not a plain SELECT: a write, a locking read (FOR UPDATE),
# a server-side cursor, any SQL text. Under READ COMMITTED every statement of a
# transaction sees its own snapshot anyway, so reads before that point see what they
# would have seen inside it; the writes that follow are atomic as before, and COMMIT or
# ROLLBACK end them (psycopg sends them whenever the server is in a transaction). A
# request that only reads then costs no BEGIN and no COMMIT, and its access-log entry is one
# INSERT on its own (`OWN_TRANSACTION`): docs/ARCHITECTURE.md, "Round trips of a read".

IDLE = TransactionStatus.IDLE
OWN_TRANSACTION = "renkei_own_transaction"  # execution option: this statement commits alone


def _plain_read(context, cursor) -> bool:
    """A compiled SELECT that locks nothing, on a client-side cursor (a server-side one
    lives in a transaction)."""
    statement = getattr(context.compiled, "statement", None)
    return isinstance(statement, Select) and statement._for_update_arg is None and not isinstance(cursor, ServerCursor)


def _begin_before_writing(conn, cursor, statement, parameters, context, executemany):
    raw = cursor.connection
    if raw.info.transaction_status != IDLE:  # already in a transaction
        return
    if context is not None and (context.execution_options.get(OWN_TRANSACTION) or _plain_read(context, cursor)):
        return
    raw.execute("BEGIN")


def in_transaction() -> bool:
    """True if this session's connection has begun a database transaction (SQLite: always,
    once it has a connection; its BEGIN IMMEDIATE comes first)."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return True
    return conn.connection.driver_connection.info.transaction_status != IDLE


def begin_now():
    """Open the session's transaction at once (PostgreSQL), for raw work that needs one —
    a server-side cursor declared through the driver."""
    conn = session.connection()
    if conn.dialect.name == "postgresql" and not in_transaction():
        conn.connection.driver_connection.execute("BEGIN")


# A connection is tested before use only when it has sat in the pool for a while (a
# restarted server or a firewall may have dropped it); one used a moment ago is not
# pinged, which saved a round trip on every request. A connection that fails anyway
# fails its request with 503 and the pool drops it and every connection older than it.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine):
    @event.listens_for(engine, "connect")
    def _fresh(dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _back(dbapi_conn, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _out(dbapi_conn, record, proxy):
        if time.monotonic() - record.info.get("idle_since", 0) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool discards it and takes (or makes) another
            raise DisconnectionError("stale pooled connection") from exc


def bind(engine):
    session.remove()
    session.configure(bind=engine)


def no_idle_timeout():
    """For an operator's command that computes between statements while it holds its
    transaction (archiving the access log): PostgreSQL must not end it as abandoned."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))


def pool_exhausted(exc) -> bool:
    """Every connection of this worker's pool is in use (sqlalchemy.exc.TimeoutError)."""
    return isinstance(exc, TimeoutError)


def database_down(exc) -> bool:
    """Connection lost or refused (not a constraint or a bad statement)."""
    return bool(getattr(exc, "connection_invalidated", False)) or exc.__class__.__name__ == "OperationalError"


def out_of_resources(exc) -> bool:
    """The database is up but cannot take the change: disk full, out of memory, too
    many connections (SQLSTATE class 53)."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "").startswith("53")


def conflict(exc) -> bool:
    """The database rolled the transaction back (deadlock, serialisation failure) or a
    lock was not free within lock_timeout (55P03): another request was in the way."""
    state = str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "")
    return state.startswith("40") or state == "55P03"


SHREDDED_TABLES = "patients, patient_search_tokens, attachments"  # where a shred deletes or blanks a value


def purge_freed_space():
    """Make a crypto-shred stick on disk, outside any request's transaction: PostgreSQL
    rewrites the patients table and its name-prefix tokens (VACUUM FULL: the old row
    versions holding the wrapped key and blind-index values go with the old files); SQLite, which zeroes freed space
    (secure_delete), checkpoints and empties its write-ahead log. What remains in WAL
    segments, archives and backups is described in platform/KEYS.md."""
    engine = session.get_bind()
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(**{OWN_TRANSACTION: True}) as conn:  # VACUUM refuses a transaction
                conn.execute(text("SET lock_timeout = '10s'"))  # not behind a long transaction forever
                try:
                    conn.execute(text(f"VACUUM FULL {SHREDDED_TABLES}"))
                finally:  # the connection goes back to the pool: requests keep their 2 s
                    conn.execute(text("RESET lock_timeout"))
        else:  # outside SQLAlchemy's transaction (BEGIN IMMEDIATE above): a checkpoint needs none
            raw = engine.raw_connection()
            try:
                busy = raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                raw.close()
            if busy:
                raise RuntimeError("checkpoint busy")
    except Exception as exc:  # the shred itself has committed; only the purge waits
        log.warning(
            "freed space not purged after a shred (%s); run VACUUM FULL %s", type(exc).__name__, SHREDDED_TABLES
        )


def has_nul(*values) -> bool:
    """PostgreSQL refuses NUL in text, so a value holding one names nothing stored."""
    return any(isinstance(v, str) and "\x00" in v for v in values)
