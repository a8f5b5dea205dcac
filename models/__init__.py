"""SQLAlchemy models. Every identifying or clinical value is a *_ct column holding
AES-GCM ciphertext (see renkei/common/crypto.py); nothing here stores patient plaintext."""

from models.attachment import Attachment, AttachmentFrame
from models.audit import AuditAnchor, AuditEntry, AuditHead, AuditLease, AuditTile
from models.base import Base, new_id, utcnow
from models.directory import (
    AccessReset,
    ApiToken,
    Invitation,
    LoginThrottle,
    Organization,
    Passkey,
    SystemKey,
    UsedChallenge,
    User,
)
from models.events import UserEvent
from models.idempotency import IdempotentRequest
from models.notifications import (
    Delivery,
    Escalation,
    EscalationRound,
    EscalationRule,
    NotificationSettings,
    PushSubscription,
)
from models.observation import Observation, ThresholdRevision
from models.patient import (
    Appointment,
    BreakGlass,
    Consent,
    Note,
    NoteAck,
    NoteSeen,
    Patient,
    PatientSearchToken,
    SectionRevision,
    TeamMember,
)
from models.sockets import SocketOwner, SocketSession

__all__ = [
    "Base",
    "new_id",
    "utcnow",
    "Attachment",
    "AttachmentFrame",
    "AccessReset",
    "ApiToken",
    "Passkey",
    "UsedChallenge",
    "Invitation",
    "LoginThrottle",
    "Organization",
    "SystemKey",
    "User",
    "Appointment",
    "BreakGlass",
    "Consent",
    "Note",
    "NoteAck",
    "NoteSeen",
    "Patient",
    "PatientSearchToken",
    "SectionRevision",
    "TeamMember",
    "AuditAnchor",
    "AuditEntry",
    "AuditHead",
    "AuditLease",
    "AuditTile",
    "UserEvent",
    "IdempotentRequest",
    "Observation",
    "ThresholdRevision",
    "Delivery",
    "Escalation",
    "EscalationRound",
    "EscalationRule",
    "NotificationSettings",
    "PushSubscription",
    "SocketOwner",
    "SocketSession",
]
