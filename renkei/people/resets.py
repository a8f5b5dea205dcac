"""Resetting a person's access (docs/ARCHITECTURE.md, "Authentication"). Nobody sets
another person's password. An administrator asks for a reset; a second administrator
always approves it (whoever sees the recovery code could otherwise become the person).
Where there is no second administrator — and for an administrator's own access — the
reset is made on the server with `flask --app wsgi reset-access`, by whoever runs the
service. Approval ends the old password, every token, session and socket, and a second
factor (to be enrolled again); it issues a short-lived one-time recovery code, stored
hashed, cancelling any other, with which the person chooses a new password themselves.
They are told who reset their access and when at their next sign-in, and for a day
after they set the new password each patient whose record they read hears of it."""

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from models import AccessReset, User, utcnow
from renkei.access_log import entries
from renkei.common import db, work
from renkei.common.problems import Problem, not_found
from renkei.people import auth, directory, invitations, passwords, staff, throttle

REQUEST_LIFETIME = timedelta(hours=24)  # an approval must follow the request within this
WATCH = timedelta(hours=24)  # after the new password, clinical reads are marked and announced


def _digest(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").upper().encode()).hexdigest()


def _new_code() -> str:
    raw = secrets.token_hex(10).upper()  # 80 bits
    return "-".join(raw[i : i + 5] for i in range(0, 20, 5))


def request(actor: User, user_id: str) -> dict:
    """Ask for a reset of a clinician's or auditor's access; another administrator approves."""
    user = directory.managed_user(actor, user_id)
    if user.is_admin:
        raise Problem(409, "An administrator's access is reset on the server: flask --app wsgi reset-access.")
    reset = AccessReset(user_id=user.id, requested_by=actor.id, requested_at=utcnow())
    db.session.add(reset)
    db.session.flush()
    work.describe(detail=f"user={user.id};reset={reset.id}")
    return {"id": reset.id, "user_id": user.id, "status": "awaiting_approval"}


def waiting(viewer: User) -> list[dict]:
    """Requests still waiting for a second administrator, for the administrators' page."""
    staff.require_staff(viewer, "admin")
    rows = db.session.execute(
        select(AccessReset)
        .where(
            AccessReset.approved_at.is_(None),
            AccessReset.used_at.is_(None),
            AccessReset.requested_by.is_not(None),
            AccessReset.requested_at > utcnow() - REQUEST_LIFETIME,
        )
        .order_by(AccessReset.requested_at)
    ).scalars()
    return [
        {"id": r.id, "user_id": r.user_id, "requested_by": r.requested_by, "requested_at": r.requested_at} for r in rows
    ]


def approve(actor: User, user_id: str, reset_id: str) -> dict:
    """A second administrator approves: the reset happens and the code is handed over."""
    staff.require_staff(actor, "admin")
    reset = db.session.execute(
        select(AccessReset).where(AccessReset.id == reset_id).with_for_update()
    ).scalar()  # one approval, however many clicks
    work.describe(detail=entries.ref("reset", reset_id, reset is not None))
    if reset is None or reset.user_id != user_id or reset.approved_at is not None or reset.used_at is not None:
        raise not_found()
    if actor.id in (reset.requested_by, reset.user_id):
        raise Problem(403, "A second administrator approves a reset.")
    requester = db.session.get(User, reset.requested_by)
    if (
        utcnow() - reset.requested_at > REQUEST_LIFETIME
        or requester is None
        or requester.disabled
        or not requester.is_admin
    ):
        raise Problem(409, "This request has lapsed (a day old, or its administrator is no longer active).")
    return carry_out(reset, db.session.get(User, reset.user_id), actor)


def on_the_server(login: str) -> dict | None:
    """`flask --app wsgi reset-access`: a reset by whoever runs the service, for a
    deployment with one administrator or for an administrator's own access."""
    user = db.session.execute(select(User).where(User.login == login)).scalar()
    if user is None:
        return None
    reset = AccessReset(user_id=user.id, requested_by=None, requested_at=utcnow())
    db.session.add(reset)
    db.session.flush()
    out = carry_out(reset, user, None)
    if user.is_admin:  # an administrator cannot sign in without a second factor
        out["totp_secret"] = auth.new_totp_secret(user)
        user.totp_enabled, user.totp_reenrol = True, False
    return out


def carry_out(reset: AccessReset, user: User, approver: User | None) -> dict:
    code, now = _new_code(), utcnow()
    ttl = current_app.config["RENKEI"].recovery_code_seconds
    # Only the newest code works: every other request or code for this person is cancelled.
    db.session.execute(
        update(AccessReset)
        .where(AccessReset.user_id == user.id, AccessReset.id != reset.id, AccessReset.used_at.is_(None))
        .values(used_at=now, code_hash=None)
        .execution_options(synchronize_session=False)
    )
    reset.approved_by, reset.approved_at = approver.id if approver else None, now
    reset.code_hash, reset.code_expires_at = _digest(code), now + timedelta(seconds=ttl)
    user.password_hash = auth.unusable_password()
    invitations.cancel(user.id)  # only the recovery code leads in now
    auth.revoke_all(user)
    auth.remove_second_factors(user)
    user.reset_at, user.reset_by, user.reset_notice = now, reset.requested_by, True
    work.describe(detail=f"user={user.id};reset={reset.id}")
    return {
        "id": reset.id,
        "user_id": user.id,
        "status": "approved",
        "recovery_code": code,
        "expires_at": reset.code_expires_at,
    }


def recover(login: str, code: str, new_password: str):
    """The person sets their new password with the recovery code. Every failure answers
    alike and counts as a failed sign-in (renkei/people/auth.py throttling)."""
    user = throttle.begin_attempt(login)
    reset = (
        db.session.execute(
            select(AccessReset).where(
                AccessReset.code_hash == _digest(code),
                AccessReset.used_at.is_(None),
                AccessReset.code_expires_at > utcnow(),
            )
        ).scalar()
        if user
        else None
    )
    if reset is None or reset.user_id != user.id or user.disabled:
        throttle.failed_attempt(login)
        raise Problem(401, "The login or recovery code is not valid (codes work once, for a short time).")
    passwords.check(new_password, login=user.login, display_name=user.display_name, field="new_password")
    db.session.commit()  # no connection held while the hash waits for a thread and runs
    with auth.hashing():
        new_hash = auth.hash_password(new_password)
    now = utcnow()
    # Used once, even by parallel requests: only one of them moves used_at.
    claimed = db.session.execute(
        update(AccessReset)
        .where(AccessReset.id == reset.id, AccessReset.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:
        throttle.failed_attempt(login)
        raise Problem(401, "The login or recovery code is not valid (codes work once, for a short time).")
    user.password_hash = new_hash
    auth.revoke_all(user)  # whatever was signed in before the new password ends
    user.watch_until = now + WATCH
    throttle.succeeded_attempt(login)
    work.describe(detail=f"reset={reset.id}")
    return user


def notice(user: User) -> dict | None:
    """ "Your access was reset by X at T": once, at the first sign-in after a reset."""
    if not user.reset_notice:
        return None
    user.reset_notice = False
    by = db.session.get(User, user.reset_by) if user.reset_by else None
    return {"kind": "access_reset", "by": by.display_name if by else "server", "at": user.reset_at}
