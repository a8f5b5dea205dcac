"""Issue 32: passkeys through the API (docs/API.md, "Passkeys"), answered by a software
authenticator (tests/passkey_device.py): registration, sign-in without a login, every
refusal — a replayed or expired challenge, a wrong origin or RP ID, no user
verification, a bad signature, a counter that went backwards — and break-glass."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from models import AuditEntry, Passkey, utcnow
from renkei.common import db
from renkei.people import passkeys
from tests.helpers import PASSWORD, R, team
from tests.passkey_device import SoftPasskey

WRONG = {"status": 401}


def enrol(api, who, device=None, name="iPad 訪問用"):
    device = device or SoftPasskey()
    options = api.call(who, "POST", "/api/v1/auth/passkeys/options", {}).json
    r = api.call(who, "POST", "/api/v1/auth/passkeys", {"credential": device.create(options), "name": name})
    assert r.status_code == 201, r.json
    return device, r.json


def sign_in(api, device, **answer):
    options = api.client.post("/api/v1/auth/passkey-challenge", json={}).json
    return api.client.post("/api/v1/auth/tokens", json={"passkey": device.get(options, **answer)})


def stored(api):
    with api.app.app_context():
        return db.session.execute(select(Passkey)).scalars().all()


def test_creation_options_ask_for_a_discoverable_credential_with_user_verification(api):
    api.user("ns", "nurse")
    options = api.call("ns", "POST", "/api/v1/auth/passkeys/options", {}).json
    assert options["rp"] == {"id": "localhost", "name": "Renkei"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["user"]["name"] == "ns" and options["challenge"]


def test_a_passkey_is_registered_listed_and_signs_in_without_a_login(api):
    api.user("ns", "nurse")
    device, made = enrol(api, "ns")
    assert set(made) == {"id", "name", "created_at"} and made["name"] == "iPad 訪問用"
    listed = api.call("ns", "GET", "/api/v1/auth/passkeys").json["items"]
    assert [(p["id"], p["last_used_at"]) for p in listed] == [(made["id"], None)]
    challenge = api.client.post("/api/v1/auth/passkey-challenge", json={}).json
    assert challenge["rpId"] == "localhost" and challenge["userVerification"] == "required"
    assert challenge["allowCredentials"] == []
    r = sign_in(api, device)
    assert r.status_code == 201 and set(r.json) >= {"token", "expires_at"}
    me = api.client.get("/api/v1/users/me", headers={"Authorization": "Bearer " + r.json["token"]})
    assert me.json["login"] == "ns"
    assert api.call("ns", "GET", "/api/v1/auth/passkeys").json["items"][0]["last_used_at"] is not None


@pytest.mark.parametrize(
    "spoil",
    ["replayed", "expired", "wrong origin", "wrong rp id", "no user verification"],
)
def test_a_registration_that_does_not_hold_is_422_and_stores_nothing(api, monkeypatch, spoil):
    api.user("ns", "nurse")
    options = api.call("ns", "POST", "/api/v1/auth/passkeys/options", {}).json
    device = SoftPasskey(rp_id="evil.example" if spoil == "wrong rp id" else "localhost")
    credential = device.create(
        options,
        verified=spoil != "no user verification",
        origin="https://evil.example" if spoil == "wrong origin" else None,
    )
    if spoil == "replayed":
        assert api.call("ns", "POST", "/api/v1/auth/passkeys", {"credential": credential}).status_code == 201
        credential = SoftPasskey().create(options)  # another device, the same (used) challenge
    if spoil == "expired":
        later = utcnow() + passkeys.CHALLENGE_LIFETIME + timedelta(seconds=5)
        monkeypatch.setattr(passkeys, "utcnow", lambda: later)
    r = api.call("ns", "POST", "/api/v1/auth/passkeys", {"credential": credential})
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert r.json["errors"]["credential"][0].startswith("The passkey could not be registered")
    assert len(stored(api)) == (1 if spoil == "replayed" else 0)


@pytest.mark.parametrize(
    "spoil",
    [
        "replayed challenge",
        "unknown credential",
        "bad signature",
        "no user verification",
        "counter backwards",
        "wrong origin",
        "another local port",
    ],
)
def test_a_sign_in_that_does_not_hold_answers_like_a_wrong_password(api, spoil):
    api.user("ns", "nurse")
    device, _ = enrol(api, "ns")
    wrong_password = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": "not it"})
    options = api.client.post("/api/v1/auth/passkey-challenge", json={}).json
    if spoil == "replayed challenge":
        answer = device.get(options)
        assert api.client.post("/api/v1/auth/tokens", json={"passkey": answer}).status_code == 201
        answer = device.get(options)  # the same challenge, answered again
    elif spoil == "unknown credential":
        answer = SoftPasskey().get(options)
    elif spoil == "bad signature":
        answer = device.get(options)
        answer["response"]["signature"] = SoftPasskey().get(options)["response"]["signature"]
    elif spoil == "no user verification":
        answer = device.get(options, verified=False)
    elif spoil == "counter backwards":
        assert sign_in(api, device).status_code == 201 and sign_in(api, device).status_code == 201  # counter 2
        answer = device.get(api.client.post("/api/v1/auth/passkey-challenge", json={}).json, counter=1)
    elif spoil == "another local port":  # RP ID localhost is every local port's: only ours counts
        answer = device.get(options, origin="http://localhost:31337")
    else:
        answer = device.get(options, origin="https://evil.example")
    host = {"Host": "localhost:31337"} if spoil == "another local port" else {}  # as that page would send it
    r = api.client.post("/api/v1/auth/tokens", json={"passkey": answer}, headers=host)
    assert r.status_code == 401 and r.json == wrong_password.json
    if spoil == "counter backwards":  # a cloned authenticator: its own entry in the access log
        with api.app.app_context():
            details = db.session.execute(select(AuditEntry.detail).where(AuditEntry.outcome != "ok")).scalars().all()
        assert any("passkey_counter_backwards=" in (d or "") for d in details), details


def test_a_password_alone_opens_only_enrolment_and_after_it_a_password_is_refused(api):
    api.user("ns", "nurse", second_factor=False)  # an invited nurse at her first sign-in
    first = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD})
    assert first.status_code == 201 and first.json["enrolment_required"] is True
    api.tokens["ns"] = first.json["token"]
    refused = api.call("ns", "GET", f"{R}")
    assert refused.status_code == 403 and refused.json["type"].endswith("second-factor-enrolment")
    assert api.call("ns", "GET", "/api/v1/users/me").status_code == 200
    device, _ = enrol(api, "ns")
    assert api.call("ns", "GET", f"{R}").status_code == 403  # that token stays limited
    again = sign_in(api, device)
    assert again.status_code == 201 and "enrolment_required" not in again.json
    assert api.client.get(R, headers={"Authorization": "Bearer " + again.json["token"]}).status_code == 200
    r = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD})
    assert r.status_code == 401
    with_both = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD, "passkey": {}})
    assert with_both.status_code == 422 and "passkey" in with_both.json["errors"]


def test_ten_passkeys_at_most_and_the_last_second_factor_stays(api):
    api.user("ns", "nurse", second_factor=False)
    device, first = enrol(api, "ns")
    assert api.call("ns", "DELETE", f"/api/v1/auth/passkeys/{first['id']}").status_code == 403  # enrolment only
    api.tokens["ns"] = sign_in(api, device).json["token"]  # signed in again with the new factor
    last = api.call("ns", "DELETE", f"/api/v1/auth/passkeys/{first['id']}")
    assert last.status_code == 409  # her only second factor, and one is required
    for n in range(9):
        enrol(api, "ns", name=f"端末 {n}")
    options = api.call("ns", "POST", "/api/v1/auth/passkeys/options", {}).json
    eleventh = api.call("ns", "POST", "/api/v1/auth/passkeys", {"credential": SoftPasskey().create(options)})
    assert eleventh.status_code == 409 and len(stored(api)) == 10
    assert api.call("ns", "DELETE", f"/api/v1/auth/passkeys/{first['id']}").status_code == 204
    api.user("cm", "care_manager")
    assert api.call("cm", "DELETE", f"/api/v1/auth/passkeys/{stored(api)[0].id}").status_code == 404  # not hers


def test_break_glass_opens_with_a_passkey_in_place_of_the_one_time_code(api):
    pid = team(api)
    api.user("night", "physician")
    device, _ = enrol(api, "night")
    reason = "夜間当番。家族より呼吸苦の連絡"

    def breakglass(answer):
        return api.call("night", "POST", f"{R}/{pid}/breakglass", {"reason": reason, "passkey": answer})

    options = api.client.post("/api/v1/auth/passkey-challenge", json={}).json
    someone_else = breakglass(SoftPasskey().get(options))
    assert someone_else.status_code == 401 and someone_else.json["type"].endswith("/otp-required")
    opened = breakglass(device.get(api.client.post("/api/v1/auth/passkey-challenge", json={}).json))
    assert opened.status_code == 201, opened.json
    assert api.call("night", "GET", f"{R}/{pid}/record").status_code == 200


def test_a_password_only_clinician_is_led_to_enrolment_in_the_pages_and_reads_nothing_before(api):
    """A production-configured service (not the embedded demo): a clinician with a
    password alone lands on the account page, every other page sends her back there and
    the API answers 403, until she adds a passkey — then the page's session is hers."""
    pid = team(api)
    api.user("ns", "nurse", second_factor=False)
    api.join(pid, "ns", "nurse", by="cm")
    page = api.web("ns")
    assert page.get(f"/patients/{pid}").headers["Location"].endswith("/account")
    account = page.get("/account").get_data(as_text=True)
    assert "二要素認証を設定してください" in account and "パスキー" in account
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', account).group(1)
    headers = {"X-CSRFToken": csrf}
    assert page.get(f"{R}/{pid}/record").status_code == 403
    options = page.post("/api/v1/auth/passkeys/options", json={}, headers=headers).json
    made = page.post("/api/v1/auth/passkeys", json={"credential": SoftPasskey().create(options)}, headers=headers)
    assert made.status_code == 201
    assert page.get(f"/patients/{pid}").status_code == 200  # signed in again with the new factor
    assert page.get(f"{R}/{pid}/record").status_code == 200


