"""A patient's team: who is on it, in which role; adding and removing members."""

from sqlalchemy import func, select

from models import Patient, TeamMember, User, utcnow
from renkei.access_log import entries
from renkei.common import db, work
from renkei.common.problems import Problem, invalid, not_found
from renkei.outreach import events, tell
from renkei.patients import appointments, authz, escalation
from renkei.patients.authz import PROFESSION_ROLES, patient_access


def member_out(m: TeamMember, u: User) -> dict:
    return {
        "user_id": u.id,
        "role": m.role,
        "display_name": u.display_name,
        "profession": u.profession,
        "organization_id": u.organization_id,
        "organization_name": u.organization.name,
        "added_at": m.added_at,
        "phone": u.phone,
        "organization_phone": u.organization.phone,
        "added_by": m.added_by,
        "disabled": u.disabled,
    }


def _rows(patient_id: str):
    return db.session.execute(
        select(TeamMember, User)
        .join(User, User.id == TeamMember.user_id)
        .where(TeamMember.patient_id == patient_id, TeamMember.removed_at.is_(None))
        .order_by(TeamMember.added_at)
    ).all()


def members(patient_id: str) -> list[User]:
    """The current members as people (to find the ones a note names with @)."""
    return [u for _, u in _rows(patient_id)]


def team(actor: User, patient_id: str) -> dict:
    """The current team, and whether the caller may change it."""
    access = patient_access(actor, patient_id, authz.TEAM_VIEW)
    return {
        "items": [member_out(m, u) for m, u in _rows(access.patient.id)],
        "pending": appointments.pending_appointments(access.patient.id),
        # an administrator appoints only where the team has no active manager
        "can_manage": (
            not authz.team_has_manager(access.patient.id)
            if actor.is_admin
            else authz.manages_team(actor, access.patient, access.member)
        ),
    }


def add_member(actor: User, patient_id: str, user_id: str, role: str) -> dict:
    """Add a member with a role that fits their profession; the team hears of it. An
    administrator's appointment (to a team without an active manager) is only pending
    until a second person confirms it: {"status": "pending", ...} (renkei/people/confirmations.py)."""
    patient = patient_access(actor, patient_id, authz.TEAM_MANAGE).patient
    user = db.session.get(User, user_id)
    work.describe(detail=entries.ref("user", user_id, user is not None))
    if user is None or user.disabled:
        raise invalid({"user_id": ["No such active user."]})
    if user.confirmed_at is None:
        raise invalid({"user_id": ["This person's account awaits a second person's confirmation."]})
    if user.is_admin or user.is_auditor:  # separation of duties: they read no clinical content
        raise invalid({"user_id": ["Administrators and auditors do not join care teams."]})
    if actor.is_admin and role not in authz.TEAM_MANAGERS:
        raise Problem(403, "An administrator only appoints a care manager or a physician to a team without one.")
    if role not in PROFESSION_ROLES[user.profession]:
        raise invalid({"role": [f"A {user.profession} cannot hold the role {role}."]})
    current = _rows(patient.id)
    if any(m.user_id == user.id for m, _ in current):
        raise Problem(409, "Already on the team.")
    if role == "primary_physician" and any(m.role == "primary_physician" for m, _ in current):
        raise Problem(
            409,
            "The team already has a primary physician.",
            errors={"role": ["The team already has a primary physician."]},
        )
    if actor.is_admin:
        return appointments.appoint(actor, patient, user, role)
    member = TeamMember(patient_id=patient.id, user_id=user.id, role=role, added_by=actor.id)
    db.session.add(member)
    db.session.flush()
    events.queue("team.updated", patient.id, {"user_id": user.id, "change": "added", "actor_id": actor.id})
    return member_out(member, user)


def confirm_appointment(actor: User, patient_id: str, user_id: str) -> dict:
    member = appointments.confirm_appointment(actor, patient_id, user_id)
    return member_out(member, db.session.get(User, member.user_id))


def remove_member(actor: User, patient_id: str, user_id: str):
    patient = patient_access(actor, patient_id, authz.TEAM_MANAGE).patient
    if actor.is_admin:
        raise Problem(403, "The team manages itself; administrators only appoint a manager to a team without one.")
    member = authz.current_membership(patient.id, user_id)
    work.describe(detail=entries.ref("user", user_id, member is not None))
    if member is None:
        raise not_found()
    if user_id == actor.id and member.role == "care_manager" and _care_managers(patient.id) == 1:
        raise Problem(409, "You are the team's only care manager; add another before you leave the team.")
    member.removed_at = utcnow()
    db.session.flush()
    tell.forget_patient(patient.id, user_id)  # queued pushes and mails about this patient
    escalation.left_team(patient.id, user_id)
    # Recipients are the team after the removal: the removed member gets no more events.
    events.queue("team.updated", patient.id, {"user_id": user_id, "change": "removed", "actor_id": actor.id})


def _care_managers(patient_id: str) -> int:
    """Active care managers on the team; the patient row is locked first, so two care
    managers leaving at once cannot both see the other still there."""
    db.session.execute(select(Patient.id).where(Patient.id == patient_id).with_for_update())
    return db.session.execute(
        select(func.count())
        .select_from(TeamMember)
        .join(User, User.id == TeamMember.user_id)
        .where(
            TeamMember.patient_id == patient_id,
            TeamMember.removed_at.is_(None),
            TeamMember.role == "care_manager",
            User.disabled.is_(False),
        )
    ).scalar_one()
