"""Socket.IO (docs/API.md, "Realtime events") against real server processes with a real Socket.IO client,
and across two processes through a real Redis."""
import time

import pytest
import requests
import socketio

from tests.servers import Listener, World, free_port

pytestmark = pytest.mark.slow
EVENT_KEYS = {
    "record.updated": {"patient_id", "section", "version", "actor_id", "at", "seq"},
    "note.created": {"patient_id", "note_id", "category", "urgent", "actor_id", "at", "seq"},
    "team.updated": {"patient_id", "user_id", "change", "at", "seq"},
    "breakglass.opened": {"patient_id", "actor_id", "reason_given", "at", "seq"},
}


@pytest.fixture
def world(sqlite_url, tmp_path):
    return World(sqlite_url, tmp_path)


def test_team_receives_outsider_does_not_and_payloads_hold_no_content(world):
    with world.server() as base:
        doc, ns_tablet, ns_pc, cm_other_device, out = (
            Listener(base, world.tokens[w]) for w in ("doc", "ns", "ns", "cm", "out"))
        try:
            world.put(base, "cm", "care_notes", {"notes": "秘密の内容"}, 0)
            r = requests.post(f"{base}/api/v1/patients/{world.pid}/notes",
                              json={"body": "発熱あり", "category": "vital_signs", "urgent": True},
                              headers={"Authorization": "Bearer " + world.tokens["doc"]})
            assert r.status_code == 201
            for listener in (doc, ns_tablet, ns_pc, cm_other_device):
                events = listener.wait_for(2)
                assert [n for n, _ in events] == ["record.updated", "note.created"]
                for name, payload in events:
                    assert set(payload) == EVENT_KEYS[name]
                    assert "秘密" not in str(payload) and "発熱" not in str(payload)
                rec, note = events[0][1], events[1][1]
                assert (rec["patient_id"], rec["section"], rec["version"], rec["actor_id"]) == (
                    world.pid, "care_notes", 1, world.ids["cm"])
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
            foreign.connect(base, auth={"token": world.tokens["doc"]}, transports=["websocket"],
                            headers={"Origin": "https://evil.example"}, wait_timeout=5)
        listener = Listener(base, world.tokens["doc"])
        assert requests.delete(base + "/api/v1/auth/tokens/current",
                               headers={"Authorization": "Bearer " + world.tokens["doc"]}).status_code == 204
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
            r = requests.delete(f"{base}/api/v1/patients/{world.pid}/team/{world.ids['ns']}",
                                headers={"Authorization": "Bearer " + world.tokens["cm"]})
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
            r = requests.post(f"{base}/api/v1/patients/{world.pid}/breakglass",
                              json={"reason": "救急外来で既往歴確認"},
                              headers={"Authorization": "Bearer " + world.tokens["er"]})
            assert r.status_code == 201
            for listener in (cm, admin):
                name, payload = listener.wait_for(1)[0]
                assert name == "breakglass.opened" and set(payload) == EVENT_KEYS[name]
                assert payload["actor_id"] == world.ids["er"] and payload["reason_given"] is True
        finally:
            cm.close()
            admin.close()


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
            assert [(n, p["version"]) for n, p in events] == [("record.updated", 2), ("record.updated", 3),
                                                              ("record.updated", 4)]
            assert [p["seq"] for _, p in events] == [last_seen + 1, last_seen + 2, last_seen + 3]
            assert ack == {"replayed": 3, "seq": last_seen + 3}
            assert back.sio.call("resume", {"since": "x"}, timeout=5)["error"]
        finally:
            back.close()


@pytest.mark.postgres
def test_two_processes_behave_as_one_through_redis(pg_world, redis_url):
    w = pg_world
    with w.server(RENKEI_REDIS_URL=redis_url) as a, w.server(RENKEI_REDIS_URL=redis_url) as b:
        on_b, ns_on_a, out_on_b = (Listener(b, w.tokens["doc"]), Listener(a, w.tokens["ns"]),
                                   Listener(b, w.tokens["out"]))
        try:
            w.put(a, "cm", "home", {"bed": "介護ベッド"}, 0)   # written on A
            w.put(b, "ns", "home", {"bed": "電動ベッド"}, 1)    # written on B
            for listener in (on_b, ns_on_a):
                assert [(n, p["version"]) for n, p in listener.wait_for(2)] == [
                    ("record.updated", 1), ("record.updated", 2)]
            # removal on A is honoured by B at once
            requests.delete(f"{a}/api/v1/patients/{w.pid}/team/{w.ids['doc']}",
                            headers={"Authorization": "Bearer " + w.tokens["cm"]})
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


@pytest.mark.postgres
def test_with_redis_down_writes_commit_and_clients_catch_up(pg_world, tmp_path):
    w = pg_world
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with w.server(RENKEI_REDIS_URL=dead) as a:
        doc = Listener(a, w.tokens["doc"])
        try:
            started = time.monotonic()
            w.put(a, "cm", "condition", {"summary": "安定"}, 0)
            assert time.monotonic() - started < 10
            r = requests.get(f"{a}/api/v1/patients/{w.pid}/record/condition",
                             headers={"Authorization": "Bearer " + w.tokens["doc"]})
            assert r.json()["version"] == 1
            ack = doc.sio.call("resume", {"since": 0}, timeout=10)
            names = [n for n, _ in doc.wait_for(1)]
            assert names[-1] == "record.updated" and ack["replayed"] >= 1
        finally:
            doc.close()
