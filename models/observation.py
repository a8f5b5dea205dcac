"""Vital signs and other observations (renkei/observations/readings.py), and each patient's alert
thresholds. The value, unit details and note are sealed under the patient's key; the
kind and the times stay plain so a series can be queried and paged
(docs/ARCHITECTURE.md, "Observations": what the database shows without the key)."""

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, new_id, utcnow


class Observation(Base):
    """One reading: immutable once recorded, except that it may be marked 誤入力
    (entered in error) — kept, struck through, left out of charts and alerts."""

    __tablename__ = "observations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(32))
    measured_at: Mapped[datetime] = mapped_column(DateTime)
    recorded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    recorded_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(8), default="entry")  # "entry" or "import"
    # {"value": …} or {"components": {…}}, with "note" and "bristol" when given; and
    # "threshold", the threshold it was beyond when recorded.
    value_ct: Mapped[bytes] = mapped_column(LargeBinary)
    # This reading raised the team's alert. The alert event (models/events.py) already
    # says as much in plain; the value and threshold stay sealed.
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    error_at: Mapped[datetime | None] = mapped_column(DateTime)
    error_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    __table_args__ = (
        Index("ix_observations_series", "patient_id", "kind", "measured_at"),
        Index("ix_observations_patient_measured", "patient_id", "measured_at"),
        # the care list's "alerted since my last look" without reading a year of rows
        Index("ix_observations_alerts", "patient_id", "alert", "recorded_at"),
    )


class ThresholdRevision(Base):
    """An immutable revision of a patient's thresholds, versioned like a record section:
    the unique (patient, version) makes one of two concurrent writers lose (412)."""

    __tablename__ = "threshold_revisions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"))
    version: Mapped[int] = mapped_column(Integer)
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (UniqueConstraint("patient_id", "version", name="uq_threshold_revisions_version"),)
