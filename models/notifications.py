"""Reaching people outside the app (docs/ARCHITECTURE.md, "Push and e-mail"): their
devices' push subscriptions, what they want to hear of, the deliveries waiting to be
sent, and the escalation of urgent notes nobody acknowledged ("Escalation"). Nothing here holds a name or clinical text; endpoints, device keys and e-mail
addresses are sealed with a system key (renkei/common/vault.py)."""

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class PushSubscription(Base):
    """One device of one person (a browser's PushSubscription). An endpoint belongs to
    one person at a time: signing up a shared tablet moves it to the new person."""

    __tablename__ = "push_subscriptions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    endpoint_digest: Mapped[str] = mapped_column(String(64), unique=True)  # keyed: finds a repeat
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # endpoint, keys and label, as JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)


class NotificationSettings(Base):
    """What a person wants to hear of, and where. No row: the defaults."""

    __tablename__ = "notification_settings"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    push_urgent: Mapped[bool] = mapped_column(Boolean, default=True)
    push_breakglass: Mapped[bool] = mapped_column(Boolean, default=True)
    push_mentions: Mapped[bool] = mapped_column(Boolean, default=True)
    push_changes: Mapped[bool] = mapped_column(Boolean, default=False)
    quiet_start: Mapped[str | None] = mapped_column(String(5))  # "22:00", Japan time
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    email_urgent: Mapped[bool] = mapped_column(Boolean, default=True)
    email_digest: Mapped[bool] = mapped_column(Boolean, default=False)
    email_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # confirmed address
    email_pending_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # new address and its code
    email_code_expires: Mapped[datetime | None] = mapped_column(DateTime)
    email_mails_sent: Mapped[int] = mapped_column(Integer, default=0)  # confirmation mails since…
    email_mails_since: Mapped[datetime | None] = mapped_column(DateTime)  # …this moment (a day's count)
    digest_sent_on: Mapped[date | None] = mapped_column(Date)  # Japan date of the last digest


class Delivery(Base):
    """A push or mail to send, written in the transaction of the change it tells of and
    deleted once sent: a restart or a push service that is down loses nothing. A sender
    claims a row until `claimed_until`; with several processes exactly one sends it."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(8))  # "push" or "mail"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(36), index=True)
    patient_id: Mapped[str | None] = mapped_column(String(36))  # what it is about (ids only)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # JSON: identifiers only
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    claim: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class EscalationRule(Base):
    """How a team escalates its urgent notes (renkei/patients/escalation.py). No row: the defaults."""

    __tablename__ = "escalation_rules"
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    after_minutes: Mapped[int] = mapped_column(Integer, default=15)  # unacknowledged this long: escalate
    repeat_minutes: Mapped[int] = mapped_column(Integer, default=15)  # and again this often, until someone does
    call_list: Mapped[str] = mapped_column(Text, default="[]")  # JSON: user ids beside the backup physician


class Escalation(Base):
    """An urgent note waiting for a physician's or nurse's acknowledgement. `due_at` is
    the next time to escalate; a sender moves it forward with a compare-and-set, so with
    several processes exactly one escalates each round."""

    __tablename__ = "escalations"
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id"), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(36), index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


class EscalationRound(Base):
    """One escalation, as the note shows it: 「15分未確認のため副主治医へ通知しました」."""

    __tablename__ = "escalation_rounds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    minutes: Mapped[int] = mapped_column(Integer)  # since the note was posted
    told: Mapped[str] = mapped_column(Text)  # JSON: the roles told ("backup_physician", "call_list"); [] none set
