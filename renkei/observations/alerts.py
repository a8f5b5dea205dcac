"""When a reading alerts the team (docs/ARCHITECTURE.md, "Observations"): beyond a
threshold, once per crossing — only when the reading before it of that kind was not
beyond one. Late readings (measured more than a day before they are recorded) and
imported ones are marked but alert nobody: that news is old."""

from bisect import bisect_right, insort
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from models import Observation, Patient
from renkei.common import crypto, db, vault
from renkei.observations.kinds import LATE, Kind


def beyond(kind: Kind, reading: dict, limits: dict, earlier: list[tuple[datetime, dict]]) -> dict | None:
    """The threshold a reading is beyond, or None. `earlier`: the kind's readings before
    it (time, reading), for a rise over a window."""
    if not limits:
        return None
    if kind.components:
        for name, bounds in limits.items():
            crossed = _outside(reading["components"][name], bounds)
            if crossed:
                return {name: crossed}
        return None
    crossed = _outside(reading["value"], limits)
    if crossed:
        return crossed
    if "rise" in limits:
        start = reading["measured_at"] - timedelta(days=limits["within_days"])
        window = [r["value"] for at, r in earlier if start <= at < reading["measured_at"]]
        if window and Decimal(str(reading["value"])) - Decimal(str(min(window))) >= Decimal(str(limits["rise"])):
            return {"rise": limits["rise"], "within_days": limits["within_days"]}
    return None


def judge(kind: Kind, reading: dict, bounds: dict, history: list, *, alerting: bool, now) -> tuple[dict | None, bool]:
    """(the threshold the reading is beyond or None, whether it alerts the team). Adds
    the reading to `history` (its kind's readings in time order), so the next one of a
    batch sees it; marks it `told` when its crossing has been told."""
    at = bisect_right(history, reading["measured_at"], key=lambda h: h[0])
    earlier, later = history[:at], history[at:]
    crossed = beyond(kind, reading, bounds, earlier)
    # The crossing this reading belongs to was told already if the reading next to it,
    # before or (back-dated) after, is beyond too and its crossing was told. A late or
    # imported reading beyond tells nobody, so it passes nothing on.
    told = bool(crossed) and (
        bool(earlier)
        and earlier[-1][1].get("told", False)
        and bool(beyond(kind, earlier[-1][1], bounds, earlier[:-1]))
        or bool(later)
        and later[0][1].get("told", False)
        and bool(beyond(kind, later[0][1], bounds, [*earlier, (reading["measured_at"], reading)]))
    )
    fires = bool(crossed) and not told and alerting and now - reading["measured_at"] <= LATE
    reading["told"] = fires or told
    insort(history, (reading["measured_at"], reading), key=lambda h: h[0])
    return crossed, fires


def _outside(value, bounds: dict) -> dict | None:
    if "min" in bounds and value < bounds["min"]:
        return {"min": bounds["min"]}
    if "max" in bounds and value > bounds["max"]:
        return {"max": bounds["max"]}
    return None


def one_recorder_at_a_time(patient: Patient):
    """Wait for any other transaction recording this patient's readings (FOR NO KEY
    UPDATE of the patient row: the inserts' foreign keys to it still pass)."""
    db.session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update(key_share=True))


def history_of(patient: Patient, key: bytes, kind: str, new: list[dict], limits: dict) -> list[tuple[datetime, dict]]:
    """The stored readings of a kind (誤入力 left out) that decide whether the new ones
    cross, oldest first: from the one just before the earliest new reading — less the
    rise window, which that one's own state needs — to the one just after the latest."""
    first, last = min(r["measured_at"] for r in new), max(r["measured_at"] for r in new)
    live = (Observation.patient_id == patient.id) & (Observation.kind == kind) & Observation.error_at.is_(None)
    before = db.session.execute(
        select(func.max(Observation.measured_at)).where(live, Observation.measured_at <= first)
    ).scalar()
    after = db.session.execute(
        select(func.min(Observation.measured_at)).where(live, Observation.measured_at > last)
    ).scalar()
    start = (before or first) - timedelta(days=limits.get("within_days", 0))
    rows = db.session.execute(
        select(Observation)
        .where(live, Observation.measured_at >= start, Observation.measured_at <= (after or last))
        .order_by(Observation.measured_at, Observation.recorded_at)
    ).scalars()
    return [
        (o.measured_at, {**crypto.unseal_json(key, o.value_ct, vault.observation_aad(o)), "measured_at": o.measured_at})
        for o in rows
    ]
