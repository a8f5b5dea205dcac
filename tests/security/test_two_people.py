"""Issue 29, finding 1: one administrator could read and write any patient — choose a new
physician's password, disable the team's physician, appoint the new account as
backup physician, re-enable the physician, sign in as the new account. Now nobody knows
another person's password, and every identity and seat an administrator sets waits for
a second person."""

from datetime import datetime, timedelta

from click.testing import CliRunner
from sqlalchemy import select, update

from models import Invitation, User
from renkei import cli
from renkei.common import db
from tests.helpers import PASSWORD, R, team

UNCONFIRMED = "account-unconfirmed"


def invite(api, login="mole", **extra):
    body = {"login": login, "display_name": "内通 者", "organization_id": api.org, "profession": "physician"}
    r = api.call("admin", "POST", "/api/v1/users", {k: v for k, v in (body | extra).items() if v is not None})
    assert r.status_code == 201, r.json
    return r.json


def accept(api, code, password=PASSWORD, **extra):
    return api.client.post("/api/v1/invitations/accept", json={"code": code, "password": password} | extra)


def test_the_assessments_takeover_no_longer_reaches_the_record(api):
    pid = team(api)
    # The administrator can no longer choose a password...
    r = api.call(
        "admin",
        "POST",
        "/api/v1/users",
        {
            "login": "mole",
            "password": PASSWORD,
            "display_name": "内通 者",
            "organization_id": api.org,
            "profession": "physician",
        },
    )
    assert r.status_code == 422 and "password" in r.json["errors"]
    # ...and an account they made opens nothing, even with the invitation in their hands.
    made = invite(api)
    assert made["confirmed"] is False and "password" not in made
    assert accept(api, made["invitation"]["code"]).status_code == 201
    api.tokens["mole"] = api.sign_in("mole", PASSWORD)
    api.totps["mole"] = api.enrol("mole")
    for path in (f"{R}/{pid}/record", R, f"{R}/{pid}/team"):
        r = api.call("mole", "GET", path)
        assert r.status_code == 403 and r.json["type"].endswith(UNCONFIRMED), path
    # The seat: disable the team's managers, appoint, re-enable — the appointment is only pending.
    for manager in ("cm", "doc"):
        assert (
            api.call("admin", "PATCH", f"/api/v1/users/{api.users[manager]['id']}", {"disabled": True}).status_code
            == 200
        )
    api.confirm("mole")  # even a confirmed account...
    r = api.call("admin", "POST", f"{R}/{pid}/team", {"user_id": made["id"], "role": "backup_physician"})
    assert r.status_code == 202 and r.json["status"] == "pending"
    assert api.call("admin", "PATCH", f"/api/v1/users/{api.users['doc']['id']}", {"disabled": False}).status_code == 200
    assert api.call("mole", "GET", f"{R}/{pid}/record").status_code == 404  # ...holds no seat
    assert [p["user_id"] for p in api.call("admin", "GET", f"{R}/{pid}/team").json["pending"]] == [made["id"]]
    # The same administrator cannot confirm it; a second one cannot while the physician is back.
    r = api.call("admin", "POST", f"{R}/{pid}/team/{made['id']}/confirm")
    assert r.status_code == 403 and r.json["type"].endswith("second-person-needed")
    api.server_admin()
    assert api.call("admin2", "POST", f"{R}/{pid}/team/{made['id']}/confirm").status_code == 409
    assert api.call("mole", "GET", f"{R}/{pid}/record").status_code == 404


def test_a_second_person_confirms_an_appointment_and_the_team_hears_of_it(api):
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    pid = api.patient("cm")
    api.join(pid, "doc", "primary_physician", by="cm")
    assert api.call("admin", "PATCH", f"/api/v1/users/{api.users['cm']['id']}", {"disabled": True}).status_code == 200
    assert api.call("admin", "PATCH", f"/api/v1/users/{api.users['doc']['id']}", {"disabled": True}).status_code == 200
    api.user("cm2", "care_manager")
    assert (
        api.call(
            "admin", "POST", f"{R}/{pid}/team", {"user_id": api.users["cm2"]["id"], "role": "care_manager"}
        ).status_code
        == 202
    )
    assert api.call("cm2", "GET", f"{R}/{pid}/record").status_code == 404
    api.server_admin()
    r = api.call("admin2", "POST", f"{R}/{pid}/team/{api.users['cm2']['id']}/confirm")
    assert r.status_code == 200 and r.json["role"] == "care_manager"
    assert api.call("cm2", "GET", f"{R}/{pid}/record").status_code == 200
    assert api.call("admin2", "POST", f"{R}/{pid}/team/{api.users['cm2']['id']}/confirm").status_code == 404
    actions = [e["action"] for e in api.call("admin", "GET", "/api/v1/audit?limit=200").json["items"]]
    assert "team.confirm" in actions and actions.count("team.add") >= 2


