"""Findings 4 and 15 (and 14's printed TOTP secret): what an administrator can and
cannot do to other people's accounts."""

import os
import stat
import time

import pyotp

from tests.helpers import PASSWORD, R, random_master_key, team
from tests.servers import free_port, start_server

TOKENS = "/api/v1/auth/tokens"


def test_nobody_sets_another_persons_password(api):
    """Finding 4a: PATCH /users/{id} {"password"} let an administrator sign in as a clinician.
    (A password sign-in alone: doc has not enrolled a second factor yet.)"""
    doc = api.user("doc", "physician", second_factor=False)
    r = api.call("admin", "PATCH", f"/api/v1/users/{doc}", {"password": "chosen by the admin!"})
    assert r.status_code == 422 and "password" in r.json["errors"]
    assert api.client.post(TOKENS, json={"login": "doc", "password": "chosen by the admin!"}).status_code == 401
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 201


def test_the_last_active_administrator_cannot_be_disabled(api):
    """Finding 15."""
    r = api.call("admin", "PATCH", f"/api/v1/users/{api.admin_id}", {"disabled": True})
    assert r.status_code == 409
    assert api.call("admin", "GET", "/api/v1/users/me").status_code == 200


def test_new_passwords_follow_asvs(api):
    """Finding 15: at least 12 characters, not a common one, not the login; no composition
    rules. The person chooses it, accepting their invitation (issue 29)."""

    def accept(login, password):
        made = api.call(
            "admin",
            "POST",
            "/api/v1/users",
            {"login": login, "display_name": "Taro Renkei", "organization_id": api.org, "profession": "nurse"},
        )
        return api.client.post(
            "/api/v1/invitations/accept", json={"code": made.json["invitation"]["code"], "password": password}
        )

    for login, weak in [
        ("n1", "eleven char"),
        ("n2", "password1234"),
        ("n3", "Qwerty123456"),
        ("nurse.sato", "nurse.sato is me"),
        ("n4", "aaaaaaaaaaaaaa"),
    ]:
        r = accept(login, weak)
        assert r.status_code == 422 and "password" in r.json["errors"], (weak, r.json)
    assert accept("n5", "しずかな朝に珈琲を淹れる").status_code == 201  # a phrase, no symbols needed


def test_administrators_unlock_and_reset_a_second_factor_audited(api):
    """Finding 15."""
    doc = api.user("doc", "physician", second_factor=False)
    for _ in range(6):
        api.client.post(TOKENS, json={"login": "doc", "password": "wrong password!"})
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 429
    assert api.call("admin", "POST", f"/api/v1/users/{doc}/unlock").status_code == 204
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 201

    api.tokens["doc"] = api.sign_in("doc", PASSWORD)
    api.enrol("doc")
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 401
    assert api.call("admin", "DELETE", f"/api/v1/users/{doc}/totp").status_code == 204
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 201
    actions = [e["action"] for e in api.call("admin", "GET", "/api/v1/audit?limit=50").json["items"]]
    assert "directory.user_unlock" in actions and "directory.totp_reset" in actions


