"""Organisations and people: administrators create and change them (each operation
checks its actor, renkei.patients.staff.require_staff); everyone may look people up to build a
team. `create_admin` is how the first administrator comes to be (a command, no actor)."""

import unicodedata

from sqlalchemy import func, select

from models import Organization, User, new_id
from renkei.access_log import entries
from renkei.common import db, work
from renkei.common.problems import Problem, invalid, not_found
from renkei.people import auth, confirmations, invitations, passwords, staff, throttle

ADMIN_ORGANIZATION = "Renkei 管理"


def org_out(org: Organization) -> dict:
    return {"id": org.id, "name": org.name, "kind": org.kind, "phone": org.phone, "created_at": org.created_at}


def user_out(user: User) -> dict:
    return {
        "id": user.id,
        "login": user.login if invitations.has_login(user) else None,
        "display_name": user.display_name,
        "phone": user.phone,
        "organization_id": user.organization_id,
        "organization_name": user.organization.name if user.organization else None,
        "profession": user.profession,
        "is_admin": user.is_admin,
        "is_auditor": user.is_auditor,
        "disabled": user.disabled,
        "totp_enabled": user.totp_enabled,
        "confirmed": user.confirmed_at is not None,
    }


def create_organization(actor: User, name: str, kind: str, phone: str | None = None) -> dict:
    staff.require_staff(actor, "admin")
    org = Organization(name=name, kind=kind, phone=phone or None)
    db.session.add(org)
    db.session.flush()
    work.describe(detail="organization=" + org.id)
    return org_out(org)


def organizations() -> list[dict]:
    return [org_out(o) for o in db.session.execute(select(Organization).order_by(Organization.name)).scalars()]


def create_user(
    actor: User | None,
    login: str | None,
    display_name: str,
    organization_id: str,
    profession: str,
    is_admin: bool = False,
    is_auditor: bool = False,
    phone: str | None = None,
) -> dict:
    """A new account and its invitation: the person chooses their own password (and login,
    if none is given here). Made by an administrator, it awaits a second person's
    confirmation; made on the server (actor None: the demo loader), it is confirmed."""
    if actor is not None:
        staff.require_staff(actor, "admin")
    if is_admin and is_auditor:  # separation of duties: one role per account
        raise invalid({"is_auditor": ["An account is an administrator or an auditor, not both."]})
    if (is_admin or is_auditor) and profession != "other":
        raise invalid({"profession": ['Administrators and auditors hold no clinical profession (use "other").']})
    if db.session.get(Organization, organization_id) is None:
        raise invalid({"organization_id": ["No such organisation."]})
    if login and login_taken(login):
        raise Problem(409, "That login is taken.", errors={"login": ["That login is taken."]})
    user = User(
        id=new_id(),
        password_hash=auth.unusable_password(),
        display_name=display_name,
        organization_id=organization_id,
        profession=profession,
        is_admin=is_admin,
        is_auditor=is_auditor,
        phone=phone or None,
    )
    user.login = login or invitations.placeholder_login(user.id)
    confirmations.made_by_administrator(user, actor)
    db.session.add(user)
    db.session.flush()
    work.describe(detail="user=" + user.id)
    return user_out(user) | {"invitation": invitations.issue(user, actor)}


def invite_again(actor: User, user_id: str) -> dict:
    """A new invitation (the first expired or was lost), cancelling the earlier one. Only
    for an account that has never set a password of its own."""
    user = managed_user(actor, user_id)
    if not invitations.awaiting(user.id):
        raise Problem(409, "This person has set a password; to let them in again, reset their access.")
    confirmations.changed_by_administrator(user, actor)  # whoever holds the new code: confirmed again
    return invitations.issue(user, actor)


def confirm(actor: User, user_id: str) -> dict:
    return user_out(confirmations.confirm_user(actor, managed_user(actor, user_id)))


def create_admin(login: str, password: str, display_name: str | None = None) -> dict:
    """An administrator, who always signs in with a second factor: {"id", "totp_secret"}."""
    passwords.check(password, login=login, display_name=display_name or "")
    org = db.session.execute(
        select(Organization).where(Organization.kind == "other", Organization.name == ADMIN_ORGANIZATION)
    ).scalar()
    if org is None:
        org = Organization(name=ADMIN_ORGANIZATION, kind="other")
        db.session.add(org)
        db.session.flush()
    user = User(
        login=login,
        password_hash=auth.hash_password(password),
        display_name=display_name or login,
        organization_id=org.id,
        profession="other",
        is_admin=True,
    )
    confirmations.changed_by_administrator(user, None)  # made on the server: confirmed
    db.session.add(user)
    db.session.flush()
    secret = auth.new_totp_secret(user)
    user.totp_enabled = True
    return {"id": user.id, "totp_secret": secret}


