"""Escalation of urgent notes (issue 16, step 2): an urgent note no physician or nurse
of the team has acknowledged in the team's time is pushed and mailed to the backup
physician and the call list, again after each interval until someone acknowledges;
each round is shown on the note and audited; with two server processes exactly one
sends it, and an acknowledgement in time stops it."""

import time
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select, update

from models import AuditEntry, Delivery, Escalation, EscalationRound
from renkei.common import db
from renkei.patients import escalation
from tests.helpers import Api, R, build_app, team
from tests.push_receiver import PushReceiver
from tests.servers import free_port, start_server
from tests.test_notifications import NAME, TEXT, assert_identifiers_only, note, send_all, subscribe


@pytest.fixture
def receiver():
    r = PushReceiver()
    yield r
    r.close()


@pytest.fixture
def dev_api(database_url):
    app = build_app(database_url, development=True)
    yield Api(app)
    app.extensions["renkei.engine"].dispose()


def escalate_at(api, minutes_later: float) -> int:
    """Run the senders' escalation turn as if `minutes_later` had passed."""
    with api.app.app_context():
        done = escalation.run_due(datetime.utcnow() + timedelta(minutes=minutes_later))
        db.session.remove()
    return done


def kinds(receiver):
    out = sorted((g.device, g.payload["kind"]) for g in receiver.received)
    receiver.received.clear()
    return out


def care_team(api):
    """cm's patient: doc primary physician, pharm, a backup physician and a nurse."""
    pid = team(api)
    api.user("backup", "physician")
    api.user("ns", "nurse")
    api.join(pid, "backup", "backup_physician", by="cm")
    api.join(pid, "ns", "nurse", by="cm")
    return pid


def test_an_unacknowledged_urgent_note_goes_to_the_backup_physician_and_the_call_list_until_a_nurse_reads_it(
    dev_api, receiver
):
    api = dev_api
    pid = care_team(api)
    r = api.call("cm", "PUT", f"/api/v1/patients/{pid}/escalation", {"call_list": [api.users["pharm"]["id"]]})
    assert r.status_code == 200 and r.json == {
        "after_minutes": 15,
        "repeat_minutes": 15,
        "call_list": [api.users["pharm"]["id"]],
    }
    for who in ("backup", "pharm", "ns"):
        subscribe(api, who, receiver.device(who))
    note_id = note(api, "doc", pid)
    send_all(api)
    assert kinds(receiver) == [("backup", "note.urgent"), ("ns", "note.urgent"), ("pharm", "note.urgent")]

    assert escalate_at(api, 14) == 0  # not yet
    assert escalate_at(api, 16) == 1
    assert escalate_at(api, 16) == 0  # once per round
    send_all(api)
    got = list(receiver.received)
    assert kinds(receiver) == [("backup", "note.escalated"), ("pharm", "note.escalated")]
    assert_identifiers_only(got[0].payload, pid)
    shown = api.call("cm", "GET", f"/api/v1/patients/{pid}/notes").json["items"][0]
    assert [(e["minutes"], e["told"]) for e in shown["escalations"]] == [(16, ["backup_physician", "call_list"])]
    page = api.web("cm").get(f"/patients/{pid}").get_data(as_text=True)
    assert "16分未確認のため副主治医と連絡先リストへ通知しました" in page

    # The pharmacist's 既読 is not a physician's or nurse's: it goes on.
    assert api.call("pharm", "POST", f"/api/v1/patients/{pid}/notes/{note_id}/ack").status_code == 204
    assert escalate_at(api, 32) == 1
    send_all(api)
    assert kinds(receiver) == [("backup", "note.escalated"), ("pharm", "note.escalated")]
    # The nurse reads it: no more.
    assert api.call("ns", "POST", f"/api/v1/patients/{pid}/notes/{note_id}/ack").status_code == 204
    assert escalate_at(api, 48) == 0 and escalate_at(api, 120) == 0
    send_all(api)
    assert receiver.received == []
    with api.app.app_context():
        entries = db.session.execute(
            select(AuditEntry.patient_id, AuditEntry.detail).where(AuditEntry.action == "note.escalate")
        ).all()
        assert len(entries) == 2 and all(p == pid and note_id in d for p, d in entries)
        assert NAME not in str(entries) and TEXT not in str(entries)


