"""What a chart and the care list show: each kind's latest readings, their range
over the days asked for, and what changed."""

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from models import Observation, User, utcnow
from renkei.common import crypto, db, vault
from renkei.observations.kinds import KINDS, LATE, Kind
from renkei.observations.numbers import plain
from renkei.observations.thresholds import latest, thresholds_out
from renkei.patients import authz
from renkei.patients.authz import patient_access
from renkei.record.revisions import display_names

# --- what a chart and the care list show ------------------------------------------------

LATEST_RANGE = select(
    Observation.id,
    Observation.kind,
    Observation.measured_at,
    Observation.recorded_at,
    Observation.recorded_by,
    Observation.source,
    Observation.value_ct,
    Observation.alert,
    Observation.error_at,
    Observation.error_by,
    Observation.patient_id,
)


def overview(
    actor: User, patient_id: str, days: int, since: datetime | None = None, table: bool = False, names: bool = True
) -> dict:
    """The readings of the last `days` days for charts and their table: per kind its
    points (誤入力 left out), latest reading and its change since `since` (the caller's
    last look), and the thresholds (as `thresholds` answers them); with `table`, each
    reading whole; with `names` (not on the summary's thirty patients) who recorded each
    reading, for a tap on the chart. Rows are read without the ORM and opened in one pass:
    a year of four readings a day for eight kinds must not make the page slow
    (bench/vitals.py)."""
    access = patient_access(actor, patient_id, authz.READ)
    patient, now = access.patient, utcnow()
    start = now - timedelta(days=days)
    key = vault.patient_key(patient)
    rows = db.session.execute(
        LATEST_RANGE.where(Observation.patient_id == patient.id, Observation.measured_at >= start).order_by(
            Observation.measured_at, Observation.recorded_at
        )
    ).all()
    open_json = crypto.opener(key)
    readings = [opened(row, open_json) if table else _charted(row, open_json) for row in rows]
    if table or names:  # one query: the few people who record a patient's readings
        known = display_names({r["recorded_by"] for r in readings})
        for r in readings:
            r["recorded_by_name"] = known.get(r["recorded_by"])
    thresholds_now = thresholds_out(
        patient, latest(patient), not access.breakglass and authz.sets_thresholds(access.role)
    )
    limits = thresholds_now["thresholds"]
    series = {}
    for r in readings:
        if not r["entered_in_error"]:
            series.setdefault(r["kind"], []).append(r)
    charts = []
    for kind in KINDS.values():
        points = series.get(kind.key)
        if not points:
            continue
        newest = points[-1]
        seen = [p for p in points if since is not None and p["recorded_at"] <= since]
        charts.append(
            {
                "kind": kind,
                "points": points,
                "latest": newest,
                "limits": limits.get(kind.key, {}),
                "change": _change(kind, seen[-1], newest) if seen and seen[-1] is not newest else None,
            }
        )
    return {
        "charts": charts,
        "readings": readings[::-1],
        "thresholds": thresholds_now,
        "days": days,
        "start": start,
        "end": now,
        "may_record": not access.breakglass,
        "may_mark_any": not access.breakglass and authz.sets_thresholds(access.role),
    }


def _charted(row, open_json) -> dict:
    """What a chart needs of a reading (opened has the rest, for the table)."""
    reading = open_json(row.value_ct, vault.observation_aad(row))
    reading.update(
        id=row.id,
        kind=row.kind,
        measured_at=row.measured_at,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
        entered_in_error=row.error_at is not None,
    )
    return reading


def opened(row, open_json) -> dict:
    reading = open_json(row.value_ct, vault.observation_aad(row))
    reading.update(
        id=row.id,
        kind=row.kind,
        measured_at=row.measured_at,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
        source=row.source,
        alert=row.alert,
        late=row.recorded_at - row.measured_at > LATE,
        entered_in_error=row.error_at is not None,
        error_by=row.error_by,
    )
    return reading


def _change(kind: Kind, before: dict, now: dict) -> dict:
    """How the latest reading differs from the one seen at the last look."""
    if kind.components:
        return {
            name: plain(Decimal(str(now["components"][name])) - Decimal(str(before["components"][name])), m)
            for name, (_loinc, m, _label) in kind.components.items()
        }
    return {"value": plain(Decimal(str(now["value"])) - Decimal(str(before["value"])), kind.measure)}
