"""The key that seals what a device keeps waiting to send (docs/ARCHITECTURE.md, "The
offline outbox").

A page keeps notes, edits and files that could not be sent in the browser's IndexedDB,
sealed under a key the browser does not keep: one per device *and* person, derived
here from the master keys, so nothing is stored for it. The device is named by a
random HttpOnly cookie the server sets once. Another person on the same tablet gets
another key and cannot open (or send) what the first left waiting; a stolen tablet
without the person's sign-in opens nothing."""

import base64
import secrets

from flask import after_this_request, current_app, request

from models import User
from renkei.common import vault

DEVICE_COOKIE = "renkei_device"
DEVICE_COOKIE_DAYS = 400  # the longest a browser keeps a cookie


def device_id() -> str:
    """This browser's device id: the cookie's, or a new one; either way (re)set on this
    response, so a device in daily use never reaches the cookie's end. SameSite=Lax, not
    Strict: arriving by a link from another site (an e-mail) must still name the device,
    or a new id would orphan what waits on it. The cookie names a device; it grants
    nothing without the person's session."""
    known = request.cookies.get(DEVICE_COOKIE, "")
    device = known if len(known) == 32 and all(c in "0123456789abcdef" for c in known) else secrets.token_hex(16)

    @after_this_request
    def _remember(resp):
        resp.set_cookie(
            DEVICE_COOKIE,
            device,
            max_age=DEVICE_COOKIE_DAYS * 86400,
            secure=current_app.config.get("SESSION_COOKIE_SECURE", False),
            httponly=True,
            samesite="Lax",
        )
        return resp

    return device


def outbox_keys(user: User) -> dict:
    """{"user_id", "keys": [{"id", "key"}]}: the caller's keys for this device, the
    current one first (the others open what was sealed before a master-key rotation
    ended), each in base64url. An access reset changes them: what was sealed before it
    can no longer be opened, by anyone."""
    reset = user.reset_at.isoformat() if user.reset_at else "-"
    info = "\x00".join(("renkei device outbox key v1", user.id, device_id(), reset))
    keys = [
        {"id": kid, "key": base64.urlsafe_b64encode(key).rstrip(b"=").decode()}
        for kid, key in vault.keyring().derive(info)
    ]
    return {"user_id": user.id, "keys": keys}
