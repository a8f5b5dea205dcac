"""The sealer: places new access-log entries in the Merkle tree, in batches, off the
request path (docs/ARCHITECTURE.md, "The access log").

One sealer at a time in the whole deployment, chosen by a lease (models/audit.py
AuditLease). Every batch is one transaction that first renews the lease *if its epoch
is still ours*: the row lock that renewal takes keeps anyone else from taking the lease
until the batch commits, and a sealer that froze, lost the lease and woke up finds a
newer epoch and writes nothing. A sealer that dies mid-batch leaves nothing (its
transaction is rolled back) and another process takes over once the lease expires.

A batch takes the entries with no position in insertion order, gives them seq and MAC,
extends the tiles, signs the new head, commits, and only then appends the head to the
sinks (a head must never name a tree the database does not hold)."""

import atexit
import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from models import AuditEntry, AuditHead, AuditLease, utcnow
from renkei.access_log import entries, keyring, merkle, sinks, tree
from renkei.common import db, offload

log = logging.getLogger("renkei")
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
LEASE = 1  # the row id of the one lease
_running = threading.Event()  # set: a sealer thread runs in this process
_wake = threading.Event()  # set: this process's sealer looks now instead of at its next turn
CATCH_UP_SECONDS = 5


class LeaseLost(Exception):
    pass


def _settings():
    return current_app.config["RENKEI"]


def acquire() -> int | None:
    """Take the lease if it is free (expired); the new epoch, or None. Commits. A lease
    that runs further ahead than any holder sets it was written by someone else: free."""
    now, ttl = utcnow(), timedelta(seconds=_settings().audit_lease_seconds)
    # A lease row locked is a holder sealing a batch right now: not free, and not worth
    # waiting for (SKIP LOCKED).
    free = (
        select(AuditLease.id)
        .where(AuditLease.id == LEASE, (AuditLease.expires_at < now) | (AuditLease.expires_at > now + 2 * ttl))
        .with_for_update(skip_locked=True)
    )
    taken = db.session.execute(
        update(AuditLease)
        .where(AuditLease.id.in_(free))
        .values(holder=HOLDER, epoch=AuditLease.epoch + 1, expires_at=now + ttl)
        .returning(AuditLease.epoch)
    ).scalar()
    db.session.commit()
    return taken


