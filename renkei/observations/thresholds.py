"""Each patient's alert thresholds: set by the team's physicians and nurses as new
versions (renkei/record/versioned.py), sealed under the patient's key."""

from decimal import Decimal

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from models import Patient, ThresholdRevision, User, new_id, utcnow
from renkei.common import crypto, db, vault, work
from renkei.common.problems import invalid
from renkei.observations.kinds import KINDS, Measure
from renkei.observations.numbers import Refused, number, plain
from renkei.patients import authz
from renkei.patients.authz import patient_access
from renkei.record import versioned
from renkei.record.revisions import display_names

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
                    kept["rise"] = plain(rise, m)
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
                kept[name] = plain(number(spec[name], measure, label), measure)
            except Refused as r:
                problems[name] = [str(r)]
    if "min" in kept and "max" in kept and kept["min"] >= kept["max"]:
        problems["max"] = [_("上限は下限より大きい値を入力してください。")]
    return kept


def latest(patient: Patient) -> ThresholdRevision | None:
    return db.session.execute(
        select(ThresholdRevision)
        .where(ThresholdRevision.patient_id == patient.id)
        .order_by(ThresholdRevision.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def thresholds_out(patient: Patient, rev: ThresholdRevision | None, writable: bool) -> dict:
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
    return thresholds_out(
        access.patient,
        latest(access.patient),
        not access.breakglass and authz.sets_thresholds(access.role),
    )


def set_thresholds(actor: User, patient_id: str, raw: dict, based_on: int | None) -> dict:
    """A new version of the patient's thresholds, based on version `based_on` (412 if
    they moved on since). The same thresholds again write nothing (as a section)."""
    patient = patient_access(actor, patient_id, authz.THRESHOLDS).patient
    expected = versioned.edited_version(based_on)
    content = clean_thresholds(raw)
    current, written = thresholds_out(patient, latest(patient), True), []

    def add(version: int):
        new = ThresholdRevision(
            id=new_id(), patient_id=patient.id, version=version, created_by=actor.id, created_at=utcnow()
        )
        new.content_ct = crypto.seal_json(vault.patient_key(patient), content, vault.threshold_aad(new))
        db.session.add(new)
        written.append(new)

    version = versioned.write(
        current,
        content != current["thresholds"],
        expected,
        add,
        lambda: thresholds_out(patient, latest(patient), True),
        "thresholds",
    )
    if version is None:
        return current
    work.describe(detail=f"version={version}")
    return thresholds_out(patient, written[0], True)
