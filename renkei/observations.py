"""Vital signs and other observations (docs/API.md, "Observations"): what each kind is
(LOINC code, UCUM unit, the values that are possible and those worth a second look),
recording one or several readings, the series a chart draws, each patient's alert
thresholds, and when a reading alerts the team.

A reading is sealed under the patient's key, bound to its patient, kind, time and
author (renkei/vault.py, observation_aad); the kind and times stay plain for queries
(docs/ARCHITECTURE.md, "Observations"). A reading beyond a threshold alerts the team
once per crossing: only when the reading before it of that kind was not beyond one.
Readings measured more than a day before they are recorded, and imported ones, are
marked with the threshold but alert nobody: that news is old."""

import csv
import io
import json
import unicodedata
from bisect import bisect_right, insort
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError

from models import Observation, Patient, ThresholdRevision, User, new_id, utcnow
from renkei import authz, crypto, db, notify, outreach, teams, vault, work
from renkei.authz import patient_access
from renkei.notes import page_cursor
from renkei.problems import Problem, invalid, not_found
from renkei.record import Stale, display_names, parse_version
from renkei.timefmt import JAPAN, parse_iso

LATE = timedelta(hours=24)  # measured this long before it is recorded: marked, no alert
CLOCK_SKEW = timedelta(minutes=5)  # a tablet's clock a little ahead is not "the future"
EARLIEST = datetime(2000, 1, 1)
MAX_ITEMS = 50  # readings in one request
NOTE_MAX = 500


@dataclass(frozen=True)
class Measure:
    """One number: `low`..`high` is possible (outside is refused), `usual_low`..`usual_high`
    is ordinary (outside, the form asks to confirm); `places` decimals at most."""

    low: Decimal
    high: Decimal
    usual_low: Decimal
    usual_high: Decimal
    places: int = 0


def _m(low, high, usual_low, usual_high, places=0) -> Measure:
    return Measure(*(Decimal(str(v)) for v in (low, high, usual_low, usual_high)), places)


@dataclass(frozen=True)
class Kind:
    key: str
    loinc: str | None  # None: no LOINC code maps it one to one; a FHIR export codes it locally
    unit: str  # UCUM
    label: object  # Japanese source, translated by Flask-Babel
    shown_unit: str  # how people write the unit
    measure: Measure | None = None
    components: dict = field(default_factory=dict)  # name → (LOINC, Measure, label)


KINDS = {
    k.key: k
    for k in (
        Kind("body_temperature", "8310-5", "Cel", _l("体温"), "℃", _m(30, 45, 34, 41, 1)),
        Kind(
            "blood_pressure",
            "85354-9",
            "mm[Hg]",
            _l("血圧"),
            "mmHg",
            components={
                "systolic": ("8480-6", _m(50, 300, 70, 220), _l("収縮期血圧")),
                "diastolic": ("8462-4", _m(20, 200, 35, 130), _l("拡張期血圧")),
            },
        ),
        Kind("heart_rate", "8867-4", "/min", _l("脈拍"), "回/分", _m(20, 300, 40, 160)),
        Kind("spo2", "59408-5", "%", _l("SpO2"), "%", _m(50, 100, 85, 100)),
        Kind("respiratory_rate", "9279-1", "/min", _l("呼吸数"), "回/分", _m(2, 80, 8, 40)),
        Kind("body_weight", "29463-7", "kg", _l("体重"), "kg", _m(1, 300, 20, 150, 1)),
        Kind("blood_glucose", "2339-0", "mg/dL", _l("血糖"), "mg/dL", _m(10, 1000, 50, 400)),
        Kind("food_intake", None, "%", _l("食事摂取"), "%", _m(0, 100, 0, 100)),
        Kind("fluid_intake", "9000-1", "mL", _l("水分摂取"), "mL", _m(0, 10000, 0, 4000)),
        Kind("bowel_movement", None, "{count}", _l("排便"), "回", _m(0, 20, 0, 8)),
        Kind("urine_output", "9187-6", "mL", _l("排尿"), "mL", _m(0, 10000, 0, 4000)),
        Kind("pain_score", "72514-3", "{score}", _l("疼痛"), "", _m(0, 10, 0, 10)),
    )
}
BRISTOL = (1, 7)  # Bristol stool form scale, with a bowel movement


