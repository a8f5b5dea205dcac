"""Two people for every clinical identity and seat an administrator sets (issue 29).

An account an administrator created, whose name or phone an administrator changed, or
for which an administrator issued a new invitation, is unconfirmed: it opens no patient
and, if it is an administrator's, confirms, invites and hands over nothing
(renkei/authz.py, require_confirmed). An administrator's appointment of a manager to a
team left without an active one is pending: it gives no access. Either becomes real when
a second person confirms it — another confirmed administrator, never the account's maker
or last changer nor anyone tied to them by creation in either direction — or on the
server (`flask --app wsgi confirm-user`, `confirm-appointment`) where one administrator
runs the service. Each step is audited (the route's or command's entry) and the team
concerned hears of it."""

from sqlalchemy import select

from models import Appointment, Patient, TeamMember, User, utcnow
from renkei import audit, authz, db, notify, work
from renkei.problems import Problem, not_found


def made_by_administrator(user: User, actor: User | None):
    """A new account: who made it is kept for good (the creature rule below)."""
    user.made_by = actor.id if actor else None
    changed_by_administrator(user, actor)


def changed_by_administrator(user: User, actor: User | None):
    """An administrator (actor) created or changed who `user` is, or handed out a new way
    into it: a second person confirms."""
    user.changed_by = actor.id if actor else None
    user.confirmed_at = None if actor else utcnow()
    user.confirmed_by = None


def _may_confirm(actor: User | None, changed_by: str | None, made_by: str | None = None):
    """The second person: a confirmed administrator who is not the one who made the change
    (nor, for an account, the one who created it), and not tied to them by creation either
    way — neither an account they made or last changed, nor one that made them. None: on
    the server."""
    if actor is None:
        return
    authz.require_staff(actor, "admin")
    if changed_by is None and made_by is None:
        return
    changer = db.session.get(User, changed_by) if changed_by else None
    tied = ({changed_by, made_by} & {actor.id, actor.changed_by, actor.made_by}) - {None}
    if tied or (changer is not None and actor.id in (changer.made_by, changer.changed_by)):
        raise Problem(
            403,
            "A second administrator confirms this: not the one who made the change, "
            "nor an account tied to them by creation.",
            type_="/problems/second-person-needed",
        )


# --- accounts -----------------------------------------------------------------------


def confirm_user(actor: User | None, user: User) -> User:
    _may_confirm(actor, user.changed_by, user.made_by)
    if actor is not None and user.id == actor.id:
        raise Problem(403, "Nobody confirms their own account.", type_="/problems/second-person-needed")
    if user.confirmed_at is not None:
        raise Problem(409, "This account is confirmed already.")
    user.confirmed_at, user.confirmed_by = utcnow(), actor.id if actor else None
    work.describe(detail=f"user={user.id}")
    for patient_id in db.session.execute(
        select(TeamMember.patient_id).where(TeamMember.user_id == user.id, TeamMember.removed_at.is_(None))
    ).scalars():
        notify.queue(
            "team.updated",
            patient_id,
            {"user_id": user.id, "change": "confirmed", "actor_id": actor.id if actor else None},
        )
    return user


def confirm_user_on_server(login: str) -> User | None:
    user = db.session.execute(select(User).where(User.login == login)).scalar()
    return confirm_user(None, user) if user is not None else None


# --- appointments -------------------------------------------------------------------


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
    notify.queue(
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
        authz.require_staff(actor, "admin")
    patient = authz.live_patient(patient_id)
    appointment = _pending(patient.id) if patient is not None else None
    work.describe(detail=audit.ref("user", user_id, appointment is not None))
    if appointment is None or appointment.user_id != user_id:
        raise not_found()
    _may_confirm(actor, appointment.requested_by)
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
    notify.queue(
        "team.updated", patient.id, {"user_id": user.id, "change": "added", "actor_id": actor.id if actor else None}
    )
    return member


def confirm_appointment_on_server(patient_id: str, login: str) -> TeamMember | None:
    user = db.session.execute(select(User).where(User.login == login)).scalar()
    return confirm_appointment(None, patient_id, user.id) if user is not None else None
