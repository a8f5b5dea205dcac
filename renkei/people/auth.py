"""Who is calling: Argon2id passwords, TOTP, lockout, bearer tokens, cookie sessions
and their CSRF protection (docs/ARCHITECTURE.md, "Authentication")."""

import contextlib
import hashlib
import secrets
import threading
import time
from datetime import timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, request
from flask import session as cookie_session
from flask_login import LoginManager, login_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import lazyload
from sqlalchemy.orm.attributes import set_committed_value

from models import ApiToken, User, utcnow
from renkei.access_log import entries
from renkei.common import crypto, db, offload, vault, work
from renkei.common.problems import Problem
from renkei.outreach import tell
from renkei.people import passkeys, throttle

login_manager = LoginManager()
csrf = CSRFProtect()
TOKEN_PREFIX = "rk_"


def hasher() -> PasswordHasher:
    s = current_app.config["RENKEI"]
    return PasswordHasher(time_cost=s.argon2_time_cost, memory_cost=s.argon2_memory_cost)


def hash_password(password: str) -> str:
    return offload.passwords.run(hasher().hash, password)


def unusable_password() -> str:
    """A real Argon2 hash of a secret nobody knows: checking it takes as long as any
    other, so a reset account is not told apart by timing."""
    return hash_password(secrets.token_urlsafe(32))


def _dummy_hash() -> str:
    ext = current_app.extensions
    if "renkei.dummy_hash" not in ext:
        ext["renkei.dummy_hash"] = hash_password(secrets.token_urlsafe(16))
    return ext["renkei.dummy_hash"]


def _password_ok(stored: str, password: str) -> bool:
    try:
        return offload.passwords.run(hasher().verify, stored, password)
    except (VerificationError, InvalidHashError):
        return False


@contextlib.contextmanager
def hashing():
    """A place in this process's queue of password hashes (`signin_queue`), taken before
    the login is looked up: past it a 503 with Retry-After at once, the same whatever the
    login, touching no database connection (a burst of sign-ins once drained the pool
    while each held a connection waiting for the two hashing threads: issue 29). Shed
    attempts are counted in the log, one entry per address and minute."""
    try:
        with offload.passwords.admit(current_app.config["RENKEI"].signin_queue):
            yield
    except offload.Full:
        entries.count_outside("auth.shed", work.current().client_addr)
        raise Problem(
            503, "Too many sign-ins at this moment; try again shortly.", headers={"Retry-After": "2"}
        ) from None


_first_measure = threading.Lock()


def _as_long_as_a_hash():
    """An unknown login takes as long as a known one, without using a hashing thread."""
    if not offload.passwords.typical:
        with _first_measure:  # once per process, however many arrive at its start
            if not offload.passwords.typical:
                _password_ok(_dummy_hash(), "-")
    time.sleep(offload.passwords.typical)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- TOTP -------------------------------------------------------------------


def new_totp_secret(user: User) -> str:
    secret = pyotp.random_base32()
    user.totp_secret_ct = crypto.seal(vault.system_key("totp"), secret.encode(), vault.totp_aad(user.id))
    user.totp_last_counter = 0  # a new secret: the old one's used steps mean nothing
    return secret


def totp_secret(user: User) -> str | None:
    if user.totp_secret_ct is None:
        return None
    return crypto.unseal(vault.system_key("totp"), user.totp_secret_ct, vault.totp_aad(user.id)).decode()


def check_totp(user: User, code: str | None) -> bool:
    """Valid for ±1 step, and each code once (totp_last_counter)."""
    secret = totp_secret(user)
    if not secret or not code or not code.isdigit():
        return False
    totp, now = pyotp.TOTP(secret), utcnow()
    for drift in (-1, 0, 1):
        at = now + timedelta(seconds=30 * drift)
        counter = totp.timecode(at)
        if counter > user.totp_last_counter and secrets.compare_digest(totp.at(at), code):
            # Compare-and-set: of parallel requests with one code, exactly one moves the
            # counter (the others wait on the row, then match nothing).
            moved = db.session.execute(
                update(User)
                .where(User.id == user.id, User.totp_last_counter < counter)
                .values(totp_last_counter=counter)
                .execution_options(synchronize_session=False)
            ).rowcount
            if moved:
                set_committed_value(user, "totp_last_counter", counter)
            return bool(moved)
    return False


def remove_totp(user: User):
    """The second factor is gone; the person enrols a new one before anything else."""
    if user.totp_enabled or user.totp_secret_ct is not None:
        user.totp_reenrol = True
    user.totp_secret_ct, user.totp_enabled = None, False


def remove_second_factors(user: User):
    """An access reset: TOTP and every passkey go; the person enrols again first thing."""
    if has_second_factor(user):
        user.totp_reenrol = True
    remove_totp(user)
    passkeys.remove_all(user)


def has_second_factor(user: User) -> bool:
    return user.totp_enabled or passkeys.count(user) > 0


