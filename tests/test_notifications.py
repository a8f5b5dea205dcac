"""Reaching the team when the page is closed (issue 16): Web Push to each subscribed
device, mail for urgent notes and a daily digest — carrying identifiers and fixed text,
never a name or a word of the record — sent after commit by a sender that survives a
restart; and the safeguards around endpoints a person hands the server."""

import email
import email.policy
import json
import re
import signal
import socket
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from models import Delivery, PushSubscription
from renkei.common import db
from renkei.outreach import deliveries, tell
from tests.helpers import Api, build_app, team
from tests.push_receiver import PushReceiver
from tests.servers import World, free_port, start_server

NAME, TEXT = "連携 花子", "転倒して右大腿部の痛みを訴えています"


@pytest.fixture
def receiver():
    r = PushReceiver()
    yield r
    r.close()


class Mailbox:
    """An SMTP server (aiosmtpd) that keeps what it receives."""

    def __init__(self):
        self.messages = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.controller.port}?starttls=false"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content))
        return "250 OK"

    def text(self, i) -> tuple[str, str]:
        """(subject, body) of the i-th mail, decoded as a mail program would."""
        msg = email.message_from_bytes(self.messages[i][1], policy=email.policy.default)
        return str(msg["Subject"]), msg.get_content()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.controller.stop()


@pytest.fixture
def dev_api(database_url, tmp_path):
    """The API of an app that accepts loopback push endpoints (RENKEI_ENV=development)."""
    app = build_app(database_url, development=True, public_url="https://renkei.example.jp")
    yield Api(app)
    app.extensions["renkei.engine"].dispose()


def send_all(api) -> int:
    with api.app.app_context():
        sent = deliveries.run_once()
        db.session.remove()
    return sent


def subscribe(api, who, device, label=None):
    r = api.call(who, "POST", "/api/v1/push/subscriptions", device.subscription(label))
    assert r.status_code in (200, 201), r.json
    return r


def note(api, who, pid, body=TEXT, urgent=True):
    r = api.call(who, "POST", f"/api/v1/patients/{pid}/notes", {"body": body, "category": "incident", "urgent": urgent})
    assert r.status_code == 201, r.json
    return r.json["id"]


def assert_identifiers_only(payload: dict, pid: str):
    assert set(payload) <= {"kind", "patient_id", "note_id", "url"}, payload
    assert payload["patient_id"] == pid and payload["url"] == f"/patients/{pid}"
    text = json.dumps(payload, ensure_ascii=False)
    for secret in (NAME, "連携", TEXT[:4], "CM", "DOC"):
        assert secret not in text


# --- Web Push ----------------------------------------------------------------------


@pytest.mark.slow
def test_an_urgent_note_reaches_each_device_of_the_team_once_with_identifiers_only(sqlite_url, tmp_path, receiver):
    world = World(sqlite_url, tmp_path)
    devices = {"doc-tablet": "doc", "doc-phone": "doc", "ns-tablet": "ns", "cm-tablet": "cm", "out-phone": "out"}
    with world.server(RENKEI_ENV="development") as base:
        key = requests.get(base + "/api/v1/push/vapid-public-key").json()["public_key"]
        for name, who in devices.items():
            r = requests.post(
                base + "/api/v1/push/subscriptions",
                json=receiver.device(name).subscription(name),
                headers={"Authorization": "Bearer " + world.tokens[who]},
            )
            assert r.status_code == 201, r.text
        auth = {"Authorization": "Bearer " + world.tokens["cm"]}
        url = f"{base}/api/v1/patients/{world.pid}/notes"
        assert (
            requests.post(url, json={"body": "定期訪問、変わりなし", "category": "contact"}, headers=auth).status_code
            == 201
        )
        started = time.monotonic()
        r = requests.post(url, json={"body": TEXT, "category": "incident", "urgent": True}, headers=auth)
        assert r.status_code == 201
        got = receiver.wait_for(3, timeout=10)
        took = time.monotonic() - started
        time.sleep(2.5)  # the sender's next turns: nothing more may come
    assert not receiver.refused, receiver.refused
    assert sorted(g.device for g in receiver.received) == ["doc-phone", "doc-tablet", "ns-tablet"], (took, got)
    for g in receiver.received:
        assert g.payload["kind"] == "note.urgent" and g.payload["note_id"] == r.json()["id"]
        assert_identifiers_only(g.payload, world.pid)
        assert g.vapid_key == key and g.headers.get("urgency") == "high"