# --- reading numbers as people type them ---------------------------------------------


class Refused(Exception):
    """A value that cannot be recorded; the message says why, on the field."""


def number(raw, measure: Measure, label) -> Decimal:
    """A number as sent or typed: JSON numbers, full-width digits, 「36,8」 for 36.8."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    text = unicodedata.normalize("NFKC", str(raw)).strip().replace("−", "-").replace("ー", "-")
    if measure.places == 0 and text.count(",") and all(len(p) == 3 for p in text.split(",")[1:]):
        text = text.replace(",", "")  # 1,200 mL
    elif text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # 36,8 ℃
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    if not value.is_finite():
        raise Refused(_("%(label)sには数値を入力してください。", label=label))
    if not measure.low <= value <= measure.high:
        raise Refused(
            _("%(label)sは%(low)s〜%(high)sの範囲で入力してください。", label=label, low=measure.low, high=measure.high)
        )
    if value != value.quantize(Decimal(1).scaleb(-measure.places)):
        raise Refused(
            _("%(label)sは整数で入力してください。", label=label)
            if measure.places == 0
            else _("%(label)sは小数第%(places)s位までで入力してください。", label=label, places=measure.places)
        )
    return value


def _plain(value: Decimal, measure: Measure):
    return int(value) if measure.places == 0 else float(value)


def _when(raw, now: datetime) -> datetime:
    if raw in (None, ""):
        return now
    if not isinstance(raw, str):
        raise Refused(_("測定日時はISO 8601の日時で入力してください。"))
    try:
        at = parse_iso(raw)
    except ValueError:
        raise Refused(_("測定日時はISO 8601の日時で入力してください。"))
    if at > now + CLOCK_SKEW:
        raise Refused(_("未来の日時は入力できません。"))
    if at < EARLIEST:
        raise Refused(_("測定日時が古すぎます。"))
    return at


def clean_reading(item: dict, now: datetime) -> dict:
    """One reading as the core keeps it, or Problem 422 naming each refused field:
    {"kind", "value" | "components", "measured_at", "note", "bristol"}."""
    kind, errors, out = KINDS[item["kind"]], {}, {"kind": item["kind"]}
    unit = item.get("unit")
    if unit is not None and unit != kind.unit:
        errors["unit"] = [_("%(label)sの単位は %(unit)s です。", label=kind.label, unit=kind.unit)]
    if kind.measure:
        if "components" in item:
            errors["components"] = [_("%(label)sは value で送ってください。", label=kind.label)]
        elif "value" not in item or item["value"] in (None, ""):
            errors["value"] = [_("%(label)sを入力してください。", label=kind.label)]
        else:
            try:
                out["value"] = _plain(number(item["value"], kind.measure, kind.label), kind.measure)
            except Refused as r:
                errors["value"] = [str(r)]
    else:
        given = item.get("components")
        if "value" in item or not isinstance(given, dict):
            errors["components"] = [
                _(
                    "%(label)sは components に %(names)s を送ってください。",
                    label=kind.label,
                    names=", ".join(kind.components),
                )
            ]
        else:
            parts, part_errors = {}, {}
            for name in given.keys() - kind.components.keys():
                part_errors[name] = [_("この項目はありません。")]
            for name, (_loinc, measure, label) in kind.components.items():
                try:
                    if given.get(name) in (None, ""):
                        raise Refused(_("%(label)sを入力してください。", label=label))
                    parts[name] = _plain(number(given[name], measure, label), measure)
                except Refused as r:
                    part_errors[name] = [str(r)]
            if not part_errors and parts.get("diastolic", 0) >= parts.get("systolic", 1):
                part_errors["diastolic"] = [_("拡張期血圧は収縮期血圧より低い値を入力してください。")]
            if part_errors:
                errors["components"] = part_errors
            out["components"] = parts
    try:
        out["measured_at"] = _when(item.get("measured_at"), now)
    except Refused as r:
        errors["measured_at"] = [str(r)]
    note = item.get("note")
    if isinstance(note, str) and note.strip():
        if len(note) > NOTE_MAX:
            errors["note"] = [_("メモは%(n)s文字以内で入力してください。", n=NOTE_MAX)]
        out["note"] = note.strip()
    if item.get("bristol") is not None:
        if item["kind"] != "bowel_movement":
            errors["bristol"] = [_("ブリストル便形状スケールは排便にだけ記録します。")]
        elif isinstance(item["bristol"], bool) or item["bristol"] not in range(BRISTOL[0], BRISTOL[1] + 1):
            errors["bristol"] = [_("ブリストル便形状スケールは1〜7で入力してください。")]
        else:
            out["bristol"] = int(item["bristol"])
    if errors:
        raise Refused(errors)
    return out


# --- thresholds ------------------------------------------------------------------------


def clean_thresholds(raw: dict) -> dict:
    """Thresholds as the core keeps them, or Problem 422 naming each refused field.
    Per kind: "min"/"max", and "rise" with "within_days" (a rise over a window, e.g.
    体重 +2 kg in 3 days); blood pressure: "systolic"/"diastolic", each "min"/"max"."""
    errors, out = {}, {}
    if not isinstance(raw, dict):
        raise invalid({"thresholds": [_("種類ごとの閾値を送ってください。")]})
    for key, spec in raw.items():
        kind = KINDS.get(key)
        if kind is None:
            errors[key] = [_("この種類はありません。")]
            continue
        if not isinstance(spec, dict):
            errors[key] = [_("閾値を送ってください。")]
            continue
        problems = {}
        if kind.measure:
            kept = _bounds(spec, kind.measure, kind.label, problems, ("min", "max", "rise", "within_days"))
            if ("rise" in spec) != ("within_days" in spec):
                problems.setdefault("within_days" if "rise" in spec else "rise", []).append(
                    _("増加幅と日数は組にして送ってください。")
                )
            if "rise" in spec:
                try:
                    m = kind.measure
                    rise = number(
                        spec["rise"],
                        Measure(Decimal(0), m.high - m.low, Decimal(0), m.high - m.low, m.places),
                        _l("増加幅"),
                    )
                    if rise <= 0:
                        raise Refused(_("増加幅は0より大きい値を入力してください。"))
                    kept["rise"] = _plain(rise, m)
                except Refused as r:
                    problems["rise"] = [str(r)]
            if "within_days" in spec:
                days = spec["within_days"]
                if isinstance(days, bool) or days not in range(1, 31):
                    problems["within_days"] = [_("日数は1〜30で入力してください。")]
                else:
                    kept["within_days"] = int(days)
        else:
            kept = {}
            for name in spec.keys() - kind.components.keys():
                problems[name] = [_("この項目はありません。")]
            for name, (_loinc, measure, label) in kind.components.items():
                if name in spec:
                    part_problems = {}
                    if not isinstance(spec[name], dict):
                        problems[name] = [_("閾値を送ってください。")]
                        continue
                    part = _bounds(spec[name], measure, label, part_problems, ("min", "max"))
                    if part_problems:
                        problems[name] = part_problems
                    elif part:
                        kept[name] = part
        if problems:
            errors[key] = problems
        elif kept:
            out[key] = kept
    if errors:
        raise invalid({"thresholds": errors})
    return out


def _bounds(spec: dict, measure: Measure, label, problems: dict, allowed: tuple) -> dict:
    kept = {}
    for name in spec.keys() - set(allowed):
        problems[name] = [_("この項目はありません。")]
    for name in ("min", "max"):
        if spec.get(name) is not None:
            try:
                kept[name] = _plain(number(spec[name], measure, label), measure)
            except Refused as r:
                problems[name] = [str(r)]
    if "min" in kept and "max" in kept and kept["min"] >= kept["max"]:
        problems["max"] = [_("上限は下限より大きい値を入力してください。")]
    return kept


def _current_thresholds(patient: Patient) -> ThresholdRevision | None:
    return db.session.execute(
        select(ThresholdRevision)
        .where(ThresholdRevision.patient_id == patient.id)
        .order_by(ThresholdRevision.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def _thresholds_out(patient: Patient, rev: ThresholdRevision | None, writable: bool) -> dict:
    if rev is None:
        return {
            "thresholds": {},
            "version": 0,
            "updated_at": None,
            "updated_by": None,
            "updated_by_name": None,
            "writable": writable,
        }
    return {
        "thresholds": crypto.unseal_json(vault.patient_key(patient), rev.content_ct, vault.threshold_aad(rev)),
        "version": rev.version,
        "updated_at": rev.created_at,
        "updated_by": rev.created_by,
        "updated_by_name": display_names([rev.created_by]).get(rev.created_by),
        "writable": writable,
    }


def thresholds(actor: User, patient_id: str) -> dict:
    access = patient_access(actor, patient_id, authz.READ)
    return _thresholds_out(
        access.patient,
        _current_thresholds(access.patient),
        not access.breakglass and authz.sets_thresholds(access.role),
    )


def set_thresholds(actor: User, patient_id: str, raw: dict, based_on) -> dict:
    """A new version of the patient's thresholds, based on version `based_on` (412 if
    they moved on since). The same thresholds again write nothing (as a section)."""
    access = patient_access(actor, patient_id, authz.THRESHOLDS)
    patient = access.patient
    expected = parse_version(based_on)
    content = clean_thresholds(raw)
    rev = _current_thresholds(patient)
    current = _thresholds_out(patient, rev, True)
    if content == current["thresholds"]:
        work.describe(detail="unchanged")
        return current
    if current["version"] != expected:
        raise Stale(current, "thresholds")
    new = ThresholdRevision(
        id=new_id(), patient_id=patient.id, version=expected + 1, created_by=actor.id, created_at=utcnow()
    )
    new.content_ct = crypto.seal_json(vault.patient_key(patient), content, vault.threshold_aad(new))
    try:
        with db.session.begin_nested():
            db.session.add(new)
    except IntegrityError:  # another writer took this version first
        raise Stale(_thresholds_out(patient, _current_thresholds(patient), True), "thresholds")
    work.describe(detail=f"version={new.version}")
    return _thresholds_out(patient, new, True)


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


def _outside(value, bounds: dict) -> dict | None:
    if "min" in bounds and value < bounds["min"]:
        return {"min": bounds["min"]}
    if "max" in bounds and value > bounds["max"]:
        return {"max": bounds["max"]}
    return None


# --- recording and reading ---------------------------------------------------------------


def record(actor: User, patient_id: str, items: list[dict], many: bool = False, source: str = "entry") -> list[dict]:
    """Record readings (any team member; break-glass reads only). Each is checked first:
    one refused value refuses them all (422; sent as a list, the fields are items.N.…)."""
    patient = patient_access(actor, patient_id, authz.OBSERVE).patient
    rev = _current_thresholds(patient)
    limits = _thresholds_out(patient, rev, False)["thresholds"] if rev else {}
    if any(item["kind"] in limits for item in items):
        # One recorder at a time per patient decides "the reading before", and "now" is
        # read after the wait: two nurses saving at once must not both raise the same crossing.
        _one_recorder_at_a_time(patient)
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
        kind: _history(patient, key, kind, [r for r in cleaned if r["kind"] == kind], limits[kind])
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
            kind, bounds, history = KINDS[obs.kind], limits[obs.kind], known[obs.kind]
            at = bisect_right(history, obs.measured_at, key=lambda h: h[0])
            earlier, later = history[:at], history[at:]
            crossed = beyond(kind, reading, bounds, earlier)
            # The crossing this reading belongs to was told already if the reading next to
            # it, before or (back-dated) after, is beyond too and its crossing was told.
            # A late or imported reading beyond tells nobody, so it passes nothing on.
            told = bool(crossed) and (
                bool(earlier)
                and earlier[-1][1].get("told", False)
                and bool(beyond(kind, earlier[-1][1], bounds, earlier[:-1]))
                or bool(later)
                and later[0][1].get("told", False)
                and bool(beyond(kind, later[0][1], bounds, [*earlier, (obs.measured_at, reading)]))
            )
            fires = bool(crossed) and not told and source == "entry" and now - obs.measured_at <= LATE
            reading["told"] = fires or told
            insort(history, (obs.measured_at, reading), key=lambda h: h[0])  # the next reading sees this one
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
        notify.queue(
            "observation.alert", patient.id, {"observation_id": obs.id, "kind": obs.kind, "actor_id": actor.id}
        )
        outreach.tell(
            "observation.alert",
            patient.id,
            [m.id for m in teams.members(patient.id)],
            actor_id=actor.id,
            observation_id=obs.id,
        )
    return _out(patient, rows)


def _one_recorder_at_a_time(patient: Patient):
    """Wait for any other transaction recording this patient's readings (FOR NO KEY
    UPDATE of the patient row: the inserts' foreign keys to it still pass)."""
    db.session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update(key_share=True))


