"""Resetting a person's access (docs/ARCHITECTURE.md, "Authentication"). Nobody sets
another person's password. An administrator asks for a reset; a second administrator
approves it where there is one (whoever sees the recovery code could otherwise become
the person). Approval ends the old password, every token, session and socket, and a
second factor (to be enrolled again); it issues a short-lived one-time recovery code,
stored hashed, with which the person chooses a new password themselves. They are told
who reset their access and when at their next sign-in, and for a day each patient
whose record they read hears of it (renkei/authz.py)."""
import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from models import AccessReset, User, utcnow
from renkei import audit, auth, authz, db, passwords, work
from renkei.problems import Problem, not_found

UNUSABLE = "!reset"  # a password hash no password matches


def _digest(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").upper().encode()).hexdigest()


def _new_code() -> str:
    raw = secrets.token_hex(10).upper()  # 80 bits
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


def request(actor: User, user_id: str) -> dict:
    """Ask for a reset; approved at once only when no other administrator is active."""
    authz.require_staff(actor, "admin")
    user = db.session.get(User, user_id)
    work.describe(detail=audit.ref("user", user_id, user is not None))
    if user is None:
        raise not_found()
    if user.id == actor.id:
        raise Problem(409, "Another administrator resets an administrator's access.")
    reset = AccessReset(user_id=user.id, requested_by=actor.id, requested_at=utcnow())
    db.session.add(reset)
    db.session.flush()
    others = db.session.execute(select(func.count(User.id)).where(
        User.is_admin.is_(True), User.disabled.is_(False), User.id.not_in([actor.id, user.id]))).scalar()
    if others:
        return {"id": reset.id, "user_id": user.id, "status": "awaiting_approval"}
    return _carry_out(reset, user, actor)


def approve(actor: User, user_id: str, reset_id: str) -> dict:
    """A second administrator approves: the reset happens and the code is handed over."""
    authz.require_staff(actor, "admin")
    reset = db.session.get(AccessReset, reset_id)
    work.describe(detail=audit.ref("reset", reset_id, reset is not None))
    if reset is None or reset.user_id != user_id or reset.approved_at is not None:
        raise not_found()
    if actor.id in (reset.requested_by, reset.user_id):
        raise Problem(403, "A second administrator approves a reset.")
    return _carry_out(reset, db.session.get(User, reset.user_id), actor)


def _carry_out(reset: AccessReset, user: User, approver: User) -> dict:
    code, now = _new_code(), utcnow()
    ttl = current_app.config["RENKEI"].recovery_code_seconds
    reset.approved_by, reset.approved_at = approver.id, now
    reset.code_hash, reset.code_expires_at = _digest(code), now + timedelta(seconds=ttl)
    user.password_hash = UNUSABLE
    auth.revoke_all(user)
    if user.totp_enabled:
        auth.remove_totp(user)
        user.totp_reenrol = True
    user.reset_at, user.reset_by, user.reset_notice = now, reset.requested_by, True
    work.describe(detail=f"user={user.id};reset={reset.id}")
    return {"id": reset.id, "user_id": user.id, "status": "approved", "recovery_code": code,
            "expires_at": reset.code_expires_at}


def recover(login: str, code: str, new_password: str):
    """The person sets their new password with the recovery code. Every failure answers
    alike and counts as a failed sign-in (renkei/auth.py throttling)."""
    def refuse():
        return Problem(401, "The login or recovery code is not valid (codes work once, for a short time).")
    user = auth.begin_attempt(login)
    reset = db.session.execute(select(AccessReset).where(
        AccessReset.code_hash == _digest(code), AccessReset.used_at.is_(None),
        AccessReset.code_expires_at > utcnow())).scalar() if user else None
    if reset is None or reset.user_id != user.id or user.disabled:
        auth.failed_attempt(login)
        raise refuse()
    passwords.check(new_password, login=user.login, display_name=user.display_name, field="new_password")
    user.password_hash = auth.hash_password(new_password)
    reset.used_at = utcnow()
    auth.succeeded_attempt(login)
    work.describe(detail=f"reset={reset.id}")
    return user


def notice(user: User) -> dict | None:
    """"Your access was reset by X at T": once, at the first sign-in after a reset."""
    if not user.reset_notice:
        return None
    user.reset_notice = False
    by = db.session.get(User, user.reset_by)
    return {"kind": "access_reset", "by": by.display_name if by else None, "at": user.reset_at}
