"""Sign-in counters and locks (docs/ARCHITECTURE.md, "Authentication"), for passwords,
passkeys, recovery codes, invitations and lookups that could tell who is a patient."""

import hashlib
import ipaddress
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models import LoginThrottle, User, utcnow
from renkei.common import db, vault, work
from renkei.common.problems import Problem


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# Three counters guard sign-in (docs/ARCHITECTURE.md, "Authentication"):
# - this login from this address: every attempt is counted *before* the password is
#   checked and the count is committed at once, so parallel attempts see each other;
#   past `lockout_threshold` every attempt, right or wrong, is 429 until the lock ends;
# - this login from any address (`login_lockout_threshold` attempts, counted like the
#   first) and this address on any login (`address_lockout_threshold` failures — failures
#   only, so an office of colleagues behind one address signing in is never counted)
#   lock more widely. An IPv6 address counts as its /64.
# So one address hammering a physician's login locks it for that address only; the
# physician's own device keeps working. Counting restarts after `lockout_seconds`.


def keys_of(login: str, address: str) -> dict[str, str]:
    name = login.lower()
    if ":" in address:  # IPv6: one subscriber holds a whole /64
        address = str(ipaddress.ip_network(address + "/64", strict=False))
    return {
        "account": _sha256(f"login|{name}|addr|{address}"),
        "login": _sha256(f"login|{name}"),
        "address": _sha256(f"addr|{address}"),
    }  # the login's own digest is keys["login"]


def locked_until(keys, now) -> datetime | None:
    return db.session.execute(
        select(func.max(LoginThrottle.locked_until)).where(
            LoginThrottle.login_hash.in_(list(keys)), LoginThrottle.locked_until > now
        )
    ).scalar()


def count(key: str, lock_at: int, now: datetime, login_digest: str | None = None) -> datetime | None:
    """One more on this counter, atomically (INSERT … ON CONFLICT DO UPDATE); lock it
    once the count reaches `lock_at`. Returns the lock's end, if locked. Counters of a
    login carry its digest, so an administrator can unlock it from every address."""
    t = LoginThrottle.__table__
    window = timedelta(seconds=current_app.config["RENKEI"].lockout_seconds)
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stale = t.c.window_start.is_(None) | (t.c.window_start < now - window) | (t.c.locked_until <= now)
    upsert = (
        insert(t)
        .values(login_hash=key, failures=1, window_start=now, login_digest=login_digest)
        .on_conflict_do_update(
            index_elements=[t.c.login_hash],
            set_={
                "failures": case((stale, 1), else_=t.c.failures + 1),
                "window_start": case((stale, now), else_=t.c.window_start),
                "locked_until": case((stale, None), else_=t.c.locked_until),
            },
        )
    )
    failures = db.session.execute(upsert.returning(t.c.failures)).scalar_one()
    if failures >= lock_at:
        db.session.execute(
            update(t)
            .where(t.c.login_hash == key, t.c.locked_until.is_(None) | (t.c.locked_until <= now))
            .values(locked_until=now + window)
        )
    return locked_until([key], now)


def unlock(login: str):
    """Lift every lock on this login: from each address and from anywhere."""
    db.session.execute(delete(LoginThrottle).where(LoginThrottle.login_digest == _sha256(f"login|{login.lower()}")))


def too_many(until: datetime, now: datetime) -> Problem:
    return Problem(
        429,
        "Too many failed sign-ins; try again later.",
        headers={"Retry-After": str(int((until - now).total_seconds()) + 1)},
    )


def count_lookup(purpose: str, user: User, limit: int):
    """Rate-limit a lookup that could tell who is a patient (break-glass by code or by
    name): counted before anything is checked and committed at once, like a sign-in;
    429 past `limit` lookups in a lockout window."""
    now = utcnow()
    key = _sha256(f"lookup|{purpose}|{user.id}")
    locked = locked_until([key], now) or count(key, limit + 1, now)
    db.session.commit()
    if locked:
        raise Problem(
            429,
            "Too many lookups; try again later.",
            headers={"Retry-After": str(int((locked - now).total_seconds()) + 1)},
        )


def _anonymous_key(purpose: str) -> str:
    return _sha256(f"{purpose}|" + keys_of("-", work.current().client_addr or "-")["address"])


def check_anonymous(purpose: str):
    """429 while this address is locked for an unauthenticated attempt (an invitation's
    code): checked before anything is looked up."""
    now = utcnow()
    locked = locked_until([_anonymous_key(purpose)], now)
    if locked:
        raise too_many(locked, now)


def failed_anonymous(purpose: str, limit: int):
    """Count a failed attempt from this address, committed at once (the request itself
    fails and changes nothing else). Failures only, as for an address's sign-ins: an
    office accepting forty invitations from one address is never locked."""
    count(_anonymous_key(purpose), limit, utcnow())
    db.session.commit()


def begin_attempt(login: str) -> User | None:
    """Start a sign-in (or recovery) attempt: 429 while any counter of it is locked;
    else count it before anything is checked — committed at once, so parallel attempts
    see each other — and return the person the login names, if any."""
    s, unit, now = current_app.config["RENKEI"], work.current(), utcnow()
    unit.describe(detail="login=" + vault.keyed_digest("audit_login", login.lower()))
    keys = keys_of(login, unit.client_addr or "-")
    locked = locked_until(keys.values(), now)
    if locked:
        raise too_many(locked, now)
    locked = count(keys["account"], s.lockout_threshold + 1, now, keys["login"]) or count(
        keys["login"], s.login_lockout_threshold + 1, now, keys["login"]
    )
    db.session.commit()
    if locked:
        raise too_many(locked, now)
    user = db.session.execute(select(User).where(User.login == login)).scalar_one_or_none()
    unit.actor = user  # for the access-log entry of this attempt
    return user


def failed_attempt(login: str):
    s, now = current_app.config["RENKEI"], utcnow()
    keys = keys_of(login, work.current().client_addr or "-")
    count(keys["address"], s.address_lockout_threshold, now)
    db.session.commit()


def succeeded_attempt(login: str):
    """Clear this login's counts, unless a parallel attempt already locked it."""
    keys = keys_of(login, work.current().client_addr or "-")
    db.session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.login_hash.in_([keys["account"], keys["login"]]), LoginThrottle.locked_until.is_(None)
        )
    )
