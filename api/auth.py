"""Sign-in for API clients: bearer tokens, TOTP enrolment, the caller."""

import pyotp
from flask import g
from flask_login import current_user

from api import endpoint, set_audit
from api.schemas import OtpRequest, TokenRequest, TokenResponse, TotpEnrolment, UserOut
from models import utcnow
from renkei import auth, db
from renkei.problems import Problem


@endpoint("POST", "/auth/tokens", summary="Exchange login, password (and one-time code) for a bearer token",
          tag="auth", action="auth.login", auth="public", body=TokenRequest,
          response=TokenResponse, status=201, errors=(401, 429))
def create_token(body):
    set_audit(detail="login=" + body["login"][:60])
    try:
        user = auth.authenticate(body["login"], body["password"], body.get("otp"))
    except Problem:
        db.session.commit()  # keep the failure count even though the request fails
        raise
    token, expires = auth.issue_token(user)
    return {"token": token, "expires_at": expires}


@endpoint("DELETE", "/auth/tokens/current", summary="Revoke the token used for this request",
          tag="auth", action="auth.logout", status=204)
def revoke_token():
    row = g.get("api_token")
    if row is None:
        raise Problem(400, "This request was not made with a bearer token.")
    row.revoked_at = utcnow()
    from realtime import disconnect_token
    g.setdefault("after_commit", []).append(lambda: disconnect_token(row.id))
    return None


@endpoint("POST", "/auth/totp", summary="Start enrolling a TOTP second factor",
          tag="auth", action="auth.totp_enrol", response=TotpEnrolment, status=201,
          errors=(409,))
def start_totp():
    user = current_user._get_current_object()
    if user.totp_enabled:
        raise Problem(409, "A second factor is already enrolled.")
    secret = auth.new_totp_secret(user)
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.login, issuer_name="Renkei")
    return {"secret": secret, "otpauth_uri": uri}


@endpoint("POST", "/auth/totp/confirm", summary="Confirm TOTP enrolment with a code",
          tag="auth", action="auth.totp_confirm", body=OtpRequest, status=204, errors=(409, 422))
def confirm_totp(body):
    user = current_user._get_current_object()
    if user.totp_secret_ct is None or user.totp_enabled:
        raise Problem(409, "Start enrolment first.")
    if not auth.check_totp(user, body["otp"]):
        raise Problem(422, "The code does not match.", errors={"otp": ["The code does not match."]})
    user.totp_enabled = True
    return None


def user_out(user) -> dict:
    return {"id": user.id, "login": user.login, "display_name": user.display_name,
            "organization_id": user.organization_id,
            "organization_name": user.organization.name if user.organization else None,
            "profession": user.profession, "is_admin": user.is_admin,
            "is_auditor": user.is_auditor, "disabled": user.disabled,
            "totp_enabled": user.totp_enabled}


@endpoint("GET", "/users/me", summary="The caller", tag="directory", action=None, response=UserOut)
def me():
    return user_out(current_user)