def test_a_team_without_a_backup_physician_or_call_list_sees_that_nobody_could_be_told(dev_api):
    api = dev_api
    pid = team(api)
    note(api, "cm", pid)
    assert escalate_at(api, 20) == 1
    shown = api.call("doc", "GET", f"/api/v1/patients/{pid}/notes").json["items"][0]
    assert shown["escalations"][0]["told"] == []
    assert "通知先がありません" in api.web("doc").get(f"/patients/{pid}").get_data(as_text=True)


def test_the_teams_own_time_and_a_deleted_patient(dev_api):
    api = dev_api
    pid = care_team(api)
    assert (
        api.call(
            "doc", "PUT", f"/api/v1/patients/{pid}/escalation", {"after_minutes": 5, "repeat_minutes": 30}
        ).status_code
        == 200
    )
    note(api, "cm", pid)
    assert escalate_at(api, 4) == 0 and escalate_at(api, 6) == 1 and escalate_at(api, 20) == 0
    assert api.call("admin", "DELETE", f"/api/v1/patients/{pid}").status_code == 204
    assert escalate_at(api, 60) == 0
    with api.app.app_context():
        assert db.session.execute(select(func.count()).select_from(Delivery)).scalar() == 0


@pytest.mark.parametrize(
    "who, body, status, field",
    [
        ("pharm", {"after_minutes": 30}, 403, None),  # does not manage the team
        ("out", {"after_minutes": 30}, 404, None),  # not on it
        ("cm", {"after_minutes": 0}, 422, "after_minutes"),
        ("cm", {"repeat_minutes": 2000}, 422, "repeat_minutes"),
        ("cm", {"call_list": ["someone-else"]}, 422, "call_list"),
        ("cm", {"who": "everyone"}, 422, "who"),
    ],
)
def test_escalation_settings_are_the_teams_managers_to_change(sqlite_api, who, body, status, field):
    api = sqlite_api
    pid = team(api)
    api.user("out", "nurse")
    r = api.call(who, "PUT", f"/api/v1/patients/{pid}/escalation", body)
    assert r.status_code == status, r.json
    if field:
        assert field in r.json["errors"]
    assert api.call("pharm", "GET", f"/api/v1/patients/{pid}/escalation").json["after_minutes"] == 15


@pytest.mark.slow
@pytest.mark.postgres
def test_with_two_server_processes_exactly_one_escalates_and_an_acknowledgement_in_time_stops_it(pg_world, receiver):
    world = pg_world
    world.api.join(world.pid, "er", "backup_physician", by="cm")
    env = world.env | {"RENKEI_ENV": "development"}
    with (
        start_server(env | {"RENKEI_PORT": str(free_port())}) as a,
        start_server(env | {"RENKEI_PORT": str(free_port())}) as b,
    ):
        h = {who: {"Authorization": "Bearer " + world.tokens[who]} for who in world.tokens}
        requests.post(
            a + "/api/v1/push/subscriptions", json=receiver.device("er").subscription(), headers=h["er"]
        ).raise_for_status()

        def urgent(base):
            r = requests.post(
                f"{base}/api/v1/patients/{world.pid}/notes",
                headers=h["doc"],
                json={"body": TEXT, "category": "incident", "urgent": True},
            )
            r.raise_for_status()
            return r.json()["id"]

        def time_passes(note_id):  # the team's 15 minutes, without waiting for them
            with world.app.app_context():
                db.session.execute(
                    update(Escalation)
                    .where(Escalation.note_id == note_id)
                    .values(due_at=datetime.utcnow() - timedelta(seconds=1))
                )
                db.session.commit()
                db.session.remove()

        first = urgent(a)
        assert [g.payload["kind"] for g in receiver.wait_for(1)] == ["note.urgent"]
        time_passes(first)
        got = receiver.wait_for(2, timeout=15)
        time.sleep(5)  # both senders have had their turns twice over
        assert [g.payload["kind"] for g in receiver.received] == ["note.urgent", "note.escalated"], got
        shown = requests.get(f"{b}/api/v1/patients/{world.pid}/notes", headers=h["cm"]).json()["items"][0]
        assert len(shown["escalations"]) == 1 and shown["escalations"][0]["told"] == ["backup_physician"]

        second = urgent(b)
        receiver.wait_for(3)
        assert requests.post(f"{a}/api/v1/patients/{world.pid}/notes/{second}/ack", headers=h["ns"]).status_code == 204
        time_passes(second)
        time.sleep(6)
        assert [g.payload["kind"] for g in receiver.received] == ["note.urgent", "note.escalated", "note.urgent"]
    with world.app.app_context():
        rounds = db.session.execute(select(EscalationRound.note_id)).scalars().all()
        assert rounds == [first]
        db.session.remove()


