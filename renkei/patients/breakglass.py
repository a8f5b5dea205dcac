"""Break-glass (緊急時アクセス): a physician or nurse off the team opens a record for a
limited time, read-only, with a reason; audited and announced to the team and the
administrators at once."""

from datetime import date, timedelta

from flask import current_app
from sqlalchemy import select

from models import BreakGlass, Patient, User, new_id, utcnow
from renkei.common import crypto, db, vault, work
from renkei.common.problems import Problem, not_found
from renkei.common.timefmt import iso
from renkei.outreach import events, tell
from renkei.patients import authz, registry
from renkei.patients.authz import patient_access
from renkei.people import auth, staff, throttle

LOOKUPS_PER_WINDOW = 10  # finds by code or name per person per lockout window (settings.lockout_seconds)


def _may_break_glass(actor: User):
    # Checked before the patient is looked up, so the answer says nothing about it.
    staff.require_confirmed(actor)
    if actor.profession not in authz.BREAKGLASS_PROFESSIONS or actor.is_admin or actor.is_auditor:
        raise Problem(403, "Only physicians and nurses may use break-glass access.")
    if not auth.has_second_factor(actor):  # always: a password alone never opens another team's patient
        raise Problem(
            403,
            "Break-glass needs your second factor: enrol it on your account page first.",
            type_="/problems/second-factor-needed",
        )


def open_grant(actor: User, patient_id: str, reason: str, otp: str | None, passkey=None) -> dict:
    _may_break_glass(actor)
    throttle.count_lookup("breakglass", actor, LOOKUPS_PER_WINDOW)  # wrong codes cannot be tried on and on
    patient = authz.live_patient(patient_id)
    if patient is None:
        raise not_found()
    return _open(actor, patient, reason, otp, passkey)


def open_found(
    actor: User,
    reason: str,
    otp: str | None,
    code: str | None = None,
    name: str | None = None,
    birth_date: date | None = None,
    passkey=None,
) -> dict:
    """Break-glass for a patient found by the emergency sheet's code, or by full name (or
    kana) and birth date together — exact, through the blind index. Finding is an
    oracle of who is a patient, so it needs the second factor first, is rate-limited
    per person, and leaves in the access log only a keyed hash of what was typed."""
    _may_break_glass(actor)
    typed = (
        vault.sheet_code_digest(code)
        if code
        else vault.keyed_digest("breakglass_lookup", f"{crypto.normalize_name(name)}|{birth_date.isoformat()}")
    )
    work.describe(detail=("code=" if code else "lookup=") + typed)
    throttle.count_lookup("breakglass", actor, LOOKUPS_PER_WINDOW)
    if not auth.check_second_factor(actor, otp, passkey):
        raise Problem(
            401,
            "Confirm with your passkey or a one-time code from your authenticator app.",
            type_="/problems/otp-required",
            otp_required=True,
        )
    db.session.commit()  # the code is spent even if nothing is found: one code, one lookup
    patient = registry.by_sheet_code(code) if code else _by_name_and_birth(name, birth_date)
    if patient is None or patient.wrapped_key is None:
        raise not_found()
    work.describe(patient_id=patient.id)
    return _open(actor, patient, reason, otp, passkey, checked=True)


def _by_name_and_birth(name: str, birth_date: date) -> Patient | None:
    wanted = vault.name_index(name)
    candidates = db.session.execute(
        select(Patient).where(
            (Patient.name_index == wanted) | (Patient.kana_index == wanted), Patient.deleted_at.is_(None)
        )
    ).scalars()
    found = [p for p in candidates if registry.demographics(p)["birth_date"] == birth_date.isoformat()]
    if len(found) > 1:  # the log says which, as it would for a grant
        work.current().mark("candidates=" + ",".join(p.id for p in found[:4]))
        raise Problem(409, "More than one patient has this name and birth date: use the code on the sheet.")
    return found[0] if found else None


