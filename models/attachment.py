"""Photos and documents in a patient's record. The bytes are sealed in frames
(renkei/common/frames.py) under a data key of the attachment's own, stored wrapped by the
patient's key; caption and series are sealed under the patient's key. What the
database shows without keys: which patient, when, by whom, the type, size and pixel
size, and which attachments share a series (a keyed digest, not its name). The file's
own name is sealed too."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    note_id: Mapped[str | None] = mapped_column(ForeignKey("notes.id"), index=True)
    section: Mapped[str | None] = mapped_column(String(40))
    content_type: Mapped[str] = mapped_column(String(40))  # decided from the bytes, never the client's
    size: Mapped[int] = mapped_column(BigInteger)  # bytes as stored (after re-encoding)
    frames: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    thumb_frames: Mapped[int | None] = mapped_column(Integer)
    caption_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    name_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # the file's name as chosen (訪問看護報告書.pdf)
    series_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    series_index: Mapped[str | None] = mapped_column(String(64))
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)  # None: deleted, the key shredded
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        Index("ix_attachments_patient_created", "patient_id", "created_at"),
        Index("ix_attachments_patient_series", "patient_id", "series_index"),
    )


class AttachmentFrame(Base):
    """One sealed frame of an attachment's file ("file") or thumbnail ("thumb")."""

    __tablename__ = "attachment_frames"
    attachment_id: Mapped[str] = mapped_column(ForeignKey("attachments.id"), primary_key=True)
    part: Mapped[str] = mapped_column(String(8), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