def test_an_alert_is_pushed_like_an_urgent_note_and_carries_no_value(dev_api, receiver):
    api = dev_api
    pid = team(api)
    api.user("ns", "nurse")
    api.join(pid, "ns", "nurse", by="cm")
    subscribe(api, "doc", receiver.device("doc-phone"))
    quiet = api.call(
        "doc",
        "PUT",
        "/api/v1/users/me/notifications",  # the physician sleeps, all day
        {"quiet_hours": {"start": "00:00", "end": "23:59"}},
    )
    assert quiet.status_code == 200, quiet.json
    path = f"/api/v1/patients/{pid}/observations"
    assert (
        api.call(
            "doc",
            "PUT",
            path + "/thresholds",
            {"thresholds": {"body_temperature": {"max": 37.9}}},
            headers={"If-Match": '"0"'},
        ).status_code
        == 200
    )
    first = api.call("ns", "POST", path, {"kind": "body_temperature", "value": 39.2, "note": TEXT}).json
    api.call("ns", "POST", path, {"kind": "body_temperature", "value": 39.4})  # the same crossing: no second push
    assert send_all(api) == 1
    (got,) = receiver.received
    assert got.payload == {
        "kind": "observation.alert",
        "patient_id": pid,
        "observation_id": first["id"],
        "url": f"/patients/{pid}",
    }
    assert got.headers.get("urgency") == "high"


def test_a_gone_subscription_is_removed_and_a_busy_push_service_is_tried_again(dev_api, receiver):
    api = dev_api
    pid = team(api)
    gone, busy = receiver.device("gone"), receiver.device("busy")
    gone.status, busy.status = 410, 503
    subscribe(api, "doc", gone), subscribe(api, "doc", busy)
    note(api, "cm", pid)
    assert send_all(api) == 2
    listed = api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"]
    assert [s["endpoint"] for s in listed] == [busy.endpoint]  # 410: removed
    with api.app.app_context():
        row = db.session.execute(select(Delivery)).scalar_one()
        assert row.attempts == 1 and row.next_at > datetime.utcnow()  # 503: later, not now
        assert send_all(api) == 0
        db.session.execute(update(Delivery).values(next_at=datetime.utcnow()))
        db.session.commit()
    busy.status = 201
    assert send_all(api) == 1
    assert [g.device for g in receiver.received] == ["busy"]
    assert api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"][0]["last_used_at"]
    with api.app.app_context():
        assert db.session.execute(select(Delivery)).first() is None


@pytest.mark.slow
def test_a_restart_in_the_middle_loses_nothing(sqlite_url, tmp_path, receiver):
    world = World(sqlite_url, tmp_path)
    device = receiver.device("doc-tablet")
    device.status = 503  # the push service is down when the note is posted
    procs = []
    with start_server(world.env | {"RENKEI_PORT": str(free_port()), "RENKEI_ENV": "development"}, handle=procs) as base:
        requests.post(
            base + "/api/v1/push/subscriptions",
            json=device.subscription(),
            headers={"Authorization": "Bearer " + world.tokens["doc"]},
        ).raise_for_status()
        requests.post(
            f"{base}/api/v1/patients/{world.pid}/notes",
            json={"body": TEXT, "category": "incident", "urgent": True},
            headers={"Authorization": "Bearer " + world.tokens["cm"]},
        ).raise_for_status()
        deadline = time.monotonic() + 10
        while not receiver.answers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.answers == [("doc-tablet", 503)]
        procs[0].send_signal(signal.SIGKILL)  # the server dies with the push unsent
        procs[0].wait()
    device.status = 201
    with world.server(RENKEI_ENV="development"):
        got = receiver.wait_for(1, timeout=20)
        time.sleep(1)
    assert [g.device for g in got] == ["doc-tablet"] and len(receiver.received) == 1
    assert got[0].payload["kind"] == "note.urgent"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080/push/x",
        "https://127.0.0.1/push/x",
        "https://localhost/push/x",
        "https://10.1.2.3/push/x",
        "https://192.168.0.10/push/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/push/x",
        "https://[::ffff:10.0.0.1]/push/x",
        "https://[fe80::1]/push/x",
        "https://100.64.0.1/push/x",
        "https://0.0.0.0/push/x",
        "https://no-such-host.invalid/push/x",
        "ftp://push.example/x",
        "https://user:pw@8.8.8.8/x",
        "not a url",
    ],
)
def test_a_push_endpoint_must_be_https_on_the_internet(sqlite_api, endpoint, receiver):
    api = sqlite_api
    api.user("doc", "physician")
    body = receiver.device("d").subscription() | {"endpoint": endpoint}
    r = api.call("doc", "POST", "/api/v1/push/subscriptions", body)
    assert r.status_code == 422 and "endpoint" in r.json["errors"], r.json
    assert api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"] == []