@pytest.mark.browser
@pytest.mark.slow
def test_the_physician_sees_the_escalation_on_the_note_and_the_team_sets_its_time(browser, tmp_path):
    import os

    from sqlalchemy import create_engine

    from tests.helpers import ROOT, random_master_key, signed_in_page

    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {
        "RENKEI_INSTANCE_DIR": str(tmp_path),
        "RENKEI_PORT": str(free_port()),
        "RENKEI_MASTER_KEY": random_master_key(),
    }
    password = "renkei-demo-2026"
    with start_server(env, timeout=60) as base:
        page = signed_in_page(browser, base, "dr.sato", password)
        page.click("text=山田 太郎")
        page.wait_for_selector("#notes")
        pid = page.evaluate("document.body.dataset.patient")
        token = requests.post(base + "/api/v1/auth/tokens", json={"login": "cm.tanaka", "password": password}).json()[
            "token"
        ]
        r = requests.post(
            f"{base}/api/v1/patients/{pid}/notes",
            headers={"Authorization": "Bearer " + token},
            json={"body": "呼吸苦の訴えあり、往診の要否を判断してください", "category": "observation", "urgent": True},
        )
        note_id = r.json()["id"]
        page.locator(f'li[data-note="{note_id}"]').wait_for(timeout=10000)
        engine = create_engine(f"sqlite:///{tmp_path / 'renkei.db'}")
        with engine.begin() as c:  # the team's 15 minutes pass
            c.execute(
                update(Escalation)
                .where(Escalation.note_id == note_id)
                .values(due_at=datetime.utcnow() - timedelta(seconds=1))
            )
        engine.dispose()
        shown = page.locator(f'li[data-note="{note_id}"] .escalated')
        shown.wait_for(timeout=10000)  # live: the sender's next turn, then the team's event
        assert "分未確認です" in shown.inner_text()
        shots = ROOT / "test-artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        page.locator(f'li[data-note="{note_id}"]').screenshot(path=str(shots / "escalated-note.png"))

        page.goto(f"/patients/{pid}/team")
        page.fill('#escalation-form [name="after_minutes"]', "10")
        page.check('#escalation-form [name="call_list"] >> nth=1')
        page.click("#escalation-form button[type=submit]")
        page.locator("#escalation-form .status:has-text('保存しました')").wait_for(timeout=5000)
        got = requests.get(
            f"{base}/api/v1/patients/{pid}/escalation", headers={"Authorization": "Bearer " + token}
        ).json()
        assert got["after_minutes"] == 10 and len(got["call_list"]) == 1
        page.context.close()


# --- what an independent review found (each failed on the first version) ----------------


def test_the_authors_own_read_does_not_end_it(dev_api, receiver):
    api = dev_api
    pid = care_team(api)
    subscribe(api, "backup", receiver.device("backup"))
    note_id = note(api, "ns", pid)  # the nurse reports a fall, and reads it back
    assert api.call("ns", "POST", f"/api/v1/patients/{pid}/notes/{note_id}/ack").status_code == 204
    assert escalate_at(api, 16) == 1