def test_someone_with_only_the_password_can_add_nothing_once_the_person_has_enrolled(api):
    """The first to enrol wins: the person's other password-only tokens end, and a
    password-only credential can never add a second factor beside an existing one."""
    api.user("ns", "nurse", second_factor=False)
    thief = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD}).json["token"]
    enrol(api, "ns")  # the nurse, with her own password-only token
    stolen = {"Authorization": "Bearer " + thief}
    options = api.client.post("/api/v1/auth/passkeys/options", json={}, headers=stolen)
    assert options.status_code == 401  # revoked when she enrolled
    later = api.client.post("/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD})
    assert later.status_code == 401  # a password alone no longer signs in at all
    mine = {"Authorization": "Bearer " + api.tokens["ns"]}  # hers, still limited: adds no second one
    refused = api.client.post("/api/v1/auth/passkeys/options", json={}, headers=mine)
    assert refused.status_code == 403 and refused.json["type"].endswith("second-factor-enrolment")
    assert api.client.post("/api/v1/auth/totp", headers=mine).status_code == 403


def test_a_token_from_before_the_rule_opens_what_its_person_stands_for_now(api):
    """Tokens issued before migration 0019 carry no mark: they open only enrolment for
    someone without a second factor, and everything for someone with one."""
    from models import ApiToken

    api.user("ns", "nurse", second_factor=False)
    api.user("cm", "care_manager")
    with api.app.app_context():
        db.session.execute(update(ApiToken).values(enrolment_only=None))
        db.session.commit()
    assert api.call("ns", "GET", R).status_code == 403
    assert api.call("cm", "GET", R).status_code == 200
