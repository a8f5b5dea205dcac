"""Recording readings and reading them back (docs/API.md, "Observations"): one or
several at once, the series a page asks for, marking one 誤入力.

A reading is sealed under the patient's key, bound to its patient, kind, time and
author (renkei/common/vault.py, observation_aad); the kind and times stay plain for queries
(docs/ARCHITECTURE.md, "Observations"). A reading beyond a threshold alerts the team
once per crossing: only when the reading before it of that kind was not beyond one.
Readings measured more than a day before they are recorded, and imported ones, are
marked with the threshold but alert nobody: that news is old."""

from datetime import datetime

from flask_babel import gettext as _
from sqlalchemy import select

from models import Observation, Patient, User, new_id, utcnow
from renkei.common import crypto, db, paging, vault, work
from renkei.common.problems import Problem, invalid, not_found
from renkei.common.timefmt import parse_iso
from renkei.observations.alerts import history_of, judge, one_recorder_at_a_time
from renkei.observations.kinds import KINDS, LATE
from renkei.observations.numbers import Refused, clean_reading
from renkei.observations.thresholds import latest, thresholds_out
from renkei.outreach import events, tell
from renkei.patients import authz, teams
from renkei.patients.authz import patient_access
from renkei.record.revisions import display_names

# --- recording and reading ---------------------------------------------------------------


def record(actor: User, patient_id: str, items: list[dict], many: bool = False, source: str = "entry") -> list[dict]:
    """Record readings (any team member; break-glass reads only). Each is checked first:
    one refused value refuses them all (422; sent as a list, the fields are items.N.…)."""
    patient = patient_access(actor, patient_id, authz.OBSERVE).patient
    rev = latest(patient)
    limits = thresholds_out(patient, rev, False)["thresholds"] if rev else {}
    if any(item["kind"] in limits for item in items):
        # One recorder at a time per patient decides "the reading before", and "now" is
        # read after the wait: two nurses saving at once must not both raise the same crossing.
        one_recorder_at_a_time(patient)
    now, cleaned, errors = utcnow(), [], {}
    for i, item in enumerate(items):
        try:
            cleaned.append(clean_reading(item, now))
        except Refused as r:
            errors[i] = r.args[0]
    if errors:
        raise invalid({"items": errors} if many else errors[0])
    key, alerts = vault.patient_key(patient), []
    known = {
        kind: history_of(patient, key, kind, [r for r in cleaned if r["kind"] == kind], limits[kind])
        for kind in {r["kind"] for r in cleaned}
        if kind in limits
    }
    order = sorted(range(len(cleaned)), key=lambda i: cleaned[i]["measured_at"])  # decided in time order
    rows: list = [None] * len(cleaned)
    for index in order:
        reading = cleaned[index]
        obs = Observation(
            id=new_id(),
            patient_id=patient.id,
            kind=reading["kind"],
            measured_at=reading["measured_at"],
            recorded_at=now,
            recorded_by=actor.id,
            source=source,
        )
        crossed, fires = None, False
        if obs.kind in known:
            crossed, fires = judge(
                KINDS[obs.kind], reading, limits[obs.kind], known[obs.kind], alerting=source == "entry", now=now
            )
        obs.alert = fires
        sealed = {k: reading[k] for k in ("value", "components", "note", "bristol") if k in reading}
        if crossed:
            sealed["threshold"], sealed["told"] = crossed, reading["told"]
        obs.value_ct = crypto.seal_json(key, sealed, vault.observation_aad(obs))
        rows[index] = obs  # answered in the order sent
        if fires:
            alerts.append(obs)
    db.session.add_all(rows)
    db.session.flush()
    work.describe(detail=f"observation={rows[0].id}" if len(rows) == 1 else f"observations={len(rows)}")
    for obs in alerts:
        work.current().mark("alert")
        events.queue(
            "observation.alert", patient.id, {"observation_id": obs.id, "kind": obs.kind, "actor_id": actor.id}
        )
        tell.tell(
            "observation.alert",
            patient.id,
            [m.id for m in teams.members(patient.id)],
            actor_id=actor.id,
            observation_id=obs.id,
        )
    return _out(patient, rows)


def _out(patient: Patient, rows: list[Observation]) -> list[dict]:
    open_json = crypto.opener(vault.patient_key(patient))
    names = display_names({o.recorded_by for o in rows} | {o.error_by for o in rows})
    out = []
    for o in rows:
        sealed, kind = open_json(o.value_ct, vault.observation_aad(o)), KINDS[o.kind]
        item = {
            "id": o.id,
            "patient_id": o.patient_id,
            "kind": o.kind,
            "loinc": kind.loinc,
            "unit": kind.unit,
            "measured_at": o.measured_at,
            "recorded_at": o.recorded_at,
            "recorded_by": o.recorded_by,
            "recorded_by_name": names.get(o.recorded_by),
            "source": o.source,
            "late": o.recorded_at - o.measured_at > LATE,
            "note": sealed.get("note"),
            "alert": o.alert,
            "threshold": sealed.get("threshold"),
            "entered_in_error": o.error_at is not None,
            "error_at": o.error_at,
            "error_by": o.error_by,
        }
        if kind.components:
            item["components"] = sealed["components"]
        else:
            item["value"] = sealed["value"]
        if "bristol" in sealed:
            item["bristol"] = sealed["bristol"]
        out.append(item)
    return out


def _moment(name: str, text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        raise invalid({name: [_("測定日時はISO 8601の日時で入力してください。")]})


def series(
    actor: User,
    patient_id: str,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> dict:
    """Readings oldest first, a page at a time; those marked 誤入力 included (and said so)."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    stmt = select(Observation).where(Observation.patient_id == patient.id)
    if kind:
        stmt = stmt.where(Observation.kind == kind)
    start, end = _moment("since", since), _moment("until", until)
    if start:
        stmt = stmt.where(Observation.measured_at >= start)
    if end:
        stmt = stmt.where(Observation.measured_at < end)
    page, next_cursor = paging.page(
        stmt, Observation.measured_at, Observation.id, cursor=cursor, limit=limit, newest_first=False
    )
    return {"items": _out(patient, page), "next_cursor": next_cursor}


def mark_error(actor: User, patient_id: str, observation_id: str) -> dict:
    """Mark a reading 誤入力: its author, or a physician or nurse of the team. Kept and
    shown struck through; left out of charts and of later alerts."""
    access = patient_access(actor, patient_id, authz.OBSERVE)
    obs = db.session.get(Observation, observation_id) if isinstance(observation_id, str) else None
    if obs is None or obs.patient_id != access.patient.id:
        raise not_found()
    work.describe(detail="observation=" + obs.id)
    if obs.recorded_by != actor.id and not authz.sets_thresholds(access.role):
        raise Problem(403, "Only its author, a physician or a nurse marks a reading as entered in error.")
    if obs.error_at is None:
        obs.error_at, obs.error_by = utcnow(), actor.id
        db.session.flush()
    return _out(access.patient, [obs])[0]
