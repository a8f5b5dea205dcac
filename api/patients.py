"""Patients, consent and teams."""
from flask_login import current_user
from sqlalchemy import func, select

from api import endpoint, set_audit
from api.schemas import (ConsentIn, ConsentList, ConsentOut, PatientIn, PatientList,
                         PatientOut, PatientQuery, TeamIn, TeamList, TeamMemberOut)
from models import (Consent, Note, NoteAck, Patient, SectionRevision, TeamMember, User,
                    new_id, utcnow)
from renkei import authz, crypto, db, notify, vault
from renkei.authz import PROFESSION_ROLES, patient_access
from renkei.problems import Problem, invalid, not_found


# --- demographics -----------------------------------------------------------

def seal_demographics(patient: Patient, key: bytes, data: dict):
    patient.demographics_ct = crypto.seal_json(key, data, vault.aad(patient.id, "demographics"))
    patient.name_index = vault.name_index(data["name"])
    patient.kana_index = vault.name_index(data["name_kana"])


def demographics(patient: Patient) -> dict:
    key = vault.patient_key(patient)
    return crypto.unseal_json(key, patient.demographics_ct, vault.aad(patient.id, "demographics"))


def patient_out(patient: Patient, role: str | None, *, breakglass=False, member=None,
                consent: bool | None = None, show_demographics=True) -> dict:
    out = {"id": patient.id, "my_role": role, "breakglass": breakglass,
           "consent": authz.has_consent(patient.id) if consent is None else consent,
           "created_at": patient.created_at}
    if show_demographics:
        out.update(demographics(patient))
    if member is not None:
        out.update(activity_since(patient.id, member))
    return out


def activity(user_id: str, ids: list[str]) -> dict[str, dict]:
    """For each patient: sections others changed since the member's last look, when the
    record last changed, and urgent notes the member has not acknowledged. Four
    queries however many patients (the care list and the patient page share this)."""
    mine = (TeamMember.user_id == user_id) & TeamMember.removed_at.is_(None)
    changed: dict[str, set] = {}
    for pid, section in db.session.execute(
            select(SectionRevision.patient_id, SectionRevision.section)
            .join(TeamMember, (TeamMember.patient_id == SectionRevision.patient_id) & mine)
            .where(SectionRevision.patient_id.in_(ids), SectionRevision.created_by != user_id,
                   SectionRevision.created_at > func.coalesce(TeamMember.last_viewed_at, TeamMember.added_at))
            .distinct()):
        changed.setdefault(pid, set()).add(section)
    updated = dict(db.session.execute(select(SectionRevision.patient_id, func.max(SectionRevision.created_at))
                                      .where(SectionRevision.patient_id.in_(ids))
                                      .group_by(SectionRevision.patient_id)).all())
    acked = select(NoteAck.note_id).where(NoteAck.user_id == user_id)
    urgent = dict(db.session.execute(select(Note.patient_id, func.count(Note.id)).where(
        Note.patient_id.in_(ids), Note.urgent.is_(True), Note.created_by != user_id,
        Note.id.not_in(acked)).group_by(Note.patient_id)).all())
    return {pid: {"changed_since_my_last_view": sorted(changed.get(pid, ())), "updated_at": updated.get(pid),
                  "urgent_unacknowledged": urgent.get(pid, 0)} for pid in ids}


def activity_since(patient_id: str, member: TeamMember) -> dict:
    return activity(member.user_id, [patient_id])[patient_id]


def mark_viewed(member: TeamMember | None):
    """Restart "what changed since my last look". Written at most once a minute per
    member (a read should not always be a write); a stale mark only shows more as new."""
    now = utcnow()
    if member is not None and (member.last_viewed_at is None
                               or (now - member.last_viewed_at).total_seconds() > 60):
        member.last_viewed_at = now


@endpoint("POST", "/patients", summary="Register a patient; the caller joins the team",
          tag="patients", action="patient.create", body=PatientIn, response=PatientOut,
          status=201, errors=(403,))
