"""Invitations: how a person an administrator created chooses their own password (and
login, if the administrator left it to them). Nobody knows another person's password —
the administrator who created the account included — so an administrator who could
choose it could become anyone they create (issue 29). A code is 128 bits, single use,
valid for a week, stored hashed; its link carries it in the #fragment, which no server
or proxy log keeps. Accepting is throttled like a sign-in; the person enrols a second
factor at their first sign-in (renkei/people/auth.py, must_enrol_totp), and until a second
person confirms the account it opens no patient (renkei/people/confirmations.py)."""

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from models import AccessReset, Invitation, User, utcnow
from renkei.common import db, work
from renkei.common.problems import Problem, invalid, not_found
from renkei.people import auth, passwords, throttle

LIFETIME = timedelta(days=7)
NO_LOGIN = "~"  # prefix of the placeholder login of an account invited without one
LOGIN_PATTERN = r"^[A-Za-z0-9._@-]{1,100}$"


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def placeholder_login(user_id: str) -> str:
    return NO_LOGIN + user_id


def has_login(user: User) -> bool:
    return not user.login.startswith(NO_LOGIN)


def issue(user: User, actor: User | None) -> dict:
    """A new invitation for `user`, cancelling any earlier one: {"code", "url", "expires_at"}."""
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update())  # one issue at a time
    now = utcnow()
    cancel(user.id)
    code = secrets.token_urlsafe(16)  # 128 bits
    invitation = Invitation(
        user_id=user.id,
        code_hash=_digest(code),
        created_by=actor.id if actor else None,
        created_at=now,
        expires_at=now + LIFETIME,
    )
    db.session.add(invitation)
    db.session.flush()
    base = current_app.config["RENKEI"].public_url or (request.url_root.rstrip("/") if has_request_context() else "")
    return {"code": code, "url": f"{base}/invitation#{code}", "expires_at": invitation.expires_at}


def awaiting(user_id: str) -> bool:
    """Invited and never accepted: the account has no password of the person's own. (A
    used invitation has used_at; a cancelled one only expired.)"""
    return user_id in awaiting_among([user_id])


def cancel(user_id: str):
    """End every open invitation of this person (a new one, or a reset of their access)."""
    now = utcnow()
    db.session.execute(
        update(Invitation)
        .where(Invitation.user_id == user_id, Invitation.used_at.is_(None), Invitation.expires_at > now)
        .values(expires_at=now)
        .execution_options(synchronize_session=False)
    )


def awaiting_among(user_ids: list[str]) -> set[str]:
    """Of these people, those invited who have never set a password of their own: no
    invitation accepted, no recovery code used (one query each, for a list)."""
    if not user_ids:
        return set()
    rows = db.session.execute(
        select(Invitation.user_id, Invitation.used_at).where(Invitation.user_id.in_(user_ids))
    ).all()
    recovered = set(
        db.session.execute(
            select(AccessReset.user_id).where(
                AccessReset.user_id.in_(user_ids),
                AccessReset.used_at.is_not(None),
                AccessReset.approved_at.is_not(None),
            )
        ).scalars()
    )
    invited, accepted = {uid for uid, _ in rows}, {uid for uid, used in rows if used is not None}
    return invited - accepted - recovered


def accept(code: str, password: str, login: str | None) -> User:
    """The person sets their password (and login): 404 for an unknown code, 410 for a
    used or expired one. Wrong and stale codes are counted per address, as failed
    sign-ins are: 429 past the address's limit."""
    throttle.check_anonymous("invitation")
    try:
        return redeem(code, password, login, release=True)
    except Problem as refused:
        if refused.status in (404, 410):  # a wrong or stale code, not a weak password
            throttle.failed_anonymous("invitation", current_app.config["RENKEI"].address_lockout_threshold)
        raise


def redeem(code: str, password: str, login: str | None, release: bool = False) -> User:
    """Accepting, without the per-address count (the demo loader, on the server).
    release: end the read-only transaction before hashing, so no database connection is
    held while the hash waits for a thread (a request; the loader keeps its one)."""
    found = db.session.execute(
        select(Invitation, User).join(User, User.id == Invitation.user_id).where(Invitation.code_hash == _digest(code))
    ).first()
    if found is None:
        raise not_found()
    invitation, user = found
    work.describe(detail=f"user={user.id};invitation={invitation.id}")
    if invitation.used_at is not None or invitation.expires_at <= utcnow() or user.disabled:
        raise Problem(
            410,
            "This invitation was used or has expired; ask your administrator for a new one.",
            type_="/problems/invitation-gone",
        )
    chosen = user.login if has_login(user) else _new_login(login)
    passwords.check(password, login=chosen, display_name=user.display_name)
    if release:
        db.session.commit()
    with auth.hashing():
        new_hash = auth.hash_password(password)
    # Used once, also by parallel requests: only one of them moves used_at.
    now = utcnow()
    claimed = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.used_at.is_(None), Invitation.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        raise Problem(
            410,
            "This invitation was used or has expired; ask your administrator for a new one.",
            type_="/problems/invitation-gone",
        )
    user.login, user.password_hash = chosen, new_hash
    user.totp_reenrol = not user.totp_enabled  # a second factor before anything else
    try:
        db.session.flush()
    except IntegrityError:  # someone chose the same login a moment before
        raise Problem(409, "That login is taken.", errors={"login": ["That login is taken."]}) from None
    auth.revoke_all(user)
    return user


def _new_login(login: str | None) -> str:
    if not login:
        raise invalid({"login": ["Choose a login."]})
    if db.session.execute(select(User.id).where(User.login == login)).first():
        raise Problem(409, "That login is taken.", errors={"login": ["That login is taken."]})
    return login