def new_admin_totp(login: str) -> dict | None:
    """A command's way back in for an administrator who lost their authenticator."""
    user = db.session.execute(select(User).where(User.login == login, User.is_admin.is_(True))).scalar()
    if user is None:
        return None
    secret = auth.new_totp_secret(user)
    user.totp_enabled = True
    auth.revoke_all(user)
    return {"id": user.id, "totp_secret": secret}


def login_taken(login: str) -> bool:
    return db.session.execute(select(User.id).where(User.login == login)).first() is not None


PICKER_LIMIT = 20


def people(
    viewer: User, include_disabled: bool = False, words: str | None = None, limit: int | None = None
) -> list[dict]:
    """The directory. Only administrators see logins and second-factor status, and
    (include_disabled) people who were disabled. `words`: only people whose name or
    organisation holds every word (the team picker: 「鈴木 訪問看護」)."""
    stmt = select(User).order_by(User.display_name)
    if not (include_disabled and viewer.is_admin):
        stmt = stmt.where(User.disabled.is_(False))
    if words:
        stmt = stmt.outerjoin(Organization, Organization.id == User.organization_id)
        unspaced = func.replace(func.replace(User.display_name, " ", ""), "\u3000", "")  # 伊藤健 finds 伊藤 健
        for word in unicodedata.normalize("NFKC", words).split():
            stmt = stmt.where(
                unspaced.icontains(word, autoescape=True) | Organization.name.icontains(word, autoescape=True)
            )
        limit = limit or PICKER_LIMIT
    if limit:
        stmt = stmt.limit(limit)
    users = db.session.execute(stmt).scalars().all()
    if not viewer.is_admin:
        return [{k: v for k, v in user_out(u).items() if k not in ("login", "totp_enabled")} for u in users]
    waiting = invitations.awaiting_among([u.id for u in users])
    # changed_by: who may not confirm the account (the page hides the button from them)
    return [user_out(u) | {"awaiting_invitation": u.id in waiting, "changed_by": u.changed_by} for u in users]


def people_named(user_ids: list[str]) -> list[dict]:
    """Names for ids (a team's pending appointees)."""
    if not user_ids:
        return []
    return [
        {"id": u.id, "display_name": u.display_name}
        for u in db.session.execute(select(User).where(User.id.in_(user_ids))).scalars()
    ]


def managed_user(actor: User, user_id: str) -> User:
    """The person an administrator acts on (404 if none), named in the access-log entry."""
    staff.require_staff(actor, "admin")
    user = db.session.get(User, user_id)
    work.describe(detail=entries.ref("user", user_id, user is not None))
    if user is None:
        raise not_found()
    return user


def update_user(actor: User, user_id: str, changes: dict) -> dict:
    """Change a display name, disable or re-enable a user. Disabling ends every token,
    session and socket the user has. The last active administrator stays."""
    user = managed_user(actor, user_id)
    if "display_name" in changes and changes["display_name"] != user.display_name:
        user.display_name = changes["display_name"]  # who the team sees: a second person confirms
        confirmations.changed_by_administrator(user, actor)
    if "phone" in changes and (changes["phone"] or None) != user.phone:
        user.phone = changes["phone"] or None  # the team and the emergency sheet call it: confirmed again
        confirmations.changed_by_administrator(user, actor)
    if changes.get("disabled") is True and not user.disabled:
        if user.is_admin and _active_admins() == 1:
            raise Problem(409, "The last active administrator cannot be disabled.")
        user.disabled = True
        auth.revoke_all(user)
    elif changes.get("disabled") is False:
        user.disabled = False
    return user_out(user)


def _active_admins(confirmed_only: bool = False) -> int:
    stmt = select(func.count(User.id)).where(User.is_admin.is_(True), User.disabled.is_(False))
    if confirmed_only:
        stmt = stmt.where(User.confirmed_at.is_not(None))
    return db.session.execute(stmt).scalar()


def second_administrator_exists() -> bool:
    """Another active, confirmed administrator could approve a reset or confirm an account;
    else only whoever runs the server can (the pages say so)."""
    return _active_admins(confirmed_only=True) > 1


def unlock(actor: User, user_id: str):
    """Lift a sign-in lock on this person's login (from every address)."""
    throttle.unlock(managed_user(actor, user_id).login)


def reset_totp(actor: User, user_id: str):
    """Remove a lost second factor; the person enrols a new one. An administrator's own
    factor is reset from the command line (an administrator always needs one)."""
    user = managed_user(actor, user_id)
    if user.is_admin:
        raise Problem(409, "An administrator's second factor is reset with `flask --app wsgi reset-admin-totp`.")
    auth.remove_totp(user)  # they enrol a new one at their next sign-in, before anything else
    auth.revoke_all(user)
