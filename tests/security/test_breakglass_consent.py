"""Finding 14 (break-glass and consent): emergency reads stand out in the log, a grant
cannot be reopened without limit, its reason is seen by the team and the auditors, and
a withdrawn consent binds the registrant too."""

from tests.helpers import R, days_ago, team

REASON = "救急搬送時の情報確認"


def test_breakglass_reads_are_marked_in_the_log(api):
    pid = team(api)
    api.user("er", "physician")
    grant = api.call("er", "POST", f"{R}/{pid}/breakglass", {"reason": REASON, "otp": api.otp("er")}).json["id"]
    assert api.call("er", "GET", f"{R}/{pid}/record").status_code == 200
    assert api.call("doc", "GET", f"{R}/{pid}/record").status_code == 200
    reads = api.call("admin", "GET", f"/api/v1/audit?action=record.read&patient_id={pid}").json["items"]
    by = {e["actor_id"]: e["detail"] or "" for e in reads}
    assert f"breakglass={grant}" in by[api.users["er"]["id"]]
    assert "breakglass" not in by[api.users["doc"]["id"]]


def test_an_open_grant_cannot_be_opened_again(api):
    pid = team(api)
    api.user("er", "physician")
    assert api.call("er", "POST", f"{R}/{pid}/breakglass", {"reason": REASON, "otp": api.otp("er")}).status_code == 201
    again = api.call("er", "POST", f"{R}/{pid}/breakglass", {"reason": REASON + "（再）", "otp": api.otp("er")})
    assert again.status_code == 409
    outcomes = [e["outcome"] for e in api.call("admin", "GET", "/api/v1/audit?action=breakglass.open").json["items"]]
    assert outcomes == ["conflict", "ok"]


def test_the_reason_is_seen_by_the_team_and_the_auditors(api):
    pid = team(api)
    api.user("er", "physician")
    api.user("aud", "other", is_auditor=True)
    api.call("er", "POST", f"{R}/{pid}/breakglass", {"reason": REASON, "otp": api.otp("er")})
    grants = api.call("doc", "GET", f"{R}/{pid}/breakglass").json["items"]
    assert [(g["user_id"], g["reason"]) for g in grants] == [(api.users["er"]["id"], REASON)]
    grants = api.call("aud", "GET", "/api/v1/audit/breakglass").json["items"]
    assert [(g["patient_id"], g["reason"]) for g in grants] == [(pid, REASON)]
    assert api.call("admin", "GET", "/api/v1/audit/breakglass").status_code == 403  # no clinical text
    api.user("outsider", "nurse")
    assert api.call("outsider", "GET", f"{R}/{pid}/breakglass").status_code == 404


def test_withdrawn_consent_binds_the_registrant_too(api):
    """Before any consent the registrant sets the record up; once the patient withdraws
    consent, nobody reads or writes clinical content until a new consent is recorded."""
    pid = team(api)
    consent = api.call("cm", "GET", f"{R}/{pid}/consents").json["items"][0]["id"]
    assert api.call("cm", "DELETE", f"{R}/{pid}/consents/{consent}").status_code == 204
    for who in ("cm", "doc"):
        r = api.call(who, "GET", f"{R}/{pid}/record")
        assert r.status_code == 403 and r.json["type"] == "/problems/consent-missing"
    assert api.call("cm", "GET", f"{R}/{pid}/team").status_code == 200
    assert (
        api.call(
            "cm",
            "POST",
            f"{R}/{pid}/consents",
            {"obtained_on": str(days_ago(7)), "obtained_by": "cm", "scope": "情報共有"},
        ).status_code
        == 201
    )
    assert api.call("cm", "GET", f"{R}/{pid}/record").status_code == 200
