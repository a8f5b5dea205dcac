"""Patients and their consent: register, list, read, delete (crypto-shred), and the
consent to share that every team member but the registrant needs."""

from datetime import date

from sqlalchemy import case, func, select, true, update
from sqlalchemy.orm.attributes import set_committed_value

from models import (
    BreakGlass,
    Consent,
    Note,
    NoteAck,
    NoteSeen,
    Observation,
    Patient,
    PatientSearchToken,
    SectionRevision,
    TeamMember,
    User,
    new_id,
    utcnow,
)
from renkei.common import crypto, db, vault, work
from renkei.common.problems import Problem, invalid
from renkei.common.timefmt import japan_today
from renkei.patients import authz
from renkei.patients import consent as consent_rules
from renkei.patients.authz import PROFESSION_ROLES, patient_access
from renkei.people import staff

# --- demographics -------------------------------------------------------------------


def seal_demographics(patient: Patient, key: bytes, data: dict):
    patient.demographics_ct = crypto.seal_json(key, data, vault.demographics_aad(patient.id))
    vault.index_name(patient, data["name"], data["name_kana"])


def index_missing_names() -> list[str]:
    """Give patients registered before prefix search (migration 0008) their tokens;
    run by `init-db`, which holds the keys a migration does not. Each decryption is
    in the access log (no person asked for it: no actor)."""
    indexed = select(PatientSearchToken.patient_id)
    todo = (
        db.session.execute(select(Patient).where(Patient.demographics_ct.is_not(None), Patient.id.not_in(indexed)))
        .scalars()
        .all()
    )
    for patient in todo:
        data = demographics(patient)
        vault.index_name(patient, data["name"], data["name_kana"])
        work.current().add_entry("patient.index_names", "ok", patient_id=patient.id)
    return [p.id for p in todo]


def demographics(patient: Patient) -> dict:
    key = vault.patient_key(patient)
    return crypto.unseal_json(key, patient.demographics_ct, vault.demographics_aad(patient.id))


def patient_out(
    patient: Patient,
    role: str | None,
    *,
    breakglass=False,
    member=None,
    consent: bool | None = None,
    show_demographics=True,
) -> dict:
    out = {
        "id": patient.id,
        "my_role": role,
        "breakglass": breakglass,
        "consent": authz.has_consent(patient.id) if consent is None else consent,
        "created_at": patient.created_at,
    }
    if show_demographics:
        out.update(demographics(patient))
    if member is not None:
        out.update(activity(member.user_id, [patient.id])[patient.id])
    return out


# --- what changed since my last look --------------------------------------------------


def activity(user_id: str, ids: list[str]) -> dict[str, dict]:
    """For each patient: sections others changed since the member's last look, when the
    record last changed, urgent notes the member has not acknowledged, whether someone
    off the team has it open in an emergency now, and readings by others that alerted
    the team since that look, and the member's unread notes. Seven queries however many patients (the care list and the
    patient page share this)."""
    mine = (TeamMember.user_id == user_id) & TeamMember.removed_at.is_(None)
    changed: dict[str, set] = {}
    for pid, section in db.session.execute(
        select(SectionRevision.patient_id, SectionRevision.section)
        .join(TeamMember, (TeamMember.patient_id == SectionRevision.patient_id) & mine)
        .where(
            SectionRevision.patient_id.in_(ids),
            SectionRevision.created_by != user_id,
            SectionRevision.created_at > func.coalesce(TeamMember.last_viewed_at, TeamMember.added_at),
        )
        .distinct()
    ):
        changed.setdefault(pid, set()).add(section)
    updated = dict(
        db.session.execute(
            select(SectionRevision.patient_id, func.max(SectionRevision.created_at))
            .where(SectionRevision.patient_id.in_(ids))
            .group_by(SectionRevision.patient_id)
        ).all()
    )
    acked = select(NoteAck.note_id).where(NoteAck.user_id == user_id)
    urgent = dict(
        db.session.execute(
            select(Note.patient_id, func.count(Note.id))
            .where(Note.patient_id.in_(ids), Note.urgent.is_(True), Note.created_by != user_id, Note.id.not_in(acked))
            .group_by(Note.patient_id)
        ).all()
    )
    unread = {
        pid: (count, int(urgent_count or 0))
        for pid, count, urgent_count in db.session.execute(  # notes by others since I joined, not yet seen
            select(Note.patient_id, func.count(Note.id), func.sum(case((Note.urgent.is_(True), 1), else_=0)))
            .join(TeamMember, (TeamMember.patient_id == Note.patient_id) & mine)
            .where(
                Note.patient_id.in_(ids),
                Note.created_by != user_id,
                Note.created_at >= TeamMember.added_at,
                Note.id.not_in(select(NoteSeen.note_id).where(NoteSeen.user_id == user_id)),
            )
            .group_by(Note.patient_id)
        )
    }
    emergency = set(
        db.session.execute(
            select(BreakGlass.patient_id).where(BreakGlass.patient_id.in_(ids), BreakGlass.expires_at > utcnow())
        ).scalars()
    )
    alerts = dict(
        db.session.execute(  # readings by others that alerted the team since my look
            select(Observation.patient_id, func.count(Observation.id))
            .join(TeamMember, (TeamMember.patient_id == Observation.patient_id) & mine)
            .where(
                Observation.patient_id.in_(ids),
                Observation.alert == true(),
                Observation.error_at.is_(None),
                Observation.recorded_by != user_id,
                Observation.recorded_at > func.coalesce(TeamMember.last_viewed_at, TeamMember.added_at),
            )
            .group_by(Observation.patient_id)
        ).all()
    )
    return {
        pid: {
            "changed_since_my_last_view": sorted(changed.get(pid, ())),
            "updated_at": updated.get(pid),
            "urgent_unacknowledged": urgent.get(pid, 0),
            "unread_notes": unread.get(pid, (0, 0))[0],
            "unread_urgent": unread.get(pid, (0, 0))[1],
            "emergency_access_open": pid in emergency,
            "alerts_since_my_last_view": alerts.get(pid, 0),
        }
        for pid in ids
    }