def test_a_second_administrator_confirms_but_never_the_maker_nor_their_creature(api):
    made = invite(api)
    r = api.call("admin", "POST", f"/api/v1/users/{made['id']}/confirm")
    assert r.status_code == 403 and r.json["type"].endswith("second-person-needed")
    api.user("admin3", "other", is_admin=True)  # made by admin: their creature, even once confirmed
    r = api.call("admin3", "POST", f"/api/v1/users/{made['id']}/confirm")
    assert r.status_code == 403
    api.server_admin()
    r = api.call("admin2", "POST", f"/api/v1/users/{made['id']}/confirm")
    assert r.status_code == 200 and r.json["confirmed"] is True
    assert api.call("admin2", "POST", f"/api/v1/users/{made['id']}/confirm").status_code == 409
    # A name an administrator changes is an identity again: unconfirmed until a second person.
    r = api.call("admin2", "PATCH", f"/api/v1/users/{made['id']}", {"display_name": "佐藤 一郎"})
    assert r.status_code == 200 and r.json["confirmed"] is False
    # admin made the account: never theirs to confirm, whoever changed it last
    assert api.call("admin", "POST", f"/api/v1/users/{made['id']}/confirm").status_code == 403
    api.server_admin("admin4")  # tied to neither admin nor admin2
    assert api.call("admin4", "POST", f"/api/v1/users/{made['id']}/confirm").status_code == 200


def test_an_unconfirmed_administrator_invites_confirms_and_hands_over_nothing(api):
    api.user("admin3", "other", is_admin=True)
    with api.app.app_context():
        db.session.execute(update(User).where(User.login == "admin3").values(confirmed_at=None))
        db.session.commit()
    made = invite(api)
    for method, path in (
        ("POST", "/api/v1/users"),
        ("POST", f"/api/v1/users/{made['id']}/confirm"),
        ("POST", f"/api/v1/users/{made['id']}/reset"),
        ("GET", "/api/v1/audit"),
    ):
        r = api.call(
            "admin3",
            method,
            path,
            {"login": "x", "display_name": "x", "organization_id": api.org, "profession": "nurse"}
            if path == "/api/v1/users"
            else None,
        )
        assert r.status_code == 403 and r.json["type"].endswith(UNCONFIRMED), path


def test_the_server_confirms_for_a_deployment_with_one_administrator(api):
    pid = team(api)
    made = invite(api)
    accept(api, made["invitation"]["code"])
    runner = CliRunner()
    with api.app.app_context():
        result = runner.invoke(cli.confirm_user, ["--login", "mole"])
        assert result.exit_code == 0, result.output
        assert runner.invoke(cli.confirm_user, ["--login", "nobody"]).exit_code != 0
    api.call("admin", "PATCH", f"/api/v1/users/{api.users['cm']['id']}", {"disabled": True})
    api.call("admin", "PATCH", f"/api/v1/users/{api.users['doc']['id']}", {"disabled": True})
    assert (
        api.call("admin", "POST", f"{R}/{pid}/team", {"user_id": made["id"], "role": "backup_physician"}).status_code
        == 202
    )
    with api.app.app_context():
        result = runner.invoke(cli.confirm_appointment, ["--patient", pid, "--login", "mole"])
        assert result.exit_code == 0, result.output
    api.tokens["mole"] = api.sign_in("mole", PASSWORD)
    api.totps["mole"] = api.enrol("mole")
    assert api.call("mole", "GET", f"{R}/{pid}/record").status_code == 200
    actions = [e["action"] for e in api.call("admin", "GET", "/api/v1/audit?limit=300").json["items"]]
    assert {"directory.confirm_server", "team.confirm_server"} <= set(actions)


