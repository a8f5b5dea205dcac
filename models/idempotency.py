"""Answers kept for `Idempotency-Key` retries (renkei/common/idempotency.py). A row is claimed
("running") before the request runs and holds the sealed answer once it committed."""

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class IdempotentRequest(Base):
    __tablename__ = "idempotent_requests"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key_digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # keyed hash of the client's key
    fingerprint: Mapped[str] = mapped_column(String(64))  # keyed hash of method, path and body
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    status: Mapped[int | None] = mapped_column(Integer)  # None while the first request runs
    patient_id: Mapped[str | None] = mapped_column(String(36))  # whose key seals the answer
    answer_ct: Mapped[bytes | None] = mapped_column(LargeBinary)  # headers and body, sealed