def test_what_a_subscription_may_be(sqlite_api, receiver):
    api = sqlite_api
    api.user("doc", "physician")
    sub = receiver.device("d").subscription() | {"endpoint": "https://8.8.8.8/push/abc"}
    assert api.call("doc", "POST", "/api/v1/push/subscriptions", sub).status_code == 201  # a public address
    bad = sub | {"keys": {"p256dh": "AAAA", "auth": sub["keys"]["auth"]}}
    r = api.call("doc", "POST", "/api/v1/push/subscriptions", bad)
    assert r.status_code == 422 and "p256dh" in r.json["errors"]["keys"], r.json
    r = api.call("doc", "POST", "/api/v1/push/subscriptions", {k: v for k, v in sub.items() if k != "keys"})
    assert r.status_code == 422 and "keys" in r.json["errors"]


def test_a_development_server_accepts_a_loopback_http_endpoint_only(dev_api, receiver):
    api = dev_api
    api.user("doc", "physician")
    assert subscribe(api, "doc", receiver.device("d")).status_code == 201
    r = api.call(
        "doc",
        "POST",
        "/api/v1/push/subscriptions",
        receiver.device("e").subscription() | {"endpoint": "http://10.0.0.1/x"},
    )
    assert r.status_code == 422 and "endpoint" in r.json["errors"]


def test_subscriptions_are_a_persons_own_and_sealed_at_rest(sqlite_url, receiver, tmp_path):
    app = build_app(sqlite_url, development=True)
    api = Api(app)
    pid = team(api)
    device = receiver.device("shared-tablet")
    first = subscribe(api, "doc", device, "診療所タブレット")
    assert first.status_code == 201
    again = subscribe(api, "doc", device)
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    mine = api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"]
    assert [(s["id"], s["endpoint"], s["label"], s["last_used_at"]) for s in mine] == [
        (first.json["id"], device.endpoint, "診療所タブレット", None)
    ]
    assert api.call("pharm", "DELETE", f"/api/v1/push/subscriptions/{first.json['id']}").status_code == 404
    raw = Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()
    assert device.endpoint.encode() not in raw and "診療所タブレット".encode() not in raw
    # The tablet passes to the pharmacist: the physician's pushes no longer go to it.
    moved = subscribe(api, "pharm", device)
    assert moved.status_code == 201 and moved.json["id"] != first.json["id"]
    assert api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"] == []
    note(api, "cm", pid)
    send_all(api)
    assert [g.device for g in receiver.received] == ["shared-tablet"]  # once, for the pharmacist
    assert api.call("pharm", "DELETE", f"/api/v1/push/subscriptions/{moved.json['id']}").status_code == 204
    assert api.call("pharm", "GET", "/api/v1/push/subscriptions").json["items"] == []
    app.extensions["renkei.engine"].dispose()