def test_the_demo_administrators_totp_secret_stays_out_of_the_server_log(tmp_path):
    """Finding 14: the embedded server printed it into its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {
        "RENKEI_INSTANCE_DIR": str(tmp_path),
        "RENKEI_PORT": str(free_port()),
        "RENKEI_MASTER_KEY": random_master_key(),
    }
    with start_server(env):
        pass
    credentials = tmp_path / "demo-credentials.txt"
    secret = credentials.read_text().split("TOTP secret ")[1].split()[0]
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert secret not in log and "demo-credentials.txt" in log
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600


def test_a_reset_takes_two_administrators_and_the_person_chooses_the_password(api):
    """Finding 4a: an administrator resets; a second one approves; the old password,
    tokens and second factor die; the person sets a new password with a one-time code,
    hears who reset them, enrols their second factor again, and their clinical reads
    for a day are marked and announced to the team."""
    from sqlalchemy import text

    from renkei.common import db

    api.server_admin()
    pid = team(api)
    doc = api.users["doc"]["id"]

    asked = api.call("admin", "POST", f"/api/v1/users/{doc}/reset")
    assert asked.status_code == 201 and asked.json["status"] == "awaiting_approval"
    assert "recovery_code" not in asked.json
    assert api.call("doc", "GET", "/api/v1/users/me").status_code == 200  # nothing happened yet
    path = f"/api/v1/users/{doc}/reset/{asked.json['id']}/approve"
    assert api.call("admin", "POST", path).status_code == 403  # not by the one who asked
    approved = api.call("admin2", "POST", path)
    assert approved.status_code == 201 and approved.json["recovery_code"]
    code = approved.json["recovery_code"]
    assert api.call("doc", "GET", "/api/v1/users/me").status_code == 401
    assert (
        api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD, "otp": api.otp("doc")}).status_code == 401
    )

    recover = "/api/v1/auth/recover"
    assert (
        api.client.post(
            recover, json={"login": "doc", "code": "AAAAA-BBBBB-CCCCC-DDDDD", "new_password": "my own new phrase"}
        ).status_code
        == 401
    )
    weak = api.client.post(recover, json={"login": "doc", "code": code, "new_password": "password1234"})
    assert weak.status_code == 422 and "new_password" in weak.json["errors"]
    assert (
        api.client.post(recover, json={"login": "doc", "code": code, "new_password": "my own new phrase"}).status_code
        == 204
    )
    assert (
        api.client.post(recover, json={"login": "doc", "code": code, "new_password": "another new phrase"}).status_code
        == 401
    )

    first = api.client.post(TOKENS, json={"login": "doc", "password": "my own new phrase"})
    assert first.status_code == 201 and first.json["notice"]["kind"] == "access_reset"
    assert first.json["notice"]["by"] == "admin"  # the display name of who asked
    second = api.client.post(TOKENS, json={"login": "doc", "password": "my own new phrase"})
    assert second.json.get("notice") is None
    api.tokens["doc"] = second.json["token"]
    r = api.call("doc", "GET", f"{R}/{pid}/record")
    assert r.status_code == 403 and r.json["type"] == "/problems/second-factor-enrolment"
    secret = api.call("doc", "POST", "/api/v1/auth/totp").json["secret"]
    assert api.call("doc", "POST", "/api/v1/auth/totp/confirm", {"otp": pyotp.TOTP(secret).now()}).status_code == 204
    assert api.call("doc", "GET", f"{R}/{pid}/record").status_code == 403  # that token opens only enrolment
    next_code = pyotp.TOTP(secret).at(time.time() + 30)  # each code once: the next step's
    again = api.client.post(TOKENS, json={"login": "doc", "password": "my own new phrase", "otp": next_code})
    api.tokens["doc"] = again.json["token"]
    assert api.call("doc", "GET", f"{R}/{pid}/record").status_code == 200
    assert api.call("doc", "GET", f"{R}/{pid}/record").status_code == 200
    reads = [
        e
        for e in api.call("admin", "GET", f"/api/v1/audit?actor_id={doc}&action=record.read").json["items"]
        if e["outcome"] == "ok"
    ]
    assert len(reads) == 2 and all("after_reset" in e["detail"] for e in reads)
    with api.app.app_context():
        told = db.session.execute(
            text("SELECT count(*) FROM user_events WHERE user_id = :u AND name = :n"),
            {"u": api.users["cm"]["id"], "n": "access.after_reset"},
        ).scalar()
    assert told == 1  # once per patient, not per read


def test_one_administrator_alone_never_sees_a_recovery_code(api):
    """Review of the fix: with the other administrators disabled (or none), a reset
    still waits for a second administrator; the server's operator can reset instead."""
    admin2 = api.server_admin()
    doc = api.user("doc", "physician")
    assert api.call("admin", "PATCH", f"/api/v1/users/{admin2}", {"disabled": True}).status_code == 200
    r = api.call("admin", "POST", f"/api/v1/users/{doc}/reset")
    assert r.status_code == 201 and r.json["status"] == "awaiting_approval" and "recovery_code" not in r.json
    assert api.call("admin", "PATCH", f"/api/v1/users/{admin2}", {"disabled": False}).status_code == 200
    # the request lapses with its requester: a disabled requester's request cannot be approved
    assert api.call("admin", "POST", f"/api/v1/users/{api.admin_id}/reset").status_code == 409  # admins: on the server


