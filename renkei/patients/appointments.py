"""An administrator's appointment of a manager to a team left without an active one
(issue 29): pending, giving no access, until a second person confirms it
(renkei/people/confirmations.py decides who may) or it is confirmed on the server
(`flask --app wsgi confirm-appointment`). The team hears of each step."""

from sqlalchemy import select

from models import Appointment, Patient, TeamMember, User, utcnow
from renkei.access_log import entries
from renkei.common import db, work
from renkei.common.problems import Problem, not_found
from renkei.outreach import events
from renkei.patients import authz
from renkei.people import confirmations, staff


def appoint(actor: User, patient: Patient, user: User, role: str) -> dict:
    """An administrator's appointment to a team without an active manager: pending, and
    replacing any earlier one still pending."""
    earlier = _pending(patient.id)
    if earlier is not None:  # one pending appointment per team: a new one replaces it
        earlier.closed_at = utcnow()
    appointment = Appointment(patient_id=patient.id, user_id=user.id, role=role, requested_by=actor.id)
    db.session.add(appointment)
    db.session.flush()
    work.describe(detail=f"user={user.id};appointment={appointment.id}")
    events.queue(
        "team.updated", patient.id, {"user_id": user.id, "change": "appointment_pending", "actor_id": actor.id}
    )
    return appointment_out(appointment)


def appointment_out(a: Appointment) -> dict:
    return {
        "id": a.id,
        "user_id": a.user_id,
        "role": a.role,
        "requested_by": a.requested_by,
        "requested_at": a.requested_at,
        "status": "pending" if a.closed_at is None else "closed",
    }


def _pending(patient_id: str) -> Appointment | None:
    return db.session.execute(
        select(Appointment)
        .where(Appointment.patient_id == patient_id, Appointment.closed_at.is_(None))
        .with_for_update()
    ).scalar()  # one confirmation, however many clicks


def pending_appointments(patient_id: str) -> list[dict]:
    rows = db.session.execute(
        select(Appointment).where(Appointment.patient_id == patient_id, Appointment.closed_at.is_(None))
    ).scalars()
    return [appointment_out(a) for a in rows]


def confirm_appointment(actor: User | None, patient_id: str, user_id: str) -> TeamMember:
    """The second person confirms: the appointee joins the team, if it still has no
    active manager (one who came back meanwhile manages it again: 409)."""
    if actor is not None:
        staff.require_staff(actor, "admin")
    patient = authz.live_patient(patient_id)
    appointment = _pending(patient.id) if patient is not None else None
    work.describe(detail=entries.ref("user", user_id, appointment is not None))
    if appointment is None or appointment.user_id != user_id:
        raise not_found()
    confirmations.second_person(actor, appointment.requested_by)
    user = db.session.get(User, user_id)
    if authz.team_has_manager(patient.id) or user.disabled or user.confirmed_at is None:
        raise Problem(
            409,
            "The team has an active manager again, or the appointee's account is not "
            "confirmed and active: this appointment cannot be confirmed.",
        )
    appointment.closed_at, appointment.confirmed_by = utcnow(), actor.id if actor else None
    member = TeamMember(
        patient_id=patient.id, user_id=user.id, role=appointment.role, added_by=appointment.requested_by
    )
    db.session.add(member)
    db.session.flush()
    work.describe(detail=f"user={user.id};appointment={appointment.id}")
    events.queue(
        "team.updated", patient.id, {"user_id": user.id, "change": "added", "actor_id": actor.id if actor else None}
    )
    return member


def confirm_appointment_on_server(patient_id: str, login: str) -> TeamMember | None:
    user = db.session.execute(select(User).where(User.login == login)).scalar()
    return confirm_appointment(None, patient_id, user.id) if user is not None else None