def _history(patient: Patient, key: bytes, kind: str, new: list[dict], limits: dict) -> list[tuple[datetime, dict]]:
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
    start, end, after = _moment("since", since), _moment("until", until), page_cursor(cursor)
    if start:
        stmt = stmt.where(Observation.measured_at >= start)
    if end:
        stmt = stmt.where(Observation.measured_at < end)
    if after:
        stmt = stmt.where(tuple_(Observation.measured_at, Observation.id) > tuple_(*after))
    rows = list(db.session.execute(stmt.order_by(Observation.measured_at, Observation.id).limit(limit + 1)).scalars())
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": _out(patient, page),
        "next_cursor": f"{page[-1].measured_at.isoformat(timespec='microseconds')}|{page[-1].id}" if more else None,
    }


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


# --- what a chart and the care list show ------------------------------------------------

_RANGE = select(
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


def overview(actor: User, patient_id: str, days: int, since: datetime | None = None, table: bool = False) -> dict:
    """The readings of the last `days` days for charts and their table: per kind its
    points (誤入力 left out), latest reading and its change since `since` (the caller's
    last look), and the thresholds (as `thresholds` answers them); with `table`, each
    reading whole, with who recorded it. Rows are read without the ORM and opened in one pass:
    a year of four readings a day for eight kinds must not make the page slow
    (bench/vitals.py)."""
    access = patient_access(actor, patient_id, authz.READ)
    patient, now = access.patient, utcnow()
    start = now - timedelta(days=days)
    key = vault.patient_key(patient)
    rows = db.session.execute(
        _RANGE.where(Observation.patient_id == patient.id, Observation.measured_at >= start).order_by(
            Observation.measured_at, Observation.recorded_at
        )
    ).all()
    open_json = crypto.opener(key)
    readings = [_opened(row, open_json) if table else _charted(row, open_json) for row in rows]
    if table:  # charts name nobody
        names = display_names({r["recorded_by"] for r in readings})
        for r in readings:
            r["recorded_by_name"] = names.get(r["recorded_by"])
    thresholds_now = _thresholds_out(
        patient, _current_thresholds(patient), not access.breakglass and authz.sets_thresholds(access.role)
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
        latest = points[-1]
        seen = [p for p in points if since is not None and p["recorded_at"] <= since]
        charts.append(
            {
                "kind": kind,
                "points": points,
                "latest": latest,
                "limits": limits.get(kind.key, {}),
                "change": _change(kind, seen[-1], latest) if seen and seen[-1] is not latest else None,
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
    """What a chart needs of a reading (_opened has the rest, for the table)."""
    reading = open_json(row.value_ct, vault.observation_aad(row))
    reading.update(
        id=row.id,
        kind=row.kind,
        measured_at=row.measured_at,
        recorded_at=row.recorded_at,
        entered_in_error=row.error_at is not None,
    )
    return reading


def _opened(row, open_json) -> dict:
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
            name: _plain(Decimal(str(now["components"][name])) - Decimal(str(before["components"][name])), m)
            for name, (_loinc, m, _label) in kind.components.items()
        }
    return {"value": _plain(Decimal(str(now["value"])) - Decimal(str(before["value"])), kind.measure)}


# --- importing a device's CSV -------------------------------------------------------------

CSV_COLUMNS = ("measured_at", "kind", "value", "unit", "note")
CSV_MAX_ROWS = 5000


def _kind_names() -> dict[str, str]:
    """A kind by its key (body_temperature), its Japanese name (体温) whatever the page's
    language, or its name in the page's language."""
    names = {key: key for key in KINDS}
    for lang in ("ja", None):
        with force_locale(lang) if lang else nullcontext():
            names |= {unicodedata.normalize("NFKC", str(k.label)): k.key for k in KINDS.values()}
    return names


_CSV_TIMES = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")  # 2026/11/30 8:05, as devices write it


def _csv_time(text: str) -> str | None:
    """ISO 8601 or 2026/11/30 8:05; Japan time without an offset. None if it is neither:
    clean_reading then refuses it, naming measured_at."""
    text = unicodedata.normalize("NFKC", text).strip().replace("/", "-")
    at = None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        for form in _CSV_TIMES:
            try:
                at = datetime.strptime(text, form)
                break
            except ValueError:
                continue
    if at is None:
        return text or None
    if at.tzinfo is None:
        at = at.replace(tzinfo=JAPAN)
    return at.isoformat()


def read_csv(text: str) -> list[dict]:
    """Rows of a CSV in the documented format (docs/API.md, "Observations": importing),
    each {"line", "item"} or {"line", "errors"}; the header row names the columns."""
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as err:  # a field over the csv module's limit, a NUL, an unclosed quote at the end
        raise invalid({"csv": [_("CSVとして読めません（%(why)s）。", why=str(err))]})
    head = [unicodedata.normalize("NFKC", c).strip().lower() for c in rows[0]] if rows else []
    if head[:3] != list(CSV_COLUMNS[:3]):
        raise invalid({"csv": [_("1行目は見出し（measured_at,kind,value,unit,note）にしてください。")]})
    body = [(n, r) for n, r in enumerate(rows[1:], start=2) if any(c.strip() for c in r)]
    if len(body) > CSV_MAX_ROWS:
        raise invalid({"csv": [_("一度に取り込めるのは%(n)s行までです。", n=CSV_MAX_ROWS)]})
    out, names = [], _kind_names()
    for line, cells in body:
        row = dict(zip(head, (c.strip() for c in cells)))
        kind = names.get(unicodedata.normalize("NFKC", row.get("kind", "")).strip())
        at = _csv_time(row.get("measured_at", ""))
        if kind is None or at is None:  # a row without a time is not "now": it would never be a duplicate
            out.append(
                {
                    "line": line,
                    "errors": {
                        **({"kind": [_("この種類はありません。")]} if kind is None else {}),
                        **({"measured_at": [_("測定日時を入力してください。")]} if at is None else {}),
                    },
                }
            )
            continue
        item = {"kind": kind, "measured_at": at}
        value = row.get("value", "")
        if KINDS[kind].components:
            parts = value.replace("／", "/").split("/")
            item["components"] = dict(zip(KINDS[kind].components, parts)) if len(parts) == 2 else {}
        else:
            item["value"] = value
        unit = row.get("unit", "")
        if unit and unit != KINDS[kind].shown_unit:
            item["unit"] = unit
        if row.get("note"):
            item["note"] = row["note"]
        out.append({"line": line, "item": item})
    return out


def import_csv(actor: User, patient_id: str, text: str, save: bool) -> dict:
    """Preview (save=False: nothing is written) or save a CSV of readings. A reading the
    patient already has — same kind, time and value — or that the file repeats is a
    duplicate and skipped; any refused row refuses the save (fix the file and try
    again). Imported readings are marked with any threshold they were beyond but alert
    nobody."""
    access = patient_access(actor, patient_id, authz.OBSERVE)
    if save:  # two people importing one file at once: the second sees the first's readings
        _one_recorder_at_a_time(access.patient)
    now, rows = utcnow(), read_csv(text)
    for row in rows:
        if "item" in row:
            try:
                row["reading"] = clean_reading(row.pop("item"), now)
            except Refused as r:
                row["errors"] = r.args[0]
    good = [r for r in rows if "reading" in r]
    seen = _existing(access.patient, {r["reading"]["measured_at"] for r in good})
    for row in good:
        fingerprint = _fingerprint(row["reading"])
        row["duplicate"] = fingerprint in seen
        seen.add(fingerprint)
    refused = [r for r in rows if "errors" in r]
    fresh = [r["reading"] for r in good if not r["duplicate"]]
    saved = []
    if save:
        if refused:
            raise invalid(
                {"csv": {str(r["line"]): r["errors"] for r in refused}}, "Some rows are refused; nothing was saved."
            )
        if fresh:
            saved = record(actor, patient_id, [_as_item(r) for r in fresh], many=True, source="import")
    work.describe(detail=f"import={'saved' if save else 'preview'};rows={len(rows)};new={len(fresh)}")
    return {
        "rows": [
            {
                "line": r["line"],
                "errors": r.get("errors"),
                "duplicate": r.get("duplicate", False),
                **(
                    {
                        "kind": r["reading"]["kind"],
                        "measured_at": r["reading"]["measured_at"],
                        **{k: r["reading"][k] for k in ("value", "components", "note") if k in r["reading"]},
                    }
                    if "reading" in r
                    else {}
                ),
            }
            for r in rows
        ],
        "new": len(fresh),
        "duplicates": sum(1 for r in good if r["duplicate"]),
        "refused": len(refused),
        "saved": [o["id"] for o in saved],
    }


def _as_item(reading: dict) -> dict:
    return {
        **{k: v for k, v in reading.items() if k != "measured_at"},
        "measured_at": reading["measured_at"].isoformat(),
    }


def _fingerprint(reading: dict) -> tuple:
    value = reading.get("value", reading.get("components"))
    return reading["kind"], reading["measured_at"].replace(microsecond=0), json.dumps(value, sort_keys=True)


def _existing(patient: Patient, times: set) -> set:
    """The fingerprints of the patient's stored readings at these times (誤入力 left out)."""
    if not times:
        return set()
    open_json, found = crypto.opener(vault.patient_key(patient)), set()
    stamps = sorted(times)
    rows = db.session.execute(
        _RANGE.where(
            Observation.patient_id == patient.id,
            Observation.error_at.is_(None),
            Observation.measured_at >= stamps[0].replace(microsecond=0),
            Observation.measured_at < stamps[-1] + timedelta(seconds=1),
        )
    ).all()
    for row in rows:
        found.add(_fingerprint({"kind": row.kind, "measured_at": row.measured_at, **_opened(row, open_json)}))
    return found
