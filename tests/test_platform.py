"""Production topology and faults: several gunicorn workers sharing Socket.IO through
Redis; the database going away (503, never stale, never anonymous) and coming back;
a server killed in the middle of writes losing nothing it acknowledged."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests
from sqlalchemy import select

from models import SocketSession
from realtime.fanout import CHANNEL
from renkei.common import db
from tests.helpers import ROOT
from tests.servers import Listener, World, free_port, start_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_gunicorn_workers_deliver_to_every_listener(pg_world, redis_url):
    w = pg_world
    env = w.env | {
        "RENKEI_REDIS_URL": redis_url,
        "RENKEI_WORKERS": "2",
        "RENKEI_CONNECTIONS": "50",
        "RENKEI_PORT": str(free_port()),
    }
    log = os.path.join(env["RENKEI_INSTANCE_DIR"], f"server-{env['RENKEI_PORT']}.log")
    with start_server(env, gunicorn=True) as base:
        deadline = time.monotonic() + 30  # /healthz answers once the first worker is up
        while open(log).read().count("sockets and requests as gevent greenlets") < 2:  # not threads
            assert time.monotonic() < deadline, open(log).read()[-2000:]
            time.sleep(0.1)
        listeners = [Listener(base, w.tokens["doc"]) for _ in range(8)]  # spread over both workers
        queue, deadline = redis.Redis.from_url(redis_url), time.monotonic() + 10
        # Each worker subscribes to the queue when its first socket connects; a push made
        # before that reaches its sockets only through resume, which these listeners don't
        # do. So wait until every worker holding a listener is subscribed.
        with w.app.app_context():
            holders = len(set(db.session.execute(select(SocketSession.owner)).scalars()))
            db.session.remove()
        while queue.pubsub_numsub(CHANNEL)[0][1] < holders:
            assert time.monotonic() < deadline, "a worker never subscribed to the queue"
            time.sleep(0.1)
        try:
            for version in range(3):
                w.put(base, "cm", "adl", {"eating": {"level": "independent", "note": f"{version + 1}回目"}}, version)
            for listener in listeners:
                assert [p["version"] for _, p in listener.wait_for(3)] == [1, 2, 3]
        finally:
            for listener in listeners:
                listener.close()
        assert open(log).read().count("Booting worker") == 2


def test_gunicorn_refuses_sqlite_and_says_why(tmp_path):
    """A worker's greenlets share one thread: on SQLite one waiting for the write lock
    would hold up the one holding it (the first sign-in hung for 30 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")} | {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "RENKEI_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "PostgreSQL" in done.stderr, done.stderr[-2000:]


# A gunicorn worker's greenlets share one thread (platform/gunicorn.conf.py): here, with
# the deployed password-hash cost, a check and a ticker standing for the worker's other
# connections (their requests and socket events).
PASSWORD_CHECK_IN_A_GEVENT_WORKER = """
from gevent import monkey
monkey.patch_all()
import time, gevent
from renkei.people import auth
from renkei.settings import Settings
from tests.helpers import build_app
app = build_app("sqlite://", argon2_time_cost=Settings.argon2_time_cost,
                argon2_memory_cost=Settings.argon2_memory_cost)
with app.app_context():
    stored = auth.hash_password("correct horse battery")
ticks = []
def other_connections():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.005)
gevent.spawn(other_connections)
gevent.sleep(0.02)
with app.app_context():
    start = time.monotonic()
    ok = auth._password_ok(stored, "correct horse battery")
    end = time.monotonic()
seen = [start] + [t for t in ticks if start < t < end] + [end]
print(ok, end - start, max(b - a for a, b in zip(seen, seen[1:])))
"""


def test_a_password_check_does_not_hold_up_the_workers_other_connections():
    """A sign-in's hash (Argon2, ~170 ms) runs beside the worker's greenlets, not in
    their one thread: other people's pages and events do not wait for it."""
    done = subprocess.run(
        [sys.executable, "-c", PASSWORD_CHECK_IN_A_GEVENT_WORKER], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ok, took, longest_wait = done.stdout.split()
    assert ok == "True" and float(took) > 0.05  # a real hash, long enough to matter
    assert float(longest_wait) < float(took) / 2, done.stdout  # the others went on meanwhile


def test_database_down_is_503_then_recovers_by_itself(own_postgres, tmp_path):
    url, control = own_postgres
    w = World(url, tmp_path)
    with w.server() as base:
        auth = {"Authorization": "Bearer " + w.tokens["doc"]}
        record = f"{base}/api/v1/patients/{w.pid}/record"
        assert requests.get(record, headers=auth).status_code == 200
        control["stop"]()
        for target, headers in (
            (record, auth),
            (base + "/api/v1/users/me", auth),
            (base + "/api/v1/patients", {"Authorization": "Bearer rk_not_a_token"}),
        ):
            r = requests.get(target, headers=headers)
            assert r.status_code == 503, r.text  # not stale data, not 401 as if anonymous
            assert r.headers["Content-Type"].startswith("application/problem+json")
        assert requests.get(base + "/healthz").status_code == 503
        page = requests.get(base + "/login")
        assert page.status_code in (200, 503)
        control["start"]()
        deadline = time.monotonic() + 20
        while requests.get(record, headers=auth).status_code != 200:
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.5)
        assert requests.get(base + "/healthz").status_code == 200


def test_server_killed_mid_writes_loses_no_acknowledged_write(pg_world):
    w = pg_world
    proc_holder = []
    acknowledged, stop = [], threading.Event()
    with w.server() as base:
        pass  # warm-up: the first start migrates nothing more and proves the env works
    env = w.env | {"RENKEI_PORT": str(free_port())}
    with start_server(env, handle=proc_holder) as base:

        def writer(who, section):
            version = 0
            session = requests.Session()
            while not stop.is_set():
                try:
                    r = session.put(
                        f"{base}/api/v1/patients/{w.pid}/record/{section}",
                        json={"content": {"notes" if section == "care_notes" else "cautions": f"v{version + 1}"}},
                        headers={"Authorization": "Bearer " + w.tokens[who], "If-Match": f'"{version}"'},
                        timeout=5,
                    )
                except requests.RequestException:
                    return
                if r.status_code == 200:
                    version = r.json()["version"]
                    acknowledged.append((section, version))

        threads = [
            threading.Thread(target=writer, args=a) for a in (("cm", "care_notes"), ("doc", "home_care_cautions"))
        ]
        [t.start() for t in threads]
        while len(acknowledged) < 20:
            time.sleep(0.05)
        proc_holder[0].send_signal(signal.SIGKILL)  # no shutdown, no flush: killed mid-request
        stop.set()
        [t.join(10) for t in threads]
    assert len(acknowledged) >= 20
    with w.server() as base:  # a new process on the same database
        for section in ("care_notes", "home_care_cautions"):
            versions = requests.get(
                f"{base}/api/v1/patients/{w.pid}/record/{section}/versions",
                headers={"Authorization": "Bearer " + w.tokens["cm"]},
            ).json()["items"]
            stored = {v["version"] for v in versions}
            acked = {v for s, v in acknowledged if s == section}
            assert acked <= stored
            assert sorted(stored) == list(range(1, len(stored) + 1))  # no gap, no half-write
        verify = requests.get(base + "/api/v1/audit/verify", headers={"Authorization": "Bearer " + w.tokens["admin"]})
        assert verify.json()["ok"] is True


def test_the_built_in_servers_request_log_keeps_no_query_string(pg_world):
    """Issue 29: a name sent in a query string (refused with 422) was printed in the log."""
    w = pg_world
    with w.server() as base:
        r = requests.get(
            base + "/api/v1/patients?name=山田太郎&kana=やまだ", headers={"Authorization": "Bearer " + w.tokens["cm"]}
        )
        assert r.status_code == 422
        requests.get(base + "/healthz?probe=canary-in-a-query")
        port = base.rsplit(":", 1)[1]
        log = open(os.path.join(w.env["RENKEI_INSTANCE_DIR"], f"server-{port}.log")).read()
    assert "GET /api/v1/patients" in log or "GET /healthz" in log, log[-2000:]  # the request line is there...
    assert "山田" not in log and "%E5%B1%B1" not in log and "canary-in-a-query" not in log  # ...its query is not