def test_disabling_a_person_or_resetting_their_access_removes_their_devices(dev_api, receiver):
    api = dev_api
    pid = team(api)
    subscribe(api, "doc", receiver.device("doc")), subscribe(api, "pharm", receiver.device("pharm"))
    r = api.call("admin", "PATCH", f"/api/v1/users/{api.users['doc']['id']}", {"disabled": True})
    assert r.status_code == 200, r.json
    result = api.app.test_cli_runner().invoke(args=["reset-access", "--login", "pharm"])  # the server's own reset
    assert result.exit_code == 0, result.output
    with api.app.app_context():
        assert db.session.execute(select(PushSubscription.user_id)).scalars().all() == []
    note(api, "cm", pid)
    send_all(api)
    assert receiver.received == []


def test_what_pushes_follows_each_persons_settings(dev_api, receiver):
    api = dev_api
    pid = team(api)
    api.user("ns", "nurse")
    api.join(pid, "ns", "nurse", by="cm")
    for who in ("doc", "pharm", "ns", "cm"):
        subscribe(api, who, receiver.device(who))
    got = api.call("ns", "GET", "/api/v1/users/me/notifications").json
    assert got["push"] == {"urgent": True, "breakglass": True, "mentions": True, "changes": False}
    assert got["quiet_hours"] is None and got["email"]["urgent"] is True and got["email"]["digest"] is False

    def pushed():
        send_all(api)
        out = sorted((g.device, g.payload["kind"]) for g in receiver.received)
        receiver.received.clear()
        return out

    note(api, "cm", pid, "@DOC 明日の訪問で血圧を確認してください", urgent=False)  # a mention, not urgent
    assert pushed() == [("doc", "note.mention")]
    assert api.call("doc", "PUT", "/api/v1/users/me/notifications", {"push": {"mentions": False}}).status_code == 200
    note(api, "cm", pid, "@doc もう一度", urgent=False)
    assert pushed() == []
    # Any change, for the nurse who asks for it: one push per patient until it is sent.
    r = api.call("ns", "PUT", "/api/v1/users/me/notifications", {"push": {"changes": True}})
    assert r.status_code == 200 and r.json["push"]["changes"] is True and r.json["push"]["urgent"] is True
    note(api, "cm", pid, "定期訪問", urgent=False)
    note(api, "doc", pid, "処方変更なし", urgent=False)
    assert pushed() == [("ns", "patient.updated")]
    # Quiet hours around now: only urgent notes push.
    now = datetime.utcnow() + timedelta(hours=9)
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"), "end": (now + timedelta(hours=1)).strftime("%H:%M")}
    assert api.call("ns", "PUT", "/api/v1/users/me/notifications", {"quiet_hours": quiet}).status_code == 200
    note(api, "cm", pid, "@NS 夜分にすみません", urgent=False)
    assert pushed() == []
    note(api, "cm", pid)
    assert pushed() == [("doc", "note.urgent"), ("ns", "note.urgent"), ("pharm", "note.urgent")]  # not the author


def test_emergency_access_pushes_to_the_team(dev_api, receiver):
    api = dev_api
    pid = team(api)
    api.user("er", "physician")
    for who in ("doc", "er"):
        subscribe(api, who, receiver.device(who))
    r = api.call(
        "er", "POST", f"/api/v1/patients/{pid}/breakglass", {"reason": "救急搬送先での確認", "otp": api.otp("er")}
    )
    assert r.status_code == 201, r.json
    send_all(api)
    assert [(g.device, g.payload["kind"]) for g in receiver.received] == [("doc", "breakglass.opened")]
    assert_identifiers_only(receiver.received[0].payload, pid)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
        ({"push": {"urgent": "sometimes"}}, "push"),
        ({"push": {"everything": True}}, "push"),
        ({"sms": True}, "sms"),
    ],
)
def test_settings_that_make_no_sense_are_refused_naming_the_field(sqlite_api, body, field):
    sqlite_api.user("ns", "nurse")
    before = sqlite_api.call("ns", "GET", "/api/v1/users/me/notifications").json
    r = sqlite_api.call("ns", "PUT", "/api/v1/users/me/notifications", body)
    assert r.status_code == 422 and field in r.json["errors"], r.json
    assert sqlite_api.call("ns", "GET", "/api/v1/users/me/notifications").json == before


# --- e-mail ------------------------------------------------------------------------


