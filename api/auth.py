"""Sign-in for API clients: bearer tokens, TOTP enrolment, the caller."""

from flask_login import current_user
from flask_wtf.csrf import generate_csrf

from api.pipeline import endpoint
from api.schemas import (
    OtpRequest,
    OutboxKeys,
    PasskeyCreationOptions,
    PasskeyIn,
    PasskeyList,
    PasskeyMade,
    PasskeyOptionsIn,
    PasskeyRequestOptions,
    RecoverIn,
    TokenRequest,
    TokenResponse,
    TotpEnrolment,
    UserOut,
)
from renkei.common import work
from renkei.people import auth, directory, outboxes, passkeys, resets


@endpoint(
    "POST",
    "/auth/tokens",
    summary="Exchange login, password (and one-time code) for a bearer token",
    tag="auth",
    action="auth.login",
    auth="public",
    body=TokenRequest,
    response=TokenResponse,
    status=201,
    errors=(401, 429),
)
def create_token(body):
    if "passkey" in body:
        user = auth.authenticate_passkey(body["passkey"])
    else:
        user = auth.authenticate(body["login"], body["password"], body.get("otp"))
    token, expires, limited = auth.issue_token(user)
    out = {"token": token, "expires_at": expires, "notice": resets.notice(user)}
    return out | ({"enrolment_required": True} if limited else {})


@endpoint(
    "POST",
    "/auth/recover",
    summary="Choose a new password with the recovery code from an access reset",
    tag="auth",
    action="auth.recover",
    auth="public",
    body=RecoverIn,
    status=204,
    errors=(401, 429),
)
def recover(body):
    resets.recover(body["login"], body["code"], body["new_password"])


@endpoint(
    "DELETE",
    "/auth/tokens/current",
    summary="Revoke the token used for this request",
    tag="auth",
    action="auth.logout",
    status=204,
)
def revoke_token():
    auth.revoke_token(work.current().token)


@endpoint(
    "POST",
    "/auth/totp",
    summary="Start enrolling a TOTP second factor",
    tag="auth",
    action="auth.totp_enrol",
    response=TotpEnrolment,
    status=201,
    errors=(409,),
)
def start_totp():
    return auth.start_totp(current_user._get_current_object())


@endpoint(
    "POST",
    "/auth/totp/confirm",
    summary="Confirm TOTP enrolment with a code",
    tag="auth",
    action="auth.totp_confirm",
    body=OtpRequest,
    status=204,
    errors=(409, 422),
)
def confirm_totp(body):
    user = current_user._get_current_object()
    due = auth.enrolment_due(user)
    auth.confirm_totp(user, body["otp"])
    if due:
        auth.first_factor_stored(user)


@endpoint("GET", "/users/me", summary="The caller", tag="directory", action=None, response=UserOut)
def me():
    return directory.user_out(current_user)


@endpoint(
    "GET",
    "/users/me/outbox-key",
    summary="This device's key for the caller's offline outbox (and, for a session, the CSRF token)",
    tag="directory",
    action="outbox.key",
    response=OutboxKeys,
)
def outbox_key():
    # The service worker sends waiting items with the session cookie but has no page to
    # read the CSRF token from; the key opens only what this person left on this device.
    out = outboxes.outbox_keys(current_user)
    if work.current().cookie_auth:
        out["csrf_token"] = generate_csrf()
    return out


# --- passkeys (renkei/people/passkeys.py) ------------------------------------


@endpoint(
    "POST",
    "/auth/passkeys/options",
    summary="Options to create a passkey (navigator.credentials.create)",
    tag="auth",
    action=None,
    body=PasskeyOptionsIn,
    response=PasskeyCreationOptions,
)
def passkey_creation_options(body):
    return passkeys.creation_options(current_user)


@endpoint(
    "POST",
    "/auth/passkeys",
    summary="Register a passkey (user verification required; at most 10)",
    tag="auth",
    action="auth.passkey_add",
    body=PasskeyIn,
    response=PasskeyMade,
    status=201,
    errors=(409, 422),
)
def add_passkey(body):
    user = current_user._get_current_object()
    due = auth.enrolment_due(user)  # before: this is the first factor of someone who needs one
    made = passkeys.register(user, body["credential"], body.get("name"))
    if due:
        auth.first_factor_stored(user)
    return made


@endpoint("GET", "/auth/passkeys", summary="My passkeys", tag="auth", action=None, response=PasskeyList)
def list_passkeys():
    return {"items": passkeys.of(current_user)}


@endpoint(
    "DELETE",
    "/auth/passkeys/<passkey_id>",
    summary="Remove a passkey (409 if it is the last second factor while one is required)",
    tag="auth",
    action="auth.passkey_remove",
    status=204,
    errors=(404, 409),
)
def remove_passkey(passkey_id):
    passkeys.remove(current_user, passkey_id, auth.keeps_second_factor)


@endpoint(
    "POST",
    "/auth/passkey-challenge",
    summary="Options to sign in with a passkey (no login typed)",
    tag="auth",
    action=None,
    auth="public",
    body=PasskeyOptionsIn,
    response=PasskeyRequestOptions,
)
def passkey_challenge(body):
    return passkeys.request_options()