def check_second_factor(user: User, otp: str | None = None, passkey=None) -> bool:
    """A fresh proof of the person's second factor: a TOTP code or a passkey assertion."""
    return check_totp(user, otp) if passkey is None else passkeys.verify_fresh(user, passkey)


def keeps_second_factor(user: User, without) -> bool:
    """Whether `user` still has a second factor, or needs none, once `without` (one of
    their passkeys) is gone."""
    if user.totp_enabled or passkeys.count(user) > 1:
        return True
    return not (user.is_admin or second_factor_due(user))


def second_factor_due(user: User) -> bool:
    """Whether this person must have a second factor (RENKEI_REQUIRE_SECOND_FACTOR; the
    demo's people on the embedded default are exempt: renkei/app.py)."""
    exempt = current_app.extensions.get("renkei.second_factor_exempt", frozenset())
    return current_app.config["RENKEI"].require_second_factor and user.login not in exempt


def second_factor_required(user: User) -> bool:
    """At sign-in. An administrator always needs one — except at the first sign-in after
    accepting an invitation, which opens only the enrolment of it (must_enrol_totp)."""
    return has_second_factor(user) or (user.is_admin and not must_enrol_totp(user))


def must_enrol_totp(user: User) -> bool:
    """Had a second factor before their access was reset: nothing else until it is back."""
    return bool(user.totp_reenrol) and not has_second_factor(user)


def enrolment_due(user: User) -> bool:
    """Signing in now opens only the enrolment of a second factor: the person has none
    and needs one (everyone, unless RENKEI_REQUIRE_SECOND_FACTOR=0 in development)."""
    if has_second_factor(user):
        return False
    return bool(user.totp_reenrol) or user.is_admin or second_factor_due(user)


def enrolment_only(user: User) -> bool:
    """This request opens only the enrolment: its token (or cookie session) was issued
    before the person had a second factor — it stays so after they enrol, and they sign
    in again with the new factor — or the person still has none."""
    token = work.current().token
    limited = token.enrolment_only if token is not None else cookie_session.get("enrolment_only")
    if limited is None:  # a credential from before the rule: as the person stands now
        return enrolment_due(user)
    # Decided when the credential was issued, so no query on every request; a reset of
    # the person's access ends every credential and asks for a new factor (totp_reenrol).
    return limited or must_enrol_totp(user)


def first_factor_stored(user: User):
    """The first second factor of someone who needs one (so every password-only credential
    of theirs was opened for its enrolment) was just stored. The first to enrol wins:
    every other such credential ends — tokens revoked, page sessions (the generation) and
    sockets ended — so someone who knew only the password can add nothing now. A page's
    session that enrolled has just proved the factor and goes on in full; a bearer token
    stays limited (sign in again)."""
    unit = work.current()
    mine = unit.token.id if unit.token is not None else ""
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.enrolment_only.is_not(False), ApiToken.revoked_at.is_(None))
        .where(ApiToken.id != mine)
        .values(revoked_at=utcnow())
    )
    user.session_generation += 1
    unit.end_sessions(user_id=user.id)
    if unit.cookie_auth:
        login_user(user)  # this session, under the new generation
        cookie_session["enrolment_only"] = False


def start_totp(user: User) -> dict:
    """Begin enrolling a second factor: a new secret, shown once."""
    if user.totp_enabled:
        raise Problem(409, "A second factor is already enrolled.")
    secret = new_totp_secret(user)
    return {"secret": secret, "otpauth_uri": pyotp.TOTP(secret).provisioning_uri(name=user.login, issuer_name="Renkei")}


def confirm_totp(user: User, code: str):
    if user.totp_secret_ct is None or user.totp_enabled:
        raise Problem(409, "Start enrolment first.")
    if not check_totp(user, code):
        raise Problem(422, "The code does not match.", errors={"otp": ["The code does not match."]})
    user.totp_enabled, user.totp_reenrol = True, False


# --- sign-in (counted by renkei/people/throttle.py) ----------------------------


def authenticate(login: str, password: str, otp: str | None) -> User:
    """Check credentials: 401 with one answer for an unknown login, a wrong password or
    a wrong or missing one-time code (so a right password is not revealed), or 429
    while locked. Failures are counted (committed) even though the request fails;
    on success the caller commits. The typed login enters the access-log entry only as a
    keyed digest (a password typed into the login field must not land in the log)."""
    ok = False
    with hashing():  # known or not, an attempt holds its place as long: the queue tells nothing
        user = throttle.begin_attempt(login)
        db.session.commit()  # no connection held while the hash waits for a thread and runs
        if user is not None:
            ok = _password_ok(user.password_hash, password)
        else:
            _as_long_as_a_hash()
    if ok and (user.disabled or (second_factor_required(user) and not check_totp(user, otp))):
        ok = False
    if not ok or user is None:
        throttle.failed_attempt(login)
        raise Problem(401, "Login or password (or one-time code) is incorrect.")
    throttle.succeeded_attempt(login)
    return user


