"""Socket.IO (docs/API.md, "Realtime events") against real server processes with a real Socket.IO client,
and across two processes through a real Redis."""

import json
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests
import socketio
from sqlalchemy import select

from models import AuditEntry
from renkei.common import db
from renkei.outreach import events
from tests.helpers import PASSWORD, ROOT
from tests.servers import Listener, World, free_port

pytestmark = pytest.mark.slow
EVENT_KEYS = {
    "record.updated": {"patient_id", "section", "version", "actor_id", "at", "seq"},
    "note.created": {"patient_id", "note_id", "category", "urgent", "reply_to", "actor_id", "at", "seq"},
    "team.updated": {"patient_id", "user_id", "change", "at", "seq"},
    "breakglass.opened": {"patient_id", "actor_id", "reason_given", "at", "seq"},
    "observation.alert": {"patient_id", "observation_id", "kind", "actor_id", "at", "seq"},
}


@pytest.fixture
def world(sqlite_url, tmp_path):
    return World(sqlite_url, tmp_path)


def test_team_receives_outsider_does_not_and_payloads_hold_no_content(world):
    with world.server() as base:
        doc, ns_tablet, ns_pc, cm_other_device, out = (
            Listener(base, world.tokens[w]) for w in ("doc", "ns", "ns", "cm", "out")
        )
        try:
            world.put(base, "cm", "care_notes", {"notes": "秘密の内容"}, 0)
            r = requests.post(
                f"{base}/api/v1/patients/{world.pid}/notes",
                json={"body": "発熱あり", "category": "vital_signs", "urgent": True},
                headers={"Authorization": "Bearer " + world.tokens["doc"]},
            )
            assert r.status_code == 201
            for listener in (doc, ns_tablet, ns_pc, cm_other_device):
                events = listener.wait_for(2)
                assert [n for n, _ in events] == ["record.updated", "note.created"]
                for name, payload in events:
                    assert set(payload) == EVENT_KEYS[name]
                    assert "秘密" not in str(payload) and "発熱" not in str(payload)
                rec, note = events[0][1], events[1][1]
                assert (rec["patient_id"], rec["section"], rec["version"], rec["actor_id"]) == (
                    world.pid,
                    "care_notes",
                    1,
                    world.ids["cm"],
                )
                assert note["urgent"] is True and note["category"] == "vital_signs"
                assert note["seq"] > rec["seq"]
            time.sleep(0.5)
            assert out.events == []
        finally:
            for listener in (doc, ns_tablet, ns_pc, cm_other_device, out):
                listener.close()