def test_an_invitation_is_single_use_for_a_week_and_tells_nothing_else(api):
    made = invite(api, login=None)
    invitation = made["invitation"]
    assert made["login"] is None and len(invitation["code"]) >= 22  # 128 bits, base64url
    assert invitation["url"].endswith("/invitation#" + invitation["code"])  # a fragment: no log keeps it
    expires = datetime.fromisoformat(invitation["expires_at"].replace("Z", ""))
    assert timedelta(days=6, hours=23) < expires - datetime.utcnow() <= timedelta(days=7)
    assert accept(api, "x" * 22).status_code == 404
    r = accept(api, invitation["code"])
    assert r.status_code == 422 and "login" in r.json["errors"]  # none yet: the person chooses it
    r = accept(api, invitation["code"], password="short", login="new.doc")
    assert r.status_code == 422 and "password" in r.json["errors"]
    r = accept(api, invitation["code"], login="admin")
    assert r.status_code == 409 and "login" in r.json["errors"]
    r = accept(api, invitation["code"], login="new.doc")
    assert r.status_code == 201 and r.json == {"user_id": made["id"]}
    assert accept(api, invitation["code"], login="new.doc").status_code == 410
    # An administrator cannot invite again a person who has set their own password.
    assert api.call("admin", "POST", f"/api/v1/users/{made['id']}/invitation").status_code == 409
    # The first sign-in opens only the enrolment of a second factor.
    api.tokens["new.doc"] = api.sign_in("new.doc", PASSWORD)
    r = api.call("new.doc", "GET", R)
    assert r.status_code == 403 and r.json["type"].endswith("second-factor-enrolment")
    late = invite(api, login="late")
    with api.app.app_context():
        db.session.execute(
            update(Invitation)
            .where(Invitation.user_id == late["id"])
            .values(expires_at=datetime.utcnow() - timedelta(seconds=1))
        )
        db.session.commit()
    assert accept(api, late["invitation"]["code"]).status_code == 410
    again = api.call("admin", "POST", f"/api/v1/users/{late['id']}/invitation")
    assert again.status_code == 201 and accept(api, again.json["code"]).status_code == 201
    log = api.call("admin", "GET", "/api/v1/audit/export.csv").get_data(as_text=True)
    assert invitation["code"] not in log and again.json["code"] not in log


def test_wrong_invitation_codes_are_throttled_per_address(api):
    api.app.config["RENKEI"].address_lockout_threshold = 3
    answers = [accept(api, f"wrong-{i}").status_code for i in range(5)]
    assert answers[:3] == [404, 404, 404] and answers[3:] == [429, 429]


def test_one_role_per_account_and_administrators_read_no_consent_text(api):
    r = api.call(
        "admin",
        "POST",
        "/api/v1/users",
        {
            "login": "both",
            "display_name": "x",
            "organization_id": api.org,
            "profession": "other",
            "is_admin": True,
            "is_auditor": True,
        },
    )
    assert r.status_code == 422 and "is_auditor" in r.json["errors"]
    pid = team(api)
    seen = api.call("admin", "GET", f"{R}/{pid}/consents").json["items"]
    assert seen and all("scope" not in c and "obtained_by" not in c and c["obtained_on"] for c in seen)
    assert "scope" in api.call("cm", "GET", f"{R}/{pid}/consents").json["items"][0]


def test_breakglass_needs_an_enrolled_second_factor_and_stops_wrong_codes(api):
    pid = team(api)
    api.user("er", "physician", second_factor=False)
    with api.app.app_context():  # an account from before the rule: no second factor, no enrolment flag
        db.session.execute(update(User).where(User.login == "er").values(totp_reenrol=False))
        db.session.commit()
    api.tokens["er"] = api.sign_in("er", PASSWORD)  # a password alone: led to enrolment first (issue 32)
    r = api.call("er", "POST", f"{R}/{pid}/breakglass", {"reason": "救急搬送時の情報確認"})
    assert r.status_code == 403 and r.json["type"].endswith("second-factor-enrolment")
    api.user("er2", "physician")
    answers = [
        api.call(
            "er2", "POST", f"{R}/{pid}/breakglass", {"reason": "救急搬送時の情報確認", "otp": "000000"}
        ).status_code
        for _ in range(12)
    ]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]


