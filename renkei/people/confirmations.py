"""Two people for every clinical identity and seat an administrator sets (issue 29).

An account an administrator created, whose name or phone an administrator changed, or
for which an administrator issued a new invitation, is unconfirmed: it opens no patient
and, if it is an administrator's, confirms, invites and hands over nothing
(renkei/people/staff.py, require_confirmed). An administrator's appointment of a manager to a
team left without an active one is pending: it gives no access. Either becomes real when
a second person confirms it — another confirmed administrator, never the account's maker
or last changer nor anyone tied to them by creation in either direction — or on the
server (`flask --app wsgi confirm-user`, `confirm-appointment`) where one administrator
runs the service. Each step is audited (the route's or command's entry) and the team
concerned hears of it."""

from sqlalchemy import select

from models import TeamMember, User, utcnow
from renkei.common import db, work
from renkei.common.problems import Problem
from renkei.outreach import events
from renkei.people import staff


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


def second_person(actor: User | None, changed_by: str | None, made_by: str | None = None):
    """The second person: a confirmed administrator who is not the one who made the change
    (nor, for an account, the one who created it), and not tied to them by creation either
    way — neither an account they made or last changed, nor one that made them. None: on
    the server."""
    if actor is None:
        return
    staff.require_staff(actor, "admin")
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
    second_person(actor, user.changed_by, user.made_by)
    if actor is not None and user.id == actor.id:
        raise Problem(403, "Nobody confirms their own account.", type_="/problems/second-person-needed")
    if user.confirmed_at is not None:
        raise Problem(409, "This account is confirmed already.")
    user.confirmed_at, user.confirmed_by = utcnow(), actor.id if actor else None
    work.describe(detail=f"user={user.id}")
    for patient_id in db.session.execute(
        select(TeamMember.patient_id).where(TeamMember.user_id == user.id, TeamMember.removed_at.is_(None))
    ).scalars():
        events.queue(
            "team.updated",
            patient_id,
            {"user_id": user.id, "change": "confirmed", "actor_id": actor.id if actor else None},
        )
    return user


def confirm_user_on_server(login: str) -> User | None:
    user = db.session.execute(select(User).where(User.login == login)).scalar()
    return confirm_user(None, user) if user is not None else None