def _open(actor: User, patient: Patient, reason: str, otp: str | None, passkey=None, checked: bool = False) -> dict:
    # One open grant per person and patient, also under parallel requests: they queue here.
    db.session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update())
    if authz.current_membership(patient.id, actor.id) is not None:
        raise Problem(409, "You are on this patient's team already.", patient_id=patient.id)
    open_now = authz.active_breakglass(patient.id, actor.id)
    if open_now is not None:  # one open grant per person and patient; it is not extended
        raise Problem(
            409, "Your emergency access to this patient is already open.", expires_at=iso(open_now.expires_at)
        )
    if not checked and not auth.check_second_factor(actor, otp, passkey):
        raise Problem(
            401,
            "Confirm with your passkey or a one-time code from your authenticator app.",
            type_="/problems/otp-required",
            otp_required=True,
        )
    seconds = current_app.config["RENKEI"].breakglass_seconds
    grant = BreakGlass(
        id=new_id(),
        patient_id=patient.id,
        user_id=actor.id,
        opened_at=utcnow(),
        expires_at=utcnow() + timedelta(seconds=seconds),
    )
    grant.reason_ct = crypto.seal(
        vault.patient_key(patient), reason.encode(), vault.breakglass_aad(patient.id, grant.id)
    )
    db.session.add(grant)
    db.session.flush()
    events.queue(
        "breakglass.opened", patient.id, {"actor_id": actor.id, "reason_given": True}, also_to=events.admin_user_ids()
    )
    tell.tell("breakglass.opened", patient.id, events.team_user_ids(patient.id), actor_id=actor.id)
    return {"id": grant.id, "patient_id": patient.id, "expires_at": grant.expires_at}


def _grant_out(grant: BreakGlass, patient: Patient, key: bytes, name: str) -> dict:
    reason = crypto.unseal(key, grant.reason_ct, vault.breakglass_aad(patient.id, grant.id)).decode()
    return {
        "id": grant.id,
        "patient_id": patient.id,
        "user_id": grant.user_id,
        "display_name": name,
        "opened_at": grant.opened_at,
        "expires_at": grant.expires_at,
        "reason": reason,
        "open": grant.expires_at > utcnow(),
    }


def grants(actor: User, patient_id: str) -> list[dict]:
    """Who opened this patient's record in an emergency, when and why — for the team; a
    break-glass reader sees only their own grants."""
    access = patient_access(actor, patient_id, authz.READ)
    patient = access.patient
    stmt = (
        select(BreakGlass, User.display_name)
        .join(User, User.id == BreakGlass.user_id)
        .where(BreakGlass.patient_id == patient.id)
    )
    if access.breakglass:
        stmt = stmt.where(BreakGlass.user_id == actor.id)
    rows = db.session.execute(stmt.order_by(BreakGlass.opened_at.desc())).all()
    key = vault.patient_key(patient)  # unwrapped once, not per grant
    return [_grant_out(g, patient, key, name) for g, name in rows]


def open_now(reader: User) -> list[dict]:
    """Emergency accesses open right now, for administrators: who, which patient (an id),
    since and until when — the reasons stay with the team and the auditors."""
    staff.require_staff(reader, "admin")
    rows = db.session.execute(
        select(BreakGlass, User.display_name)
        .join(User, User.id == BreakGlass.user_id)
        .where(BreakGlass.expires_at > utcnow())
        .order_by(BreakGlass.opened_at.desc())
    ).all()
    return [
        {
            "user_id": g.user_id,
            "display_name": name,
            "patient_id": g.patient_id,
            "opened_at": g.opened_at,
            "expires_at": g.expires_at,
        }
        for g, name in rows
    ]


def all_grants(reader: User, limit: int = 500) -> list[dict]:
    """Every emergency access with its reason, newest first, for the auditors."""
    staff.require_staff(reader, "auditor")
    rows = db.session.execute(
        select(BreakGlass, Patient, User.display_name)
        .join(Patient, Patient.id == BreakGlass.patient_id)
        .join(User, User.id == BreakGlass.user_id)
        .where(Patient.wrapped_key.is_not(None))  # a shredded patient's reasons are gone
        .order_by(BreakGlass.opened_at.desc())
        .limit(limit)
    ).all()
    keys: dict[str, bytes] = {}  # one unwrap per patient, however many grants it has
    out = []
    for grant, patient, name in rows:
        if patient.id not in keys:
            keys[patient.id] = vault.patient_key(patient)
        out.append(_grant_out(grant, patient, keys[patient.id], name))
    return out
