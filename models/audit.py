"""The append-only, hash-chained access log (docs/ARCHITECTURE.md, "The access log")."""
from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
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
    detail: Mapped[str | None] = mapped_column(String(200))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (Index("ix_audit_actor_seq", "actor_id", "seq"),
                      Index("ix_audit_patient_seq", "patient_id", "seq"),
                      Index("ix_audit_action_seq", "action", "seq"),
                      Index("ix_audit_at", "at"))


class AuditAnchor(Base):
    """Where the live log begins once older entries were archived (renkei/audit_archive.py):
    the last archived entry's seq and hash, signed, so the remaining chain still verifies
    and nobody can cut the log's beginning off without the signing key."""
    __tablename__ = "audit_anchors"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[str] = mapped_column(String(40))  # signed as text, exactly as in the archive
    entries: Mapped[int] = mapped_column(Integer)  # how many this archival removed
    archived_at: Mapped[datetime] = mapped_column(DateTime)
    signature: Mapped[str] = mapped_column(String(128))