def create_patient(body):
    roles = PROFESSION_ROLES[current_user.profession]
    if not roles:
        raise Problem(403, "Only care professionals register patients.")
    patient = Patient(id=new_id(), registered_by=current_user.id)
    key = vault.new_patient_key(patient)
    data = {**body, "birth_date": body["birth_date"].isoformat()}
    seal_demographics(patient, key, data)
    db.session.add(patient)
    db.session.flush()
    db.session.add(TeamMember(patient_id=patient.id, user_id=current_user.id, role=roles[0],
                              added_by=current_user.id, last_viewed_at=utcnow()))
    set_audit(patient_id=patient.id)
    return patient_out(patient, roles[0], consent=False), 201, {"Location": f"/api/v1/patients/{patient.id}"}


def care_list(user, name: str | None = None) -> list[dict]:
    """The caller's patients with what changed since their last look and their urgent
    unacknowledged notes: a fixed number of queries however many patients there are."""
    rows = db.session.execute(
        select(Patient, TeamMember).join(TeamMember, TeamMember.patient_id == Patient.id)
        .where(TeamMember.user_id == user.id, TeamMember.removed_at.is_(None),
               Patient.deleted_at.is_(None)).order_by(Patient.created_at)).all()
    if name:
        wanted = vault.name_index(name)
        rows = [(p, m) for p, m in rows if wanted in (p.name_index, p.kana_index)]
    ids = [p.id for p, _ in rows]
    if not ids:
        return []
    consented = set(db.session.execute(select(Consent.patient_id).where(
        Consent.patient_id.in_(ids), Consent.withdrawn_at.is_(None))).scalars())
    recent = activity(user.id, ids)
    items = []
    for patient, member in rows:
        consent = patient.id in consented
        out = patient_out(patient, member.role, consent=consent,
                          show_demographics=consent or patient.registered_by == user.id)
        out.update(recent[patient.id])
        items.append(out)
    return items


@endpoint("GET", "/patients", summary="The caller's patients (team member or break-glass)",
          tag="patients", action="patient.list", query=PatientQuery, response=PatientList)
def list_patients(query):
    return {"items": care_list(current_user, query.get("name"))}


@endpoint("GET", "/patients/<patient_id>", summary="A patient's demographics (decrypted)",
          tag="patients", action="patient.read", response=PatientOut, errors=(403, 404))
def get_patient(patient_id):
    access = patient_access(current_user, patient_id, authz.READ)
    return patient_out(access.patient, access.role, breakglass=access.breakglass, member=access.member)


@endpoint("DELETE", "/patients/<patient_id>", summary="Delete a patient by destroying its data key",
          tag="patients", action="patient.delete", status=204, errors=(403, 404))
def delete_patient(patient_id):
    access = patient_access(current_user, patient_id, authz.DELETE)
    vault.shred(access.patient)
    access.patient.deleted_at = utcnow()
    return None


# --- consent ----------------------------------------------------------------

def consent_out(patient: Patient, c: Consent) -> dict:
    details = crypto.unseal_json(vault.patient_key(patient), c.details_ct,
                                 vault.aad(patient.id, "consent=" + c.id))
    return {"id": c.id, "obtained_on": c.obtained_on.isoformat(), **details,
            "recorded_by": c.recorded_by, "recorded_at": c.recorded_at,
            "withdrawn_at": c.withdrawn_at, "active": c.withdrawn_at is None}


@endpoint("POST", "/patients/<patient_id>/consents", summary="Record the patient's consent to share",
          tag="consent", action="consent.create", body=ConsentIn, response=ConsentOut,
          status=201, errors=(403, 404))
def create_consent(patient_id, body):
    patient = patient_access(current_user, patient_id, authz.CONSENT).patient
    consent = Consent(id=new_id(), patient_id=patient.id,
                      obtained_on=body["obtained_on"], recorded_by=current_user.id)
    consent.details_ct = crypto.seal_json(
        vault.patient_key(patient), {"obtained_by": body["obtained_by"], "scope": body["scope"]},
        vault.aad(patient.id, "consent=" + consent.id))
    db.session.add(consent)
    db.session.flush()
    return consent_out(patient, consent)