def test_without_consent_nobody_can_open_the_note_so_it_stops(dev_api, receiver):
    api = dev_api
    pid = care_team(api)
    subscribe(api, "backup", receiver.device("backup"))
    note(api, "doc", pid)
    consent = api.call("cm", "GET", f"/api/v1/patients/{pid}/consents").json["items"][0]["id"]
    assert api.call("cm", "DELETE", f"/api/v1/patients/{pid}/consents/{consent}").status_code == 204
    assert escalate_at(api, 16) == 0 and escalate_at(api, 40) == 0
    with api.app.app_context():
        assert (
            db.session.execute(select(AuditEntry.detail).where(AuditEntry.action == "note.escalate"))
            .scalar()
            .endswith("ended=no consent")
        )


def test_one_round_that_fails_does_not_hold_up_the_others(dev_api, monkeypatch):
    api = dev_api
    first, second = team(api), api.patient("cm")
    note(api, "cm", first)
    note(api, "cm", second)
    real = escalation.tell.tell

    def broken(kind, patient_id, *args, **kwargs):
        if patient_id == first:
            raise RuntimeError("a defect in one round")
        return real(kind, patient_id, *args, **kwargs)

    monkeypatch.setattr(escalation.tell, "tell", broken)
    assert escalate_at(api, 16) == 1  # the second patient's round went out
    monkeypatch.setattr(escalation.tell, "tell", real)
    assert escalate_at(api, 17) == 1  # the first stayed due


def test_the_note_names_only_whom_a_message_could_reach(dev_api, receiver):
    api = dev_api
    pid = care_team(api)  # the backup physician has no device and no address
    note(api, "doc", pid)
    assert escalate_at(api, 16) == 1
    assert api.call("cm", "GET", f"/api/v1/patients/{pid}/notes").json["items"][0]["escalations"][0]["told"] == []


def test_a_read_drops_the_still_unread_messages_not_yet_sent(dev_api, receiver):
    api = dev_api
    pid = care_team(api)
    device = receiver.device("backup")
    subscribe(api, "backup", device)
    note_id = note(api, "doc", pid)
    send_all(api)
    device.status = 503  # the push service is down when the round goes out
    assert escalate_at(api, 16) == 1
    send_all(api)
    assert api.call("ns", "POST", f"/api/v1/patients/{pid}/notes/{note_id}/ack").status_code == 204
    with api.app.app_context():
        assert (
            db.session.execute(
                select(func.count()).select_from(Delivery).where(Delivery.kind == "note.escalated")
            ).scalar()
            == 0
        )


def test_a_member_who_leaves_is_off_the_call_list(dev_api):
    api = dev_api
    pid = care_team(api)
    pharm = api.users["pharm"]["id"]
    assert api.call("cm", "PUT", f"/api/v1/patients/{pid}/escalation", {"call_list": [pharm]}).status_code == 200
    assert api.call("cm", "DELETE", f"/api/v1/patients/{pid}/team/{pharm}").status_code == 204
    assert api.call("cm", "GET", f"/api/v1/patients/{pid}/escalation").json["call_list"] == []
    assert api.call("cm", "PUT", f"/api/v1/patients/{pid}/escalation", {"after_minutes": 10}).status_code == 200
    api.join(pid, "pharm", "pharmacist", by="cm")
    assert api.call("cm", "GET", f"/api/v1/patients/{pid}/escalation").json["call_list"] == []


def test_the_access_log_keeps_a_whole_call_list(api):
    """Issue 29: the log's detail was cut at 200 characters — a call list of 7 people read as 4."""
    pid = team(api)
    names = [f"ns{i}" for i in range(7)]
    for name in names:
        api.user(name, "nurse", second_factor=False)
        api.join(pid, name, "nurse", by="cm")
    ids = [api.users[n]["id"] for n in names]
    assert api.call("cm", "PUT", f"{R}/{pid}/escalation", {"call_list": ids}).status_code == 200
    (entry,) = [e for e in api.call("admin", "GET", "/api/v1/audit?action=escalation.update").json["items"]]
    assert all(uid in entry["detail"] for uid in ids)
