"""Finding 9: every way that ends a credential ends its sockets, and `resume`
re-authorises. Real server processes, real Socket.IO clients, PostgreSQL."""

import time

import pyotp
import pytest
import requests
import socketio
from sqlalchemy import create_engine, text

from renkei.common import db
from renkei.people import directory
from tests.helpers import PASSWORD
from tests.servers import Listener

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
FAST = {"RENKEI_SOCKET_SWEEP_SECONDS": "0.5"}


def _closed(client: socketio.Client, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not client.connected:
            return True
        time.sleep(0.1)
    return False


def test_a_token_that_expires_closes_its_socket(pg_world):
    with pg_world.server(RENKEI_TOKEN_TTL="3", **FAST) as base:
        token = requests.post(
            f"{base}/api/v1/auth/tokens", json={"login": "ns", "password": PASSWORD, "otp": pg_world.api.otp("ns")}
        ).json()["token"]
        listener = Listener(base, token)
        assert listener.sio.connected
        assert _closed(listener.sio, within=8)


def test_an_access_reset_closes_the_persons_sockets(pg_world):
    w = pg_world
    with w.app.app_context():
        second = directory.create_admin("admin2", PASSWORD)
        db.session.commit()
    with w.server(**FAST) as base:
        admin2 = requests.post(
            f"{base}/api/v1/auth/tokens",
            json={"login": "admin2", "password": PASSWORD, "otp": pyotp.TOTP(second["totp_secret"]).now()},
        ).json()["token"]
        listener = Listener(base, w.tokens["ns"])
        r = requests.post(
            f"{base}/api/v1/users/{w.ids['ns']}/reset", headers={"Authorization": "Bearer " + w.tokens["admin"]}
        )
        assert r.status_code == 201 and r.json()["status"] == "awaiting_approval"
        r = requests.post(
            f"{base}/api/v1/users/{w.ids['ns']}/reset/{r.json()['id']}/approve",
            headers={"Authorization": "Bearer " + admin2},
        )
        assert r.status_code == 201
        assert _closed(listener.sio, within=5)


def test_an_idle_browser_session_closes_its_socket(pg_world):
    with pg_world.server(RENKEI_SESSION_IDLE="3", **FAST) as base:
        # The session cookie is Secure (production is HTTPS); over this plain-HTTP test
        # server it is carried by hand.
        form = requests.get(f"{base}/login")
        csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = requests.post(
            f"{base}/login",
            data={"login": "ns", "password": PASSWORD, "csrf_token": csrf, "otp": pg_world.api.otp("ns")},
            headers={"Cookie": "session=" + form.cookies["session"]},
            allow_redirects=False,
        )
        assert r.status_code == 302
        client = socketio.Client(reconnection=False)
        cookie = "session=" + r.cookies["session"]
        client.connect(base, headers={"Cookie": cookie}, transports=["websocket"], wait_timeout=10)
        assert client.connected
        assert _closed(client, within=8)


def test_resume_re_authorises_and_refuses_a_revoked_token(pg_world):
    w = pg_world
    with w.server() as base:
        listener = Listener(base, w.tokens["ns"])
        # revoked behind the socket's back (no disconnect was sent)
        engine = create_engine(w.env["RENKEI_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as c:
            c.execute(text("UPDATE api_tokens SET revoked_at = now() AT TIME ZONE 'utc'"))
        engine.dispose()
        ack = listener.sio.call("resume", {"since": 0}, timeout=5)
        assert ack.get("error") and "replayed" not in ack
        assert _closed(listener.sio, within=5)


def test_resume_drops_events_of_a_patient_no_longer_visible(pg_world):
    w = pg_world
    with w.server() as base:
        w.put(base, "cm", "condition", {"summary": "before removal"}, 0)
        listener = Listener(base, w.tokens["ns"])
        r = requests.delete(
            f"{base}/api/v1/patients/{w.pid}/team/{w.ids['ns']}", headers={"Authorization": "Bearer " + w.tokens["cm"]}
        )
        assert r.status_code == 204
        ack = listener.sio.call("resume", {"since": 0}, timeout=5)
        assert ack["replayed"] == 0 and ack["seq"] >= 1  # seq: where the replay ended
        assert not [e for e in listener.events if e[1].get("patient_id") == w.pid]