def mark_viewed(member: TeamMember | None):
    """Restart "what changed since my last look". Written at most once a minute per
    member (a read should not always be a write); a stale mark only shows more as new.
    So a read never waits for the row: if another transaction holds it (usually another
    read moving the same mark; or a change to the membership), the mark is left as it
    is this time (SKIP LOCKED) — the safe direction."""
    now = utcnow()
    if member is not None and (member.last_viewed_at is None or (now - member.last_viewed_at).total_seconds() > 60):
        free = select(TeamMember.id).where(TeamMember.id == member.id).with_for_update(skip_locked=True)
        moved = db.session.execute(
            update(TeamMember)
            .where(TeamMember.id.in_(free))
            .values(last_viewed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved:
            set_committed_value(member, "last_viewed_at", now)


# --- operations ---------------------------------------------------------------------


def register(actor: User, data: dict) -> dict:
    """Register a patient; the registrant joins the team in the role of their profession."""
    staff.require_confirmed(actor)
    roles = PROFESSION_ROLES[actor.profession]
    if not roles:
        raise Problem(403, "Only care professionals register patients.")
    data = dict(data)
    consent = data.pop("consent", None)
    patient = Patient(id=new_id(), registered_by=actor.id)
    key = vault.new_patient_key(patient)
    birth = data["birth_date"]
    if isinstance(birth, date) and not plausible_birth_date(birth):
        raise invalid({"birth_date": ["Not a plausible birth date."]})
    seal_demographics(patient, key, {**data, "birth_date": birth.isoformat() if isinstance(birth, date) else birth})
    db.session.add(patient)
    db.session.flush()
    db.session.add(
        TeamMember(patient_id=patient.id, user_id=actor.id, role=roles[0], added_by=actor.id, last_viewed_at=utcnow())
    )
    db.session.flush()
    work.describe(patient_id=patient.id)
    if consent:  # its own access-log entry, found where auditors look for consents
        recorded = consent_rules.record_consent(actor, patient.id, **consent)
        work.current().add_entry(
            "consent.create",
            "ok",
            actor=actor,
            patient_id=patient.id,
            detail=f"consent={recorded['id']};at_registration",
        )
    return patient_out(patient, roles[0], consent=bool(consent))


def care_list(actor: User, name: str | None = None) -> list[dict]:
    """The caller's patients, in kana order, with what changed since their last look and
    their urgent unacknowledged notes: a fixed number of queries however many patients.
    `name`: only patients whose full name or kana, or family-name prefix, it is."""
    staff.require_confirmed(actor)
    stmt = (
        select(Patient, TeamMember)
        .join(TeamMember, TeamMember.patient_id == Patient.id)
        .where(TeamMember.user_id == actor.id, TeamMember.removed_at.is_(None), Patient.deleted_at.is_(None))
        .order_by(Patient.created_at)
    )
    if name is not None:
        # Only patients whose name the caller may see are searched at all (the rule of
        # renkei/patients/authz.py, as below), so neither the answer nor how long it takes says
        # anything about the others. The blind index finds the candidates; their
        # decrypted names confirm them (a prefix token stands for five characters at most).
        may_see = Patient.id.in_(select(Consent.patient_id).where(Consent.withdrawn_at.is_(None))) | (
            (Patient.registered_by == actor.id) & Patient.id.not_in(select(Consent.patient_id))
        )
        wanted = vault.name_index(name)
        prefixed = select(PatientSearchToken.patient_id).where(PatientSearchToken.token == vault.prefix_token(name))
        stmt = stmt.where(
            may_see, (Patient.name_index == wanted) | (Patient.kana_index == wanted) | Patient.id.in_(prefixed)
        )
    rows = db.session.execute(stmt).all()
    ids = [p.id for p, _ in rows]
    if not ids:
        return []
    consents = db.session.execute(
        select(Consent.patient_id, Consent.withdrawn_at).where(Consent.patient_id.in_(ids))
    ).all()
    consented = {pid for pid, withdrawn in consents if withdrawn is None}
    ever = {pid for pid, _ in consents}
    recent = activity(actor.id, ids)
    items = []
    for patient, member in rows:
        consent = patient.id in consented
        # The same rule as renkei/patients/authz.py: the registrant sees the name while setting the
        # record up; after a withdrawal nobody does until a new consent.
        setting_up = patient.registered_by == actor.id and patient.id not in ever
        out = patient_out(patient, member.role, consent=consent, show_demographics=consent or setting_up)
        out["consent_withdrawn"] = not consent and patient.id in ever
        if name is not None and not crypto.name_matches(name, out["name"], out["name_kana"]):
            continue
        out.update(recent[patient.id])
        items.append(out)
    # 五十音順 by kana, as a care manager's own list is kept; hidden names last.
    return sorted(items, key=lambda i: (not i.get("name_kana"), crypto.normalize_name(i.get("name_kana") or "")))


def sheet_code(actor: User, patient_id: str) -> str:
    """The code printed on the patient's emergency sheet. Printing it is what makes the
    patient findable by it (break-glass, the QR code): a code nobody printed finds nothing."""
    patient = patient_access(actor, patient_id, authz.READ).patient
    code = vault.sheet_code(patient.id)
    if patient.sheet_code_index is None:
        patient.sheet_code_index = vault.sheet_code_index(code)
    return code


def by_sheet_code(typed: str) -> Patient | None:
    """The live patient whose printed sheet carries this code. No access check: callers
    decide what the caller may learn (renkei/patients/breakglass.py, web/pages.py open_by_code)."""
    return db.session.execute(
        select(Patient).where(Patient.sheet_code_index == vault.sheet_code_index(typed), Patient.deleted_at.is_(None))
    ).scalar_one_or_none()


def ids_of(actor: User) -> list[str]:
    """The patients whose team the caller is on, in the order they joined."""
    return list(
        db.session.execute(
            select(TeamMember.patient_id)
            .where(TeamMember.user_id == actor.id, TeamMember.removed_at.is_(None))
            .order_by(TeamMember.added_at)
        ).scalars()
    )


def read(actor: User, patient_id: str, activity: bool = True) -> dict:
    """Demographics, my role, consent and (unless `activity` is False: a page that shows
    none of it) what changed since my last look, before this look is marked. Under
    break-glass, also when the grant ends."""
    access = patient_access(actor, patient_id, authz.READ)
    out = patient_out(
        access.patient, access.role, breakglass=access.breakglass, member=access.member if activity else None
    )
    if access.member is not None:  # what "since my last look" is measured from
        out["my_last_look"] = access.member.last_viewed_at or access.member.added_at
    if access.breakglass:
        out["breakglass_until"] = authz.active_breakglass(access.patient.id, actor.id).expires_at
    return out


def plausible_birth_date(value: date) -> bool:
    """Not in the future (in Japan) and not before 1880: the API's schema and every
    other door ask here."""
    return 1880 <= value.year and value <= japan_today()
