"""Findings 4 and 15 (and 14's printed TOTP secret): what an administrator can and
cannot do to other people's accounts."""
import os
import stat

import pyotp

from tests.helpers import PASSWORD, random_master_key
from tests.servers import free_port, start_server

TOKENS = "/api/v1/auth/tokens"


def test_nobody_sets_another_persons_password(api):
    """Finding 4a: PATCH /users/{id} {"password"} let an administrator sign in as a clinician."""
    doc = api.user("doc", "physician")
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
    """Finding 15: at least 12 characters, not a common one, not the login; no composition rules."""
    def create(login, password):
        return api.call("admin", "POST", "/api/v1/users", {
            "login": login, "password": password, "display_name": "Taro Renkei",
            "organization_id": api.org, "profession": "nurse"})
    for login, weak in [("n1", "eleven char"), ("n2", "password1234"), ("n3", "Qwerty123456"),
                        ("nurse.sato", "nurse.sato is me"), ("n4", "aaaaaaaaaaaaaa")]:
        r = create(login, weak)
        assert r.status_code == 422 and "password" in r.json["errors"], (weak, r.json)
    assert create("n5", "しずかな朝に珈琲を淹れる").status_code == 201  # a phrase, no symbols needed


def test_administrators_unlock_and_reset_a_second_factor_audited(api):
    """Finding 15."""
    doc = api.user("doc", "physician")
    for _ in range(6):
        api.client.post(TOKENS, json={"login": "doc", "password": "wrong password!"})
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 429
    assert api.call("admin", "POST", f"/api/v1/users/{doc}/unlock").status_code == 204
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 201

    secret = api.call("doc", "POST", "/api/v1/auth/totp").json["secret"]
    assert api.call("doc", "POST", "/api/v1/auth/totp/confirm", {"otp": pyotp.TOTP(secret).now()}).status_code == 204
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 401
    assert api.call("admin", "DELETE", f"/api/v1/users/{doc}/totp").status_code == 204
    assert api.client.post(TOKENS, json={"login": "doc", "password": PASSWORD}).status_code == 201
    actions = [e["action"] for e in api.call("admin", "GET", "/api/v1/audit?limit=50").json["items"]]
    assert "directory.user_unlock" in actions and "directory.totp_reset" in actions


def test_the_demo_administrators_totp_secret_stays_out_of_the_server_log(tmp_path):
    """Finding 14: the embedded server printed it into its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {"RENKEI_INSTANCE_DIR": str(tmp_path), "RENKEI_PORT": str(free_port()),
            "RENKEI_MASTER_KEY": random_master_key()}
    with start_server(env):
        pass
    credentials = tmp_path / "demo-credentials.txt"
    secret = credentials.read_text().split("TOTP secret ")[1].split()[0]
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert secret not in log and "demo-credentials.txt" in log
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
