"""Passkeys (docs/ARCHITECTURE.md, "Authentication"): WebAuthn credentials through
py_webauthn, always with user verification — the phone's fingerprint or face, the
tablet's PIN — so one gesture is two factors and cannot be phished.

- The relying party is the host of RENKEI_PUBLIC_URL, and its origin the only one
  accepted; without a public URL (development, the embedded default) it is `localhost`
  on whatever port the page was reached: browsers refuse an IP address as an RP ID.
- A challenge is stateless until answered: 16 random bytes, the time it was made and a
  MAC under a service key, bound to its purpose (and, for registration, to the person).
  It lives 5 minutes and is answered once (`UsedChallenge`), so asking for many stores
  nothing.
- Credentials are discoverable (sign in without typing a login), attestation `none`, at
  most 10 per person, each with a name; a sign counter that goes backwards is refused
  and leaves an access-log entry of its own.
"""

import hashlib
import hmac
import json
import os
import struct
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, request
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from models import Passkey, UsedChallenge, User, utcnow
from renkei.common import db, vault, work
from renkei.common.problems import Problem, invalid, not_found

CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_PASSKEYS = 10


class Refused(Exception):
    """An answer that does not hold: a reused or expired challenge, a wrong origin or RP
    ID, no user verification, a bad signature, a counter that went backwards."""


# --- the relying party --------------------------------------------------------


def rp_id() -> str:
    public = current_app.config["RENKEI"].public_url
    return urlsplit(public).hostname if public else "localhost"


def expected_origin() -> str:
    """The one origin accepted: the public URL's, or without one http://localhost on the
    configured port (never the Host header: RP ID `localhost` is shared by every local
    port, so another local site must not pass for Renkei)."""
    settings = current_app.config["RENKEI"]
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"http://localhost:{settings.port}"


def available() -> bool:
    """Whether this page's address can use passkeys at all (not at 127.0.0.1, nor at an
    address other than the public one)."""
    return expected_origin() == f"{request.scheme}://{request.host}"


def where_available() -> str:
    """The address at which passkeys work, for a page reached at another."""
    return expected_origin()


# --- challenges: stateless until answered ------------------------------------


def _mac(purpose: str, owner: str, body: bytes) -> bytes:
    key = vault.system_key("webauthn_challenge")
    return hmac.new(key, purpose.encode() + b"\x00" + owner.encode() + b"\x00" + body, hashlib.sha256).digest()[:16]


def new_challenge(purpose: str, owner: str = "") -> bytes:
    body = os.urandom(16) + struct.pack(">Q", int(utcnow().timestamp()))
    return body + _mac(purpose, owner, body)


def redeem(challenge: bytes, purpose: str, owner: str = ""):
    """Check a challenge the client answered, and use it up: once, within 5 minutes."""
    body, mac = challenge[:24], challenge[24:]
    if len(challenge) != 40 or not hmac.compare_digest(mac, _mac(purpose, owner, body)):
        raise Refused("not our challenge")
    made = struct.unpack(">Q", body[16:])[0]
    now = utcnow()
    if not 0 <= now.timestamp() - made <= CHALLENGE_LIFETIME.total_seconds():
        raise Refused("challenge expired")
    db.session.execute(delete(UsedChallenge).where(UsedChallenge.expires_at < now))
    try:
        with db.session.begin_nested():
            db.session.add(
                UsedChallenge(digest=hashlib.sha256(challenge).hexdigest(), expires_at=now + CHALLENGE_LIFETIME)
            )
    except IntegrityError:
        raise Refused("challenge already used") from None


def _client_challenge(credential: dict) -> bytes:
    """The challenge the browser signed, as it says in clientDataJSON (checked again by
    py_webauthn against the one redeemed here)."""
    try:
        client = json.loads(base64url_to_bytes(credential["response"]["clientDataJSON"]))
        return base64url_to_bytes(client["challenge"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused("no client data") from exc


# --- registration -------------------------------------------------------------


def creation_options(user: User) -> dict:
    mine = db.session.execute(select(Passkey.credential_id).where(Passkey.user_id == user.id)).scalars().all()
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name="Renkei",
        user_name=user.login,
        user_id=user.id.encode(),
        user_display_name=user.display_name,
        challenge=new_challenge("register", user.id),
        timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in mine],
    )
    return json.loads(options_to_json(options))