def test_urgent_mail_and_the_daily_digest_hold_no_name_or_clinical_text(database_url, mailbox):
    app = build_app(
        database_url, smtp_url=mailbox.url, mail_from="renkei@clinic.example.jp", public_url="https://renkei.example.jp"
    )
    api = Api(app)
    pid = team(api)
    r = api.call("doc", "PUT", "/api/v1/users/me/email", {"address": "doc@clinic.example.jp"})
    assert (
        r.status_code == 202
        and r.json["email"]["pending"] == "doc@clinic.example.jp"
        and r.json["email"]["address"] is None
    )
    send_all(api)
    subject, text = mailbox.text(0)
    code = re.search(r"https://renkei\.example\.jp/account/email#code=(\S+)", text).group(1)
    assert mailbox.messages[0][0] == ["doc@clinic.example.jp"]
    assert api.call("doc", "POST", "/api/v1/users/me/email/confirm", {"code": "nope"}).status_code == 422
    r = api.call("doc", "POST", "/api/v1/users/me/email/confirm", {"code": code})
    assert r.status_code == 200 and r.json["email"]["address"] == "doc@clinic.example.jp"

    note(api, "cm", pid)
    send_all(api)
    assert len(mailbox.messages) == 2 and mailbox.messages[1][0] == ["doc@clinic.example.jp"]
    subject, text = mailbox.text(1)
    assert "至急の連絡があります" in subject and f"https://renkei.example.jp/patients/{pid}" in text
    for secret in (NAME, "連携", TEXT[:4], "CM", "転倒"):
        assert secret not in subject + text

    assert api.call("doc", "PUT", "/api/v1/users/me/notifications", {"email": {"digest": True}}).status_code == 200
    note(api, "cm", pid, "定期訪問、変わりなし", urgent=False)
    morning = datetime.utcnow().replace(hour=23, minute=30)  # 08:30 in Japan
    with app.app_context():
        assert tell.queue_digests(morning) == 1
        assert tell.queue_digests(morning + timedelta(minutes=5)) == 0  # once a day
        db.session.remove()
    send_all(api)
    subject, text = mailbox.text(2)
    # Others' changes since yesterday: the urgent note, the visit note, the physician joining the team.
    assert "担当利用者に3件の更新があります" in text and "https://renkei.example.jp/summary" in text
    for secret in (NAME, "連携", "定期訪問", TEXT[:4]):
        assert secret not in subject + text
    app.extensions["renkei.engine"].dispose()


# --- the installable app, in Chromium ---------------------------------------------------

# The browser vendor's push service cannot be reached here: the page is handed a
# subscription that points at the test's own push service, as the browser would hand one.
FAKE_PUSH_MANAGER = """
(() => {
  const sub = %s;
  // A subscription outlives the page, as the browser's does (the flag stands in for it).
  const made = () => ({ endpoint: sub.endpoint, toJSON: () => sub,
                        unsubscribe: async () => { localStorage.removeItem("test-push"); return true; } });
  PushManager.prototype.subscribe = async function (options) {
    if (!options || !options.userVisibleOnly || !(options.applicationServerKey instanceof Uint8Array)
        || options.applicationServerKey.length !== 65) throw new Error("bad subscribe options");
    localStorage.setItem("test-push", "1");
    return made();
  };
  PushManager.prototype.getSubscription = async function () {
    return localStorage.getItem("test-push") ? made() : null;
  };
})();
"""


@pytest.fixture(scope="module")
def dev_demo_server(tmp_path_factory):
    """`python wsgi.py` with the demo data, in development mode (loopback push endpoints)."""
    import os

    from tests.helpers import CHROMIUM, random_master_key

    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed") if not os.environ.get("CI") else pytest.fail("no chromium")
    folder = tmp_path_factory.mktemp("demo-push")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {
        "RENKEI_INSTANCE_DIR": str(folder),
        "RENKEI_PORT": str(free_port()),
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_ENV": "development",
    }
    with start_server(env, timeout=60) as base:
        yield base