def release(epoch: int):
    db.session.execute(
        update(AuditLease)
        .where(AuditLease.id == LEASE, AuditLease.epoch == epoch)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()


def head() -> tuple[int, bytes]:
    """(tree size, root) of the newest sealed tree, read from the database (not from
    the session's memory of an earlier batch)."""
    row = db.session.get(AuditHead, 1, populate_existing=True)
    return (row.tree_size, row.root_hash) if row else (0, merkle.EMPTY_ROOT)


def checkpoint() -> dict:
    """The newest signed tree head, verbatim, with the key that verifies it."""
    keys = keyring.keys()
    row = db.session.get(AuditHead, 1)
    note = row.checkpoint if row else keys.checkpoint(0, merkle.EMPTY_ROOT)
    size, root = keys.read_checkpoint(note)
    return {"checkpoint": note, "public_key": keys.public_key, "tree_size": size, "root_hash": entries.b64(root)}


def seal_batch(epoch: int) -> int:
    """Seal up to one batch of entries, in one transaction; how many were sealed.
    LeaseLost if another sealer holds the lease now."""
    settings = _settings()
    renewed = db.session.execute(
        update(AuditLease)
        .where(AuditLease.id == LEASE, AuditLease.epoch == epoch)
        .values(expires_at=utcnow() + timedelta(seconds=settings.audit_lease_seconds))
    ).rowcount
    if not renewed:
        db.session.rollback()
        raise LeaseLost()
    size, _ = head()
    fields = [getattr(AuditEntry, f) for f in entries.LEAF_FIELDS]
    rows = db.session.execute(
        select(AuditEntry.id, *fields)
        .where(AuditEntry.seq.is_(None))
        .order_by(AuditEntry.id)
        .limit(settings.audit_seal_batch)
    ).all()
    if not rows:
        db.session.commit()  # the renewal
        return 0
    keys = keyring.keys()
    placed, leaves = [], []
    for seq, row in enumerate(rows, start=size + 1):
        if seq % 500 == 0:
            offload.pause()  # a batch is up to 5,000 entries: let the worker's others run
        text = entries.entry_text(seq, row[1], row[2:])
        mac = keys.mac(text)
        placed.append({"id": row[0], "seq": seq, "mac": mac})
        leaves.append(merkle.leaf_hash(entries.leaf(text, mac)))
    db.session.execute(update(AuditEntry), placed)
    tiles = tree.Tiles()
    tiles.extend(size, leaves)
    size += len(rows)
    root = tiles.root(size)
    note = store_head(size, root)
    db.session.commit()
    publish(note)
    return len(rows)


def store_head(size: int, root: bytes) -> str:
    """Sign the head of the tree of `size` leaves and keep it as the newest (the caller
    commits, then publishes the note it gets)."""
    note = keyring.keys().checkpoint(size, root)
    row = db.session.get(AuditHead, 1, populate_existing=True) or AuditHead(id=1)
    row.tree_size, row.root_hash, row.checkpoint, row.sealed_at = size, root, note, utcnow()
    db.session.add(row)
    return note


def publish(note: str):
    """Append a head to every sink. A sink that fails is logged; the next batch's head
    covers this one's entries too."""
    for sink in sinks.sinks(_settings()):
        try:
            offload.run(sink.append, note)  # fsync, perhaps over the network
        except OSError:
            log.exception("could not append the access log's head to %s", sink)


def seal_all() -> int:
    """Seal everything waiting, now, if no other sealer holds the lease (operators'
    command, tests). How many entries were sealed."""
    epoch = acquire()
    if epoch is None:
        return 0
    total = 0
    try:
        while sealed := seal_batch(epoch):
            total += sealed
    finally:
        release(epoch)
    return total


def catch_up(timeout: float = CATCH_UP_SECONDS) -> bool:
    """Before an auditor reads the log: wait until the entries already written are
    sealed, so every entry they see has its seq (False if some still wait after
    `timeout`: the sealer is stalled, and verification says so). Ends the caller's
    transaction first (on SQLite it holds the one write lock the sealer needs). Where no
    sealer thread runs (commands, tests), seals here. Never on the path of a request
    that reads or writes records."""
    db.session.commit()
    waiting = select(func.max(AuditEntry.id)).where(AuditEntry.seq.is_(None))
    target = db.session.execute(waiting).scalar()
    if target is None:
        return True
    if not _running.is_set():
        seal_all()
    _wake.set()
    deadline = time.monotonic() + timeout
    pending = select(AuditEntry.id).where(AuditEntry.seq.is_(None), AuditEntry.id <= target).limit(1)
    while (late := db.session.execute(pending).first() is not None) and time.monotonic() < deadline:
        db.session.commit()
        time.sleep(0.05)
    db.session.commit()
    return not late


def run(app):
    """The sealer thread of a server process (renkei/app.py `start_background`): try for
    the lease, and while holding it seal every `audit_seal_seconds` until nothing is waiting."""
    _running.set()
    settings = app.config["RENKEI"]
    epoch = None
    atexit.register(lambda: epoch is not None and _release_at_exit(app, epoch))
    while True:
        _wake.wait(settings.audit_seal_seconds)
        _wake.clear()
        with app.app_context():
            try:  # attempts counted outside any request (renkei/access_log/entries.py `count_outside`)
                if entries.write_counted():
                    db.session.commit()
            except Exception:
                log.exception("writing counted attempts to the access log failed; retrying")
                db.session.rollback()
            try:
                if epoch is None:
                    epoch = acquire()
                    if epoch is not None:
                        row = db.session.get(AuditHead, 1)
                        if row is not None:  # a head the previous sealer committed but never published
                            publish(row.checkpoint)
                while epoch is not None and seal_batch(epoch) == settings.audit_seal_batch:
                    pass
            except LeaseLost:
                log.warning("the access log's sealer lease went to another process")
                epoch = None
            except Exception:  # never let the thread die: verification reports a stalled sealer
                log.exception("sealing the access log failed; retrying")
                db.session.rollback()
            finally:
                db.session.remove()


def _release_at_exit(app, epoch):
    """A server that stops lets the next sealer start at once, not after the lease expires."""
    try:
        with app.app_context():
            release(epoch)
    except Exception:  # shutting down: the lease simply expires
        pass