@endpoint("GET", "/patients/<patient_id>/consents", summary="Consents recorded for the patient",
          tag="consent", action="consent.list", response=ConsentList, errors=(404,))
def list_consents(patient_id):
    patient = patient_access(current_user, patient_id, authz.TEAM_VIEW).patient
    rows = db.session.execute(select(Consent).where(Consent.patient_id == patient.id)
                              .order_by(Consent.recorded_at.desc())).scalars()
    return {"items": [consent_out(patient, c) for c in rows]}


@endpoint("DELETE", "/patients/<patient_id>/consents/<consent_id>",
          summary="Record that the patient withdrew a consent", tag="consent",
          action="consent.withdraw", status=204, errors=(403, 404))
def withdraw_consent(patient_id, consent_id):
    patient = patient_access(current_user, patient_id, authz.CONSENT).patient
    consent = db.session.get(Consent, consent_id)
    if consent is None or consent.patient_id != patient.id or consent.withdrawn_at:
        raise not_found()
    consent.withdrawn_at = utcnow()
    set_audit(detail="consent=" + consent.id)
    return None


# --- team -------------------------------------------------------------------

def team_rows(patient_id: str):
    return db.session.execute(select(TeamMember, User).join(User, User.id == TeamMember.user_id)
                              .where(TeamMember.patient_id == patient_id,
                                     TeamMember.removed_at.is_(None))
                              .order_by(TeamMember.added_at)).all()


def member_out(m: TeamMember, u: User) -> dict:
    return {"user_id": u.id, "role": m.role, "display_name": u.display_name,
            "profession": u.profession, "organization_id": u.organization_id,
            "organization_name": u.organization.name, "added_at": m.added_at,
            "added_by": m.added_by}


@endpoint("GET", "/patients/<patient_id>/team", summary="The patient's current team",
          tag="team", action="team.read", response=TeamList, errors=(404,))
def get_team(patient_id):
    patient = patient_access(current_user, patient_id, authz.TEAM_VIEW).patient
    return {"items": [member_out(m, u) for m, u in team_rows(patient.id)]}


@endpoint("POST", "/patients/<patient_id>/team", summary="Add a member with a role that fits their profession",
          tag="team", action="team.add", body=TeamIn, response=TeamMemberOut,
          status=201, errors=(403, 404, 409))
def add_member(patient_id, body):
    patient = patient_access(current_user, patient_id, authz.TEAM_MANAGE).patient
    user = db.session.get(User, body["user_id"])
    set_audit(detail="user=" + body["user_id"][:36])
    if user is None or user.disabled:
        raise invalid({"user_id": ["No such active user."]})
    if body["role"] not in PROFESSION_ROLES[user.profession]:
        raise invalid({"role": [f"A {user.profession} cannot hold the role {body['role']}."]})
    current = team_rows(patient.id)
    if any(m.user_id == user.id for m, _ in current):
        raise Problem(409, "Already on the team.")
    if body["role"] == "primary_physician" and any(m.role == "primary_physician" for m, _ in current):
        raise Problem(409, "The team already has a primary physician.",
                      errors={"role": ["The team already has a primary physician."]})
    member = TeamMember(patient_id=patient.id, user_id=user.id, role=body["role"],
                        added_by=current_user.id)
    db.session.add(member)
    db.session.flush()
    notify.queue("team.updated", patient.id, {"user_id": user.id, "change": "added"})
    return member_out(member, user), 201


@endpoint("DELETE", "/patients/<patient_id>/team/<user_id>", summary="Remove a member",
          tag="team", action="team.remove", status=204, errors=(403, 404))
def remove_member(patient_id, user_id):
    patient = patient_access(current_user, patient_id, authz.TEAM_MANAGE).patient
    set_audit(detail="user=" + user_id[:36])
    member = authz.current_membership(patient.id, user_id)
    if member is None:
        raise not_found()
    member.removed_at = utcnow()
    db.session.flush()
    # Recipients are the team after the removal: the removed member gets no more events.
    notify.queue("team.updated", patient.id, {"user_id": user_id, "change": "removed"})
    return None