def register(user: User, credential: dict, name: str | None) -> dict:
    """Store a new passkey: 422 (nothing stored) unless the answer holds; 409 past ten."""
    if count(user) >= MAX_PASSKEYS:
        raise Problem(409, f"At most {MAX_PASSKEYS} passkeys; remove one first.")
    try:
        challenge = _client_challenge(credential)
        redeem(challenge, "register", user.id)
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            require_user_verification=True,
        )
    except (Refused, InvalidRegistrationResponse, KeyError, TypeError, ValueError) as exc:
        work.current().mark("passkey=refused")
        why = "The passkey could not be registered: " + _why(exc)
        raise invalid({"credential": [why]}, why) from exc
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=(name or "").strip()[:100] or "パスキー",
    )
    try:
        with db.session.begin_nested():
            db.session.add(passkey)
    except IntegrityError:
        raise invalid({"credential": ["This passkey is already registered."]}) from None
    work.current().mark("passkey=" + passkey.id)
    return passkey_out(passkey)


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, (Refused, InvalidRegistrationResponse)) else "malformed credential"


def passkey_out(p: Passkey) -> dict:
    return {"id": p.id, "name": p.name, "created_at": p.created_at, "last_used_at": p.last_used_at}


def of(user: User) -> list[dict]:
    rows = db.session.execute(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at))
    return [passkey_out(p) for p in rows.scalars()]


def count(user: User) -> int:
    return db.session.execute(select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)).scalar()


def remove(user: User, passkey_id: str, keeps_second_factor):
    """Remove one of the caller's passkeys; 409 when it is their last second factor and
    one is required (`keeps_second_factor(user, without)` says)."""
    passkey = db.session.execute(
        select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id)
    ).scalar_one_or_none()
    if passkey is None:
        raise not_found()
    if not keeps_second_factor(user, passkey):
        raise Problem(409, "This is your last second factor; add another before removing it.")
    db.session.delete(passkey)
    work.current().mark("passkey=" + passkey.id)


def remove_all(user: User):
    db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))


# --- authentication -------------------------------------------------------------


def request_options() -> dict:
    options = generate_authentication_options(
        rp_id=rp_id(),
        challenge=new_challenge("sign-in"),
        timeout=int(CHALLENGE_LIFETIME.total_seconds() * 1000),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return json.loads(options_to_json(options))


def _stored(credential: dict) -> Passkey:
    try:
        raw = base64url_to_bytes(credential["rawId"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused("no credential id") from exc
    passkey = db.session.execute(select(Passkey).where(Passkey.credential_id == raw)).scalar_one_or_none()
    if passkey is None:
        raise Refused("unknown credential")
    return passkey


def owner(credential) -> User | None:
    """Whose passkey an (unverified) assertion names, for counting a failed sign-in."""
    try:
        return db.session.get(User, _stored(credential).user_id)
    except Refused:
        return None


def verify(credential: dict, user: User | None = None) -> User:
    """The person a passkey assertion proves (user: it must be theirs). Refused unless it
    answers one of our sign-in challenges, fresh and unused, from our origin, with user
    verification, a good signature and a counter that moved on."""
    if not isinstance(credential, dict):
        raise Refused("no credential")
    passkey = _stored(credential)
    if user is not None and passkey.user_id != user.id:
        raise Refused("not this person's passkey")
    challenge = _client_challenge(credential)
    redeem(challenge, "sign-in")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except InvalidAuthenticationResponse as exc:
        if "sign count" in str(exc):  # a cloned authenticator, or a replayed answer
            work.current().mark("passkey_counter_backwards=" + passkey.id)
        raise Refused(str(exc)) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused("malformed assertion") from exc
    passkey.sign_count, passkey.last_used_at = verified.new_sign_count, utcnow()
    work.current().mark("passkey=" + passkey.id)  # beside what the request logs (a break-glass lookup)
    return db.session.get(User, passkey.user_id)


def verify_fresh(user: User, credential) -> bool:
    """For break-glass and confirmations: a fresh assertion by this person's passkey."""
    try:
        verify(credential, user)
        return True
    except Refused:
        return False