def test_a_new_invitation_needs_a_second_person_again(api):
    """Review: an administrator could re-invite someone else's new account, accept the
    code and confirm it (it had been made by another administrator), then use it alone."""
    made = invite(api)
    api.server_admin()
    assert api.call("admin2", "POST", f"/api/v1/users/{made['id']}/confirm").status_code == 200
    assert api.call("admin", "POST", f"/api/v1/users/{made['id']}/invitation").status_code == 201
    r = api.call("admin", "GET", "/api/v1/users").json["items"]
    assert [u["confirmed"] for u in r if u["id"] == made["id"]] == [False]
    assert api.call("admin", "POST", f"/api/v1/users/{made['id']}/confirm").status_code == 403


def test_creation_ties_two_administrators_both_ways_and_for_good(api):
    """Review: A made B2; once B2 was confirmed, A could confirm whatever B2 made. And a
    rename by someone else let A confirm A's own creation."""
    api.server_admin()
    api.user("b2", "other", is_admin=True)  # made by admin, confirmed on the server here
    r = api.call(
        "b2",
        "POST",
        "/api/v1/users",
        {"login": "x", "display_name": "新人 甲", "organization_id": api.org, "profession": "nurse"},
    )
    assert r.status_code == 201
    assert api.call("admin", "POST", f"/api/v1/users/{r.json['id']}/confirm").status_code == 403  # B2's maker
    assert api.call("admin2", "POST", f"/api/v1/users/{r.json['id']}/confirm").status_code == 200
    mine = invite(api, login="y")
    assert api.call("admin2", "PATCH", f"/api/v1/users/{mine['id']}", {"display_name": "新人 乙"}).status_code == 200
    assert api.call("admin", "POST", f"/api/v1/users/{mine['id']}/confirm").status_code == 403  # still admin's own
    # a phone the team calls is part of who someone is
    r = api.call("admin", "PATCH", f"/api/v1/users/{r.json['id']}", {"phone": "090-0000-0000"})
    assert r.status_code == 200 and r.json["confirmed"] is False


def test_a_reset_ends_an_open_invitation(api):
    """Review: an open invitation survived an access reset and could set the password again."""
    made = invite(api)
    api.server_admin()
    asked = api.call("admin", "POST", f"/api/v1/users/{made['id']}/reset").json
    assert api.call("admin2", "POST", f"/api/v1/users/{made['id']}/reset/{asked['id']}/approve").status_code == 201
    assert accept(api, made["invitation"]["code"]).status_code == 410


def test_an_unknown_login_holds_its_place_in_the_queue_as_long_as_a_known_one(api, monkeypatch):
    """Review: an unknown login left the hashing queue at once, so a full queue told
    which logins exist. Each now holds its place for as long as a hash takes."""
    import threading
    import time

    from renkei.common import offload

    monkeypatch.setattr(offload.passwords, "typical", 1.0)
    api.app.config["RENKEI"].signin_queue = 1
    first = threading.Thread(
        target=api.app.test_client().post,
        args=("/api/v1/auth/tokens",),
        kwargs={"json": {"login": "nobody", "password": "x" * 12}},
    )
    first.start()
    time.sleep(0.3)
    r = api.client.post("/api/v1/auth/tokens", json={"login": "nobody2", "password": "x" * 12})
    first.join()
    assert r.status_code == 503 and r.headers["Retry-After"]


def test_accounts_from_before_the_rule_are_confirmed_only_if_they_hold_a_second_factor(api):
    """Review: the migration confirmed everyone, also accounts still on a password an
    administrator chose."""
    from alembic import command

    from renkei.migrations import alembic_config

    api.user("with2fa", "nurse")
    api.user("without", "nurse", second_factor=False)
    engine = api.app.extensions["renkei.engine"]
    with api.app.app_context():
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0014")
            command.upgrade(alembic_config(conn), "head")
        confirmed = dict(db.session.execute(select(User.login, User.confirmed_at.is_not(None))).all())
        db.session.remove()
    assert confirmed["with2fa"] and confirmed["admin"] and not confirmed["without"]
