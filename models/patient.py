"""Patients, consent, teams, the versioned 表3 record, timeline notes, break-glass."""

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class Patient(Base):
    __tablename__ = "patients"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The patient's data key, wrapped by master key `kek_id`; NULL once shredded.
    kek_id: Mapped[str | None] = mapped_column(String(16))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Demographics: JSON sealed under the data key (name, kana, birth date, sex, address, contacts).
    demographics_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    name_index: Mapped[str | None] = mapped_column(String(64), index=True)
    kana_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Keyed hash of the code printed on the emergency sheet (renkei/common/vault.py, sheet_code),
    # set when a sheet is first printed: break-glass finds the patient by it.
    sheet_code_index: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    registered_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class PatientSearchToken(Base):
    """Keyed hashes of the family name's prefixes, for search (renkei/common/crypto.py,
    prefix_tokens); deleted with the patient's key."""

    __tablename__ = "patient_search_tokens"
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), primary_key=True)
    token: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Consent(Base):
    __tablename__ = "consents"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    obtained_on: Mapped[date] = mapped_column(Date)
    details_ct: Mapped[bytes] = mapped_column(LargeBinary)  # obtained_by, scope
    recorded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime)


class TeamMember(Base):
    """A membership; removal keeps the row (removed_at) for the record's history."""

    __tablename__ = "team_members"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(40))
    added_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the member last opened the record: "what changed since my last look".
    last_viewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (Index("ix_team_members_patient_current", "patient_id", "removed_at"),)


class Appointment(Base):
    """An administrator's appointment of a manager to a team left without an active one:
    no access until a second person confirms it, when it becomes a TeamMember
    (renkei/people/confirmations.py)."""

    __tablename__ = "appointments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(40))
    requested_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    confirmed_by: Mapped[str | None] = mapped_column(String(36))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)  # confirmed or withdrawn


class SectionRevision(Base):
    """An immutable revision of one 表3 section. The unique (patient, section, version)
    is what makes concurrent writers of one version collide: exactly one wins."""

    __tablename__ = "section_revisions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    section: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("patient_id", "section", "version", name="uq_section_revisions_version"),)


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    category: Mapped[str] = mapped_column(String(20))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    body_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The first note of the thread this one answers (a reply to a reply answers it too).
    reply_to: Mapped[str | None] = mapped_column(ForeignKey("notes.id"), index=True)
    __table_args__ = (Index("ix_notes_patient_created", "patient_id", "created_at"),)


class NoteAck(Base):
    __tablename__ = "note_acks"
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class NoteSeen(Base):
    """A note shown to a person (既読, automatic); 確認 (NoteAck) is the explicit one."""

    __tablename__ = "note_seen"
    note_id: Mapped[str] = mapped_column(ForeignKey("notes.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("ix_note_seen_user", "user_id", "note_id"),)


class BreakGlass(Base):
    __tablename__ = "breakglass"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    reason_ct: Mapped[bytes] = mapped_column(LargeBinary)
    opened_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