@pytest.mark.browser
@pytest.mark.slow
def test_the_app_installs_and_a_tablet_subscribes_from_the_account_page(browser, dev_demo_server, receiver):
    from tests.helpers import signed_in_page

    base, password = dev_demo_server, "renkei-demo-2026"
    device = receiver.device("sato-tablet")
    page = signed_in_page(browser, base, "dr.sato", password)
    page.context.grant_permissions(["notifications"], origin=base)
    page.context.add_init_script(FAKE_PUSH_MANAGER % json.dumps(device.subscription()))
    page.goto("/account")
    worker = page.evaluate("navigator.serviceWorker.ready.then(r => r.active.scriptURL)")
    assert worker == base + "/sw.js"
    manifest = page.evaluate("fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())")
    assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert requests.get(base + icon["src"]).headers["Content-Type"] == "image/png"
    assert page.evaluate("caches.keys()") == []  # nothing cached, clinical or not

    page.fill("#push-subscribe input[name=label]", "訪問用タブレット")
    page.click("#push-subscribe button[type=submit]")
    row = page.locator("#push-devices li:has-text('訪問用タブレット')")
    row.wait_for(timeout=10000)
    row.locator(".this-device").wait_for(state="visible", timeout=5000)
    page.screenshot(
        path=str(Path(__file__).parent.parent / "test-artifacts" / "screenshots" / "account-notifications.png"),
        full_page=True,
    )

    cm = requests.post(base + "/api/v1/auth/tokens", json={"login": "cm.tanaka", "password": password}).json()["token"]
    auth = {"Authorization": "Bearer " + cm}
    pid = next(
        p["id"]
        for p in requests.get(base + "/api/v1/patients", headers=auth).json()["items"]
        if p["name"] == "山田 太郎"
    )
    r = requests.post(
        f"{base}/api/v1/patients/{pid}/notes",
        headers=auth,
        json={"body": "夜間に38.5℃の発熱、往診を検討してください", "category": "vital_signs", "urgent": True},
    )
    assert r.status_code == 201
    got = receiver.wait_for(1, timeout=10)
    assert [(g.device, g.payload["kind"]) for g in got] == [("sato-tablet", "note.urgent")]
    assert_identifiers_only(got[0].payload, pid)

    row.locator(".remove-device").click()
    row.wait_for(state="detached", timeout=5000)
    assert page.evaluate("navigator.serviceWorker.ready.then(r => r.pushManager.getSubscription())") is None
    page.reload()
    assert page.locator("#push-devices li:has-text('訪問用タブレット')").count() == 0
    page.context.close()


# --- what an independent review found (each failed on the first version) ----------------


def _private_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks a route
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_push_goes_only_to_an_address_that_was_checked_even_if_the_name_changes(dev_api, monkeypatch):
    """DNS rebinding: the name answers loopback while it is checked and a private address
    when the connection is made. The connection's own address is what counts."""
    private = _private_address()
    if private is None:
        pytest.skip("this machine has no address but loopback")
    receiver = PushReceiver(host="0.0.0.0")
    api = dev_api
    pid = team(api)
    device = receiver.device("d")
    real, calls = socket.getaddrinfo, []

    def rebinding(host, *args, **kwargs):
        if host == "push.rebind.test":
            calls.append(host)
            host = "127.0.0.1" if len(calls) <= 2 else private
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    sub = device.subscription() | {"endpoint": device.endpoint.replace("127.0.0.1", "push.rebind.test")}
    assert api.call("doc", "POST", "/api/v1/push/subscriptions", sub).status_code == 201
    note(api, "cm", pid)
    send_all(api)
    receiver.close()
    assert private not in receiver.reached_at, receiver.reached_at


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://169.254.169.254\\x.push.example/x",
        "https://8.8.8.8\\@10.0.0.1/x",
        "https://8.8.8.8 /x",
        "https://[64:ff9b::a00:5]/x",
        "https://[2002:a00:5::]/x",
        "https://[::7f00:1]/x",
        "https://[fec0::1]/x",
        "https://[2001:0:4136:e378::1]/x",
        # issue 29: translated and special-use IPv6, and ports other than 443
        "https://[64:ff9b:1::a00:5]/x",
        "https://[::ffff:0:a00:5]/x",
        "https://[5f00::1]/x",
        "https://[3fff::1]/x",
        "https://8.8.8.8:22/x",
        "https://8.8.8.8:6379/x",
    ],
)
def test_endpoints_another_parser_reads_differently_or_that_tunnel_to_private_addresses_are_refused(
    sqlite_api, endpoint, receiver
):
    sqlite_api.user("doc", "physician")
    r = sqlite_api.call(
        "doc", "POST", "/api/v1/push/subscriptions", receiver.device("d").subscription() | {"endpoint": endpoint}
    )
    assert r.status_code == 422 and "endpoint" in r.json["errors"], r.json


