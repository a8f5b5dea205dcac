"""The access log: entries appended by requests, sealed into a Merkle tree by the sealer
(docs/ARCHITECTURE.md, "The access log"; renkei/access_log/entries.py, renkei/access_log/sealer.py)."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

# SQLite numbers rows itself only for a column declared exactly INTEGER PRIMARY KEY.
ID = BigInteger().with_variant(Integer, "sqlite")


class AuditEntry(Base):
    """One entry. A request inserts it with no position (`seq` NULL); the sealer gives it
    its place in the tree (`seq`, 1-based: leaf index + 1) and its MAC. `id` is the
    insertion order, which the log's pages are read in."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor_id: Mapped[str | None] = mapped_column(String(36))
    actor_org_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(40))
    patient_id: Mapped[str | None] = mapped_column(String(36))
    section: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(20))  # ok | denied | not_found | failed | invalid
    client_addr: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Non-clinical detail only: a target user id, a status code, a login attempted.
    detail: Mapped[str | None] = mapped_column(Text)  # whole: a cut list misleads (renkei/common/work.py)
    mac: Mapped[str | None] = mapped_column(String(40))  # key id + MAC, set with seq
    __table_args__ = (
        Index("ix_audit_actor_id", "actor_id", "id"),
        Index("ix_audit_patient_id", "patient_id", "id"),
        Index("ix_audit_action_id", "action", "id"),
        Index("ix_audit_at", "at"),
        Index("ix_audit_unsealed", "id", postgresql_where=text("seq IS NULL"), sqlite_where=text("seq IS NULL")),
    )


class AuditTile(Base):
    """Stored hashes of the tree (c2sp.org/tlog-tiles): tile `index` of `level` holds up
    to 256 consecutive hashes of tree level 8 × level, 32 bytes each; level 0 holds the
    leaf hashes. Full tiles never change; the sealer rewrites the partial ones."""

    __tablename__ = "audit_tiles"
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHead(Base):
    """The newest signed tree head (one row). The heads that count are the copies in the
    sink outside the database (RENKEI_AUDIT_SINK); this one is for serving."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    checkpoint: Mapped[str] = mapped_column(Text)
    sealed_at: Mapped[datetime] = mapped_column(DateTime)


class AuditLease(Base):
    """Who seals (one process in the whole deployment): the holder renews `expires_at`
    in every batch, and every batch checks `epoch`, which each new holder increments, so
    a sealer that froze and lost the lease writes nothing when it wakes."""

    __tablename__ = "audit_lease"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str] = mapped_column(String(80))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class AuditAnchor(Base):
    """Where the live log begins once older entries were archived (renkei/access_log/archive.py):
    entries up to `seq` are in an archive file; `note` signs that tree size and its root,
    so nobody without the audit key can cut more off the log's beginning."""

    __tablename__ = "audit_anchors"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
    entries: Mapped[int] = mapped_column(BigInteger)  # how many this archival removed
    archived_at: Mapped[datetime] = mapped_column(DateTime)