def test_only_the_newest_code_works_once_and_ends_earlier_sessions(api):
    """Review of the fix: two approved resets left two live codes; a code could be used twice."""
    api.server_admin()
    doc = api.user("doc", "physician")
    codes = []
    for _ in range(2):
        rid = api.call("admin", "POST", f"/api/v1/users/{doc}/reset").json["id"]
        codes.append(api.call("admin2", "POST", f"/api/v1/users/{doc}/reset/{rid}/approve").json["recovery_code"])
    recover = "/api/v1/auth/recover"
    assert (
        api.client.post(
            recover, json={"login": "doc", "code": codes[0], "new_password": "first new phrase"}
        ).status_code
        == 401
    )
    assert (
        api.client.post(
            recover, json={"login": "doc", "code": codes[1], "new_password": "second new phrase"}
        ).status_code
        == 204
    )
    token = api.sign_in("doc", "second new phrase")
    assert (
        api.client.post(
            recover, json={"login": "doc", "code": codes[1], "new_password": "third new phrase"}
        ).status_code
        == 401
    )
    assert api.client.get("/api/v1/users/me", headers={"Authorization": "Bearer " + token}).status_code == 200


def test_removing_a_second_factor_forces_enrolment_and_ends_sessions(api):
    """Review of the fix: an administrator could silently turn two-factor sign-in off."""
    doc = api.user("doc", "physician")
    old = api.tokens["doc"]
    assert api.call("admin", "DELETE", f"/api/v1/users/{doc}/totp").status_code == 204
    assert api.client.get("/api/v1/users/me", headers={"Authorization": "Bearer " + old}).status_code == 401
    api.tokens["doc"] = api.sign_in("doc", PASSWORD)
    r = api.call("doc", "GET", R)
    assert r.status_code == 403 and r.json["type"] == "/problems/second-factor-enrolment"


def test_auditors_and_administrators_hold_no_clinical_profession_nor_team_place(api):
    """Finding 4b."""
    r = api.call(
        "admin",
        "POST",
        "/api/v1/users",
        {
            "login": "aud",
            "display_name": "監査",
            "organization_id": api.org,
            "profession": "physician",
            "is_auditor": True,
        },
    )
    assert r.status_code == 422 and "profession" in r.json["errors"]
    aud = api.user("aud", "other", is_auditor=True)
    pid = team(api)
    r = api.call("cm", "POST", f"{R}/{pid}/team", {"user_id": aud, "role": "nurse"})
    assert r.status_code == 422
    assert api.call("aud", "POST", f"{R}/{pid}/breakglass", {"reason": "確認のため閲覧"}).status_code == 403


def test_administrators_only_appoint_a_manager_to_a_team_without_one(api):
    """Finding 4c."""
    pid = team(api)
    api.user("ns", "nurse")
    r = api.call("admin", "POST", f"{R}/{pid}/team", {"user_id": api.users["ns"]["id"], "role": "nurse"})
    assert r.status_code == 403
    assert api.call("admin", "DELETE", f"{R}/{pid}/team/{api.users['pharm']['id']}").status_code == 403
    api.user("ph2", "pharmacist")
    orphan = api.patient("ph2")  # a pharmacist's patient: nobody manages its team
    api.user("dr2", "physician")
    r = api.call("admin", "POST", f"{R}/{orphan}/team", {"user_id": api.users["dr2"]["id"], "role": "nurse"})
    assert r.status_code in (403, 422)
    r = api.call(
        "admin", "POST", f"{R}/{orphan}/team", {"user_id": api.users["dr2"]["id"], "role": "primary_physician"}
    )
    assert r.status_code == 202 and r.json["status"] == "pending"  # a second person confirms (issue 29)
    api.confirm_appointment(orphan, "dr2")
    r = api.call("admin", "POST", f"{R}/{orphan}/team", {"user_id": api.users["ns"]["id"], "role": "nurse"})
    assert r.status_code == 403  # it has a manager now