def test_a_push_service_that_answers_a_byte_at_a_time_does_not_hold_the_sender(dev_api, receiver, monkeypatch):
    from renkei.outreach import webpush

    monkeypatch.setattr(webpush, "SEND_SECONDS", 1.5, raising=False)
    api = dev_api
    pid = team(api)
    receiver.device("slow").status = "trickle"
    subscribe(api, "doc", receiver.devices["slow"])
    note(api, "cm", pid)
    started = time.monotonic()
    send_all(api)
    assert time.monotonic() - started < 6
    with api.app.app_context():
        assert db.session.execute(select(Delivery.attempts)).scalar_one() == 1  # tried again later


@pytest.mark.parametrize("retry_after", ["-5", "nan", "1e9"])
def test_a_push_services_retry_after_is_kept_within_bounds(dev_api, receiver, retry_after):
    api = dev_api
    pid = team(api)
    device = receiver.device("busy")
    device.status, device.retry_after = 429, retry_after
    subscribe(api, "doc", device)
    note(api, "cm", pid)
    done = threading.Thread(target=send_all, args=(api,), daemon=True)
    done.start()
    done.join(10)
    assert not done.is_alive(), "the sender kept sending"
    with api.app.app_context():
        row = db.session.execute(select(Delivery)).scalar_one()
        wait = (row.next_at - datetime.utcnow()).total_seconds()
    assert row.attempts == 1 and 0 < wait <= 3600


def test_a_sender_whose_claim_ran_out_leaves_the_row_to_the_one_that_took_it(dev_api, receiver):
    api = dev_api
    pid = team(api)
    subscribe(api, "doc", receiver.device("d"))
    note(api, "cm", pid)
    with api.app.app_context():
        slow = deliveries.claim()
        later = datetime.utcnow() + timedelta(seconds=deliveries.CLAIM_SECONDS + 1)
        fast = deliveries.claim(later)  # the first sender's claim ran out: another takes the row
        assert [r.id for r in fast] == [r.id for r in slow]
        deliveries.deliver(fast[0])
        deliveries.deliver(slow[0])  # the slow one wakes up
        db.session.remove()
    assert len(receiver.received) == 1


def test_a_device_removed_while_its_push_is_retried_stops_nothing(dev_api, receiver, monkeypatch):
    from renkei.outreach import webpush

    api = dev_api
    pid = team(api)
    sub_id = subscribe(api, "doc", receiver.device("d")).json["id"]
    subscribe(api, "pharm", receiver.device("p"))
    note(api, "cm", pid)
    real = webpush.send

    def removed_meanwhile(info, payload, urgent):
        if info["endpoint"].endswith("/d"):  # the person removes the device (another request, another thread)
            answers = []
            t = threading.Thread(
                target=lambda: answers.append(
                    api.call("doc", "DELETE", f"/api/v1/push/subscriptions/{sub_id}").status_code
                )
            )
            t.start()
            t.join()
            assert answers == [204]
            raise webpush.Later()
        return real(info, payload, urgent)

    monkeypatch.setattr(webpush, "send", removed_meanwhile)
    assert send_all(api) == 2
    assert [g.device for g in receiver.received] == ["p"]