def authenticate_passkey(credential) -> User:
    """Sign in with a passkey alone (two factors in one gesture). A refusal answers as a
    wrong password does and counts against the address — and the account, where the
    credential names one."""
    s, unit, now = current_app.config["RENKEI"], work.current(), utcnow()
    address = throttle.keys_of("", unit.client_addr or "-")["address"]
    locked = throttle.locked_until([address], now)
    if locked:
        raise throttle.too_many(locked, now)
    try:
        user = passkeys.verify(credential)
        if not user.disabled:
            unit.actor = user
            return user
    except passkeys.Refused:
        user = passkeys.owner(credential)
    throttle.count(address, s.address_lockout_threshold, now)
    if user is not None:
        unit.actor, login = user, throttle.keys_of(user.login, "-")["login"]
        throttle.count(login, s.login_lockout_threshold + 1, now, login)
    db.session.commit()  # the counts and the used challenge stay, though the request fails
    raise Problem(401, "Login or password (or one-time code) is incorrect.")


# --- bearer tokens ----------------------------------------------------------


def issue_token(user: User) -> tuple[str, object, bool]:
    """(token, expiry, whether it opens only the enrolment of a second factor)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=current_app.config["RENKEI"].token_ttl_seconds)
    limited = enrolment_due(user)
    db.session.add(ApiToken(user_id=user.id, token_hash=_sha256(token), expires_at=expires, enrolment_only=limited))
    return token, expires, limited


# One query for token and user: this runs on every API request, so it is built once,
# and without the user's organisation (loaded when asked for: few requests need it).
_TOKEN_USER = (
    select(ApiToken, User)
    .join(User, User.id == ApiToken.user_id)
    .where(
        ApiToken.token_hash == bindparam("token_hash"),
        ApiToken.revoked_at.is_(None),
        ApiToken.expires_at > bindparam("now"),
        User.disabled.is_(False),
    )
    .options(lazyload(User.organization))
)


def user_for_token(token: str) -> User | None:
    found = db.session.execute(_TOKEN_USER, {"token_hash": _sha256(token), "now": utcnow()}).first()
    if found is None:
        return None
    work.current().token = found.ApiToken
    return found.User


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


@login_manager.request_loader
def _load_from_bearer(req):
    token = bearer_token()
    return user_for_token(token) if token else None


@login_manager.user_loader
def _load_from_session(session_id: str):
    """Cookie sessions name user and session generation; bumping the generation
    (logout everywhere, disable) ends every session of the user at once."""
    user_id, _, generation = session_id.partition(":")
    user = db.session.get(User, user_id)
    if user is None or user.disabled or str(user.session_generation) != generation:
        return None
    work.current().cookie_auth = True
    return user


def revoke_token(token: ApiToken | None):
    """Sign out the bearer token used for this request."""
    if token is None:
        raise Problem(400, "This request was not made with a bearer token.")
    token.revoked_at = utcnow()
    work.current().end_sessions(token_id=token.id)


def sign_out(user: User):
    """End the browser session (and a copied cookie with it) and its sockets."""
    user.session_generation += 1
    work.current().end_sessions(user_id=user.id)


def revoke_all(user: User):
    """End every token, browser session and socket of a user (disable, password reset)."""
    now = utcnow()
    for row in db.session.execute(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ).scalars():
        row.revoked_at = now
    user.session_generation += 1
    work.current().end_sessions(user_id=user.id)
    tell.end_for(user.id)  # no device or address of theirs hears anything more


def socket_credential(user: User, token: ApiToken | None) -> dict:
    """What a socket's right to stay open rests on, and when it lapses by itself: the
    token's expiry, or the cookie session's idle timeout (counted from its last request)."""
    s, now = current_app.config["RENKEI"], utcnow()
    if token is not None:
        until = token.expires_at
    else:  # session["seen"] is written by idle_check on every request
        idle_for = int(now.timestamp()) - cookie_session.get("seen", int(now.timestamp()))
        until = now + timedelta(seconds=s.session_idle_seconds - idle_for)
    return {
        "user_id": user.id,
        "token_id": token.id if token else None,
        "generation": user.session_generation,
        "until": until,
    }


def credential_holds(credential: dict) -> bool:
    """Is a socket's credential still good: not lapsed, token not revoked, person not
    disabled, sessions not ended since (sign-out, reset)?"""
    now = utcnow()
    if credential["until"] <= now:
        return False
    user = db.session.get(User, credential["user_id"])
    if user is None or user.disabled or user.session_generation != credential["generation"]:
        return False
    if credential["token_id"] is None:
        return True
    token = db.session.get(ApiToken, credential["token_id"])
    return token is not None and token.revoked_at is None and token.expires_at > now


def idle_check():
    """Idle timeout for cookie sessions: session['seen'] is refreshed each request."""
    s = current_app.config["RENKEI"]
    now = int(utcnow().timestamp())
    seen = cookie_session.get("seen")
    if seen and now - seen > s.session_idle_seconds:
        cookie_session.clear()
    elif "_user_id" in cookie_session:
        cookie_session["seen"] = now
