"""SQLAlchemy models. Every identifying or clinical value is a *_ct column holding
AES-GCM ciphertext (see renkei/crypto.py); nothing here stores patient plaintext."""
import uuid
from datetime import datetime, timezone

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
          "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Naive UTC: every timestamp in the database is UTC server time."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


from models.directory import ApiToken, LoginThrottle, Organization, SystemKey, User  # noqa: E402
from models.patient import (BreakGlass, Consent, Note, NoteAck, Patient,  # noqa: E402
                            SectionRevision, TeamMember)
from models.audit import AuditAnchor, AuditEntry  # noqa: E402
from models.events import UserEvent  # noqa: E402
from models.sockets import SocketSession  # noqa: E402

__all__ = ["Base", "new_id", "utcnow", "ApiToken", "LoginThrottle", "Organization",
           "SystemKey", "User", "BreakGlass", "Consent", "Note", "NoteAck", "Patient",
           "SectionRevision", "TeamMember", "AuditAnchor", "AuditEntry", "UserEvent", "SocketSession"]