def test_unauthenticated_and_revoked_connections_are_refused(world):
    with world.server() as base:
        for auth in (None, {"token": "rk_forged"}, {"token": 42}):
            client = socketio.Client(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                client.connect(base, auth=auth, transports=["websocket"], wait_timeout=5)
        foreign = socketio.Client(reconnection=False)  # a valid token from another site's page
        with pytest.raises(socketio.exceptions.ConnectionError):
            foreign.connect(
                base,
                auth={"token": world.tokens["doc"]},
                transports=["websocket"],
                headers={"Origin": "https://evil.example"},
                wait_timeout=5,
            )
        listener = Listener(base, world.tokens["doc"])
        assert (
            requests.delete(
                base + "/api/v1/auth/tokens/current", headers={"Authorization": "Bearer " + world.tokens["doc"]}
            ).status_code
            == 204
        )
        deadline = time.monotonic() + 5
        while listener.sio.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not listener.sio.connected  # logging out closed the open socket
        with pytest.raises(socketio.exceptions.ConnectionError):
            Listener(base, world.tokens["doc"])


def test_removed_member_stops_receiving_at_once(world):
    with world.server() as base:
        ns, doc = Listener(base, world.tokens["ns"]), Listener(base, world.tokens["doc"])
        try:
            r = requests.delete(
                f"{base}/api/v1/patients/{world.pid}/team/{world.ids['ns']}",
                headers={"Authorization": "Bearer " + world.tokens["cm"]},
            )
            assert r.status_code == 204
            assert doc.wait_for(1)[0][0] == "team.updated"
            world.put(base, "cm", "adl", {"eating": {"level": "independent"}}, 0)
            assert [n for n, _ in doc.wait_for(2)] == ["team.updated", "record.updated"]
            time.sleep(0.5)
            assert ns.events == []
        finally:
            ns.close()
            doc.close()


def test_breakglass_is_announced_to_the_team_and_administrators(world):
    with world.server() as base:
        cm, admin = Listener(base, world.tokens["cm"]), Listener(base, world.tokens["admin"])
        try:
            r = requests.post(
                f"{base}/api/v1/patients/{world.pid}/breakglass",
                json={"reason": "救急外来で既往歴確認", "otp": world.api.otp("er")},
                headers={"Authorization": "Bearer " + world.tokens["er"]},
            )
            assert r.status_code == 201
            for listener in (cm, admin):
                name, payload = listener.wait_for(1)[0]
                assert name == "breakglass.opened" and set(payload) == EVENT_KEYS[name]
                assert payload["actor_id"] == world.ids["er"] and payload["reason_given"] is True
        finally:
            cm.close()
            admin.close()


def test_a_reading_beyond_a_threshold_reaches_the_teammates_socket_without_its_value(world):
    with world.server() as base:
        doc, out = Listener(base, world.tokens["doc"]), Listener(base, world.tokens["out"])
        try:
            path, auth = (
                f"{base}/api/v1/patients/{world.pid}/observations",
                {"Authorization": "Bearer " + world.tokens["doc"]},
            )
            r = requests.put(
                path + "/thresholds", json={"thresholds": {"spo2": {"min": 90}}}, headers=auth | {"If-Match": '"0"'}
            )
            assert r.status_code == 200, r.text
            r = requests.post(
                path,
                json={"kind": "spo2", "value": 86, "note": "呼吸苦の訴え"},
                headers={"Authorization": "Bearer " + world.tokens["ns"]},
            )
            assert r.status_code == 201 and r.json()["alert"] is True
            name, payload = doc.wait_for(1)[0]
            assert name == "observation.alert" and set(payload) == EVENT_KEYS[name]
            assert (payload["observation_id"], payload["kind"], payload["actor_id"]) == (
                r.json()["id"],
                "spo2",
                world.ids["ns"],
            )
            assert "呼吸" not in json.dumps(payload, ensure_ascii=False)
            time.sleep(0.5)
            assert out.events == []
        finally:
            doc.close()
            out.close()


def test_resume_returns_exactly_the_missed_events_in_order(world):
    with world.server() as base:
        doc = Listener(base, world.tokens["doc"])
        world.put(base, "cm", "wishes", {"patient_wishes": "a"}, 0)
        last_seen = doc.wait_for(1)[0][1]["seq"]
        doc.close()
        for v in range(1, 4):  # three changes while the physician is offline
            world.put(base, "cm", "wishes", {"patient_wishes": f"v{v}"}, v)
        back = Listener(base, world.tokens["doc"])
        try:
            ack = back.sio.call("resume", {"since": last_seen}, timeout=10)
            events = back.wait_for(3)
            assert [(n, p["version"]) for n, p in events] == [
                ("record.updated", 2),
                ("record.updated", 3),
                ("record.updated", 4),
            ]
            assert [p["seq"] for _, p in events] == [last_seen + 1, last_seen + 2, last_seen + 3]
            assert ack == {"replayed": 3, "seq": last_seen + 3}
            assert back.sio.call("resume", {"since": "x"}, timeout=5)["error"]
        finally:
            back.close()


def handshake_extensions(base: str) -> tuple[str, str]:
    """Open a websocket as a browser does, offering per-message compression; the status
    line and the extensions the server agreed to."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            (
                "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    agreed = [
        v.strip() for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "sec-websocket-extensions"
    ]
    return lines[0], ",".join(agreed)


def test_a_socket_behind_the_trusted_proxy_is_audited_with_the_clients_address(world):
    """Behind the TLS front (one trusted hop) the access log names the client's address
    for a socket's connection, as for any request — not the proxy's."""
    with world.server(RENKEI_TRUSTED_PROXIES="1") as base:
        client = socketio.Client(reconnection=False)
        client.connect(
            base,
            auth={"token": world.tokens["doc"]},
            transports=["websocket"],
            headers={"X-Forwarded-For": "203.0.113.9"},
            wait_timeout=10,
        )
        client.disconnect()
    with world.app.app_context():
        addresses = (
            db.session.execute(select(AuditEntry.client_addr).where(AuditEntry.action == "realtime.connect"))
            .scalars()
            .all()
        )
        db.session.remove()
    assert addresses == ["203.0.113.9"]


@pytest.mark.postgres
def test_websockets_are_not_compressed_by_either_server(pg_world):
    """Events are a hundred bytes of identifiers: compressing each costs the server and
    the tablet more than sending it (docs/ARCHITECTURE.md, "Realtime fan-out"). Both
    servers, Werkzeug's threads and gunicorn's gevent worker, decline the offer."""
    with pg_world.server() as threads, pg_world.server(gunicorn=True) as gevent_worker:
        for base in (threads, gevent_worker):
            status, agreed = handshake_extensions(base)
            assert status.startswith("HTTP/1.1 101"), status
            assert agreed == "", agreed


@pytest.mark.postgres
def test_two_processes_behave_as_one_through_redis(pg_world, redis_url):
    """A: a gunicorn worker (gevent), B: `python wsgi.py` (threads), sharing Redis."""
    w = pg_world
    with w.server(gunicorn=True, RENKEI_REDIS_URL=redis_url) as a, w.server(RENKEI_REDIS_URL=redis_url) as b:
        on_b, ns_on_a, out_on_b = (
            Listener(b, w.tokens["doc"]),
            Listener(a, w.tokens["ns"]),
            Listener(b, w.tokens["out"]),
        )
        try:
            w.put(a, "cm", "home", {"bed": "介護ベッド"}, 0)  # written on A
            w.put(b, "ns", "home", {"bed": "電動ベッド"}, 1)  # written on B
            for listener in (on_b, ns_on_a):
                assert [(n, p["version"]) for n, p in listener.wait_for(2)] == [
                    ("record.updated", 1),
                    ("record.updated", 2),
                ]
            # removal on A is honoured by B at once
            requests.delete(
                f"{a}/api/v1/patients/{w.pid}/team/{w.ids['doc']}",
                headers={"Authorization": "Bearer " + w.tokens["cm"]},
            )
            w.put(a, "cm", "home", {"bed": "布団"}, 2)
            assert [n for n, _ in ns_on_a.wait_for(4)][2:] == ["team.updated", "record.updated"]
            time.sleep(0.5)
            assert len(on_b.events) == 2 and out_on_b.events == []
            # logging out on A closes the socket held by B
            requests.delete(a + "/api/v1/auth/tokens/current", headers={"Authorization": "Bearer " + w.tokens["doc"]})
            deadline = time.monotonic() + 5
            while on_b.sio.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not on_b.sio.connected
        finally:
            for listener in (on_b, ns_on_a, out_on_b):
                listener.close()


def updates(listener, timeout=10):
    """The first record.updated a listener got (a resync prompt may come before it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [(n, p) for n, p in list(listener.events) if n == "record.updated"]
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError(f"no record.updated: {listener.events}")


@pytest.mark.postgres
def test_a_write_is_one_message_on_the_queue_and_each_person_gets_their_own_seq(pg_world, redis_url):
    """Fan-out (docs/ARCHITECTURE.md, "Realtime fan-out"): however large the team, a write
    puts one message on Redis; each process hands it to its own sockets, each person with
    their own seq. The message names identifiers only."""
    w = pg_world
    queue = redis.Redis.from_url(redis_url)
    watch = queue.pubsub(ignore_subscribe_messages=True)
    watch.psubscribe("*")
    with (
        w.server(gunicorn=True, RENKEI_REDIS_URL=redis_url) as a,
        w.server(gunicorn=True, RENKEI_REDIS_URL=redis_url) as b,
    ):
        sockets = {
            "doc on B": Listener(b, w.tokens["doc"]),
            "doc on A": Listener(a, w.tokens["doc"]),
            "ns on A": Listener(a, w.tokens["ns"]),
            "cm on B": Listener(b, w.tokens["cm"]),
        }
        try:
            deadline = time.monotonic() + 10  # each process subscribes when its first socket connects
            while sum(n for _, n in queue.pubsub_numsub(*queue.pubsub_channels())) < 2:
                assert time.monotonic() < deadline, "a server process never subscribed"
                time.sleep(0.05)
            while watch.get_message(timeout=0.2):
                pass
            w.put(a, "cm", "home", {"bed": "介護ベッド 田中様"}, 0)
            got = {where: updates(listener) for where, listener in sockets.items()}
            time.sleep(0.5)
            published = []
            while (message := watch.get_message(timeout=0.2)) is not None:
                published.append(message["data"].decode())
            assert len(published) == 1, published  # was one per recipient: every process got all of them
            message = json.loads(published[0])  # identifiers, seqs and sids only
            assert {(name, tuple(sorted(body))) for name, body, _ in message["events"]} == {
                ("record.updated", ("actor_id", "at", "patient_id", "section", "version"))
            }
            assert "介護ベッド" not in json.dumps(message, ensure_ascii=False) and "田中" not in published[0]
            with w.app.app_context():
                own = {who: events.events_since(w.ids[who], 0)[-1][1]["seq"] for who in ("doc", "ns", "cm")}
            assert {where: (name, p["version"], p["seq"]) for where, (name, p) in got.items()} == {
                "doc on B": ("record.updated", 1, own["doc"]),
                "doc on A": ("record.updated", 1, own["doc"]),
                "ns on A": ("record.updated", 1, own["ns"]),
                "cm on B": ("record.updated", 1, own["cm"]),
            }
            assert len(set(own.values())) > 1  # the people's seqs differ, so each got their own
        finally:
            watch.close()
            for listener in sockets.values():
                listener.close()


@pytest.mark.postgres
def test_with_redis_down_writes_commit_and_clients_catch_up(pg_world, tmp_path):
    w = pg_world
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with w.server(gunicorn=True, RENKEI_REDIS_URL=dead) as a:
        doc = Listener(a, w.tokens["doc"])
        try:
            started = time.monotonic()
            w.put(a, "cm", "condition", {"summary": "安定"}, 0)
            assert time.monotonic() - started < 10
            r = requests.get(
                f"{a}/api/v1/patients/{w.pid}/record/condition", headers={"Authorization": "Bearer " + w.tokens["doc"]}
            )
            assert r.json()["version"] == 1
            ack = doc.sio.call("resume", {"since": 0}, timeout=10)
            names = [n for n, _ in doc.wait_for(1)]
            assert names[-1] == "record.updated" and ack["replayed"] >= 1
        finally:
            doc.close()


@pytest.mark.postgres
def test_a_reset_on_the_command_line_closes_the_persons_sockets_in_the_server(pg_world, redis_url):
    """`flask reset-access` ends the person's sessions and its process exits right after
    the commit: the close still reaches the server holding their socket (not only the
    sweeper, 15 s later)."""
    w = pg_world
    with w.server(gunicorn=True, RENKEI_REDIS_URL=redis_url) as a:
        doc = Listener(a, w.tokens["doc"])
        try:
            deadline = time.monotonic() + 10
            while redis.Redis.from_url(redis_url).pubsub_numsub("renkei:realtime")[0][1] < 1:
                assert time.monotonic() < deadline, "the server never subscribed"
                time.sleep(0.05)
            done = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", "reset-access", "--login", "doc"],
                cwd=ROOT,
                env=w.env | {"RENKEI_REDIS_URL": redis_url},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            deadline = time.monotonic() + 5
            while doc.sio.connected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not doc.sio.connected
        finally:
            doc.close()


class FakeSockets:
    """Stands in for python-socketio's server: records what a process's sockets were sent."""

    def __init__(self):
        self.sent = []

    def emit(self, name, payload, to):
        self.sent.append((to, name, payload))

    def disconnect(self, sid):
        self.sent.append((sid, "closed", None))


class CuttablePath:
    """A TCP path to Redis that can be cut, as a network fault cuts one server process
    off while the others still reach Redis."""

    def __init__(self, target_port: int):
        self.target, self.open, self.conns = target_port, True, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.listener.accept()
            if not self.open:
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self):
        self.open = False
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_message_redis_did_not_take_makes_the_next_one_tell_others_to_resume(redis_url):
    """Between processes (realtime/fanout.py): when one process cannot reach Redis, the
    commit whose message was lost is not lost for the other processes' sockets — once it
    reaches Redis again, it tells them to resume, and they fetch it from the database. Two fan-outs as two processes run them, through a real Redis; only the
    first's path to it is cut."""
    from realtime.fanout import Fanout

    host_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    path = CuttablePath(host_port)
    a, b = Fanout("process-a"), Fanout("process-b")
    a.init(FakeSockets(), f"redis://127.0.0.1:{path.port}/0", None)
    b.init(FakeSockets(), redis_url, None)
    b.opened("sid-of-ns", "ns")  # a socket of ns's in the other process
    wait_for(lambda: ("sid-of-ns", "resync", {}) in b.server.sent)  # b's subscription is up
    b.server.sent.clear()
    a.send([("record.updated", {"patient_id": "p1", "section": "home", "version": 0}, {"ns": 6})], [])
    wait_for(lambda: b.server.sent)  # a reaches Redis: b delivers
    b.server.sent.clear()

    path.cut()
    a.send([("record.updated", {"patient_id": "p1", "section": "home", "version": 1}, {"ns": 7})], [])
    a.flush()
    path.open = True  # the network is back; Redis never went away for b
    # the next message a gets through (or its own, when it has none) tells b's sockets to
    # resume: they fetch seq 7 from the database
    wait_for(lambda: ("sid-of-ns", "resync", {}) in b.server.sent)
    a.send([("record.updated", {"patient_id": "p1", "section": "home", "version": 2}, {"ns": 8})], [])
    wait_for(lambda: any(name == "record.updated" for _, name, _ in b.server.sent))
    assert [(sid, name, body) for sid, name, body in b.server.sent if name == "record.updated"] == [
        ("sid-of-ns", "record.updated", {"patient_id": "p1", "section": "home", "version": 2, "seq": 8}),
    ]  # seq 7 never arrived by the queue


@pytest.mark.postgres
def test_a_socket_hears_nothing_after_its_token_expires_even_before_the_sweep(pg_world):
    """Issue 29: a socket whose token had expired kept receiving events until the next
    sweep (up to 15 s). The server's tokens here live 3 s; the sweep is a minute away."""
    w = pg_world
    with w.server(RENKEI_TOKEN_TTL="3", RENKEI_SOCKET_SWEEP_SECONDS="60") as base:
        signed = requests.post(
            base + "/api/v1/auth/tokens", json={"login": "doc", "password": PASSWORD, "otp": w.api.otp("doc")}
        )
        assert signed.status_code == 201, signed.text
        doc = Listener(base, signed.json()["token"])
        try:
            w.put(base, "cm", "condition", {"summary": "安定"}, 0)
            doc.wait_for(1)  # heard while the token holds
            time.sleep(3.5)
            w.put(base, "cm", "condition", {"summary": "変化なし"}, 1)
            time.sleep(1.5)
            assert [n for n, _ in doc.events] == ["record.updated"]
        finally:
            doc.close()