def test_a_disabled_person_gets_no_mail_and_loses_their_address(sqlite_url, mailbox):
    app = build_app(sqlite_url, smtp_url=mailbox.url, mail_from="renkei@clinic.example.jp")
    api = Api(app)
    pid = team(api)
    api.call("doc", "PUT", "/api/v1/users/me/email", {"address": "doc@clinic.example.jp"})
    send_all(api)
    code = re.search(r"#code=(\S+)", mailbox.text(0)[1]).group(1)
    api.call("doc", "POST", "/api/v1/users/me/email/confirm", {"code": code})
    api.call("doc", "PUT", "/api/v1/users/me/notifications", {"email": {"digest": True}})
    assert api.call("admin", "PATCH", f"/api/v1/users/{api.users['doc']['id']}", {"disabled": True}).status_code == 200
    note(api, "cm", pid)
    with app.app_context():
        assert tell.queue_digests(datetime.utcnow().replace(hour=23)) == 0
        db.session.remove()
    send_all(api)
    assert len(mailbox.messages) == 1  # the confirmation only
    with app.app_context():
        from models import NotificationSettings

        assert db.session.get(NotificationSettings, api.users["doc"]["id"]).email_ct is None
    app.extensions["renkei.engine"].dispose()


def test_confirmation_mails_go_to_mail_domains_a_few_times_a_day(sqlite_url, mailbox):
    app = build_app(sqlite_url, smtp_url=mailbox.url, mail_from="renkei@clinic.example.jp")
    api = Api(app)
    api.user("doc", "physician")
    for address in ("x@localhost", "x@[10.0.0.1]", "x@10.0.0.1"):
        r = api.call("doc", "PUT", "/api/v1/users/me/email", {"address": address})
        assert r.status_code == 422 and "address" in r.json["errors"], (address, r.json)
    for i in range(tell.CONFIRMATION_MAILS):
        assert api.call("doc", "PUT", "/api/v1/users/me/email", {"address": f"x{i}@example.jp"}).status_code == 202
    r = api.call("doc", "PUT", "/api/v1/users/me/email", {"address": "victim@example.jp"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    app.extensions["renkei.engine"].dispose()


def test_a_person_has_at_most_ten_devices(sqlite_api, receiver):
    sqlite_api.user("doc", "physician")
    for i in range(10):
        body = receiver.device(f"d{i}").subscription() | {"endpoint": f"https://8.8.8.8/push/{i}"}
        assert sqlite_api.call("doc", "POST", "/api/v1/push/subscriptions", body).status_code == 201
    body = receiver.device("d10").subscription() | {"endpoint": "https://8.8.8.8/push/10"}
    assert sqlite_api.call("doc", "POST", "/api/v1/push/subscriptions", body).status_code == 409


def test_a_mention_pushes_even_to_someone_who_turned_urgent_pushes_off_and_only_names_whole_logins(dev_api, receiver):
    api = dev_api
    pid = team(api)
    api.user("docent", "nurse")
    api.join(pid, "docent", "nurse", by="cm")
    for who in ("doc", "docent"):
        subscribe(api, who, receiver.device(who))
    api.call("doc", "PUT", "/api/v1/users/me/notifications", {"push": {"urgent": False}})
    api.call("docent", "PUT", "/api/v1/users/me/notifications", {"push": {"urgent": False}})
    note(api, "cm", pid, "@doc 至急確認してください")
    send_all(api)
    assert [(g.device, g.payload["kind"]) for g in receiver.received] == [("doc", "note.mention")]


def test_leaving_a_team_drops_what_was_queued_about_its_patient(dev_api, receiver):
    api = dev_api
    pid = team(api)
    subscribe(api, "pharm", receiver.device("p"))
    note(api, "cm", pid)
    assert api.call("cm", "DELETE", f"/api/v1/patients/{pid}/team/{api.users['pharm']['id']}").status_code == 204
    send_all(api)
    assert receiver.received == []


def test_a_display_name_of_only_spaces_mentions_nobody():
    from types import SimpleNamespace

    members = [
        SimpleNamespace(id="blank", login="x1", display_name="\u3000"),
        SimpleNamespace(id="sato", login="dr.sato", display_name="佐藤 一郎"),
    ]
    assert tell.mentioned("メールは doc@example.jp まで", members) == []
    assert tell.mentioned("@佐藤一郎 先生、確認をお願いします", members) == ["sato"]
