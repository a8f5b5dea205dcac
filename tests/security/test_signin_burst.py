"""Issue 29, finding 3: 120 sign-ins with unknown logins, 60 at a time, drained the
database pool — each held a connection while it waited for one of the two hashing
threads — so a signed-in user's reads waited 6.5 s and the sealer and the push sender
timed out. Now a sign-in waits for a place in a bounded queue before it touches the
database, holds no connection while hashing, and past the queue is shed at once."""

import threading

import pytest
from sqlalchemy import select

from models import AuditEntry
from renkei.access_log import entries
from renkei.common import db
from tests.helpers import PASSWORD, Api, R, build_app, team, template_copy

pytestmark = pytest.mark.postgres


@pytest.fixture
def busy(request):
    """On PostgreSQL (where a pool really runs out), a pool of 3 connections that answers
    503 after 1 s, real-cost password hashes (~0.1 s each) and a queue of 3 hashes."""
    with template_copy(request.getfixturevalue("pg_template"), "burst_") as url:
        app = build_app(
            url, db_pool_size=3, db_pool_timeout=1, signin_queue=3, argon2_time_cost=2, argon2_memory_cost=32768
        )
        yield Api(app)
        app.extensions["renkei.engine"].dispose()


def test_a_burst_of_sign_ins_is_shed_and_starves_no_read(busy):
    api = busy
    pid = team(api)
    answers, reads, start = [], [], threading.Barrier(41)

    def sign_in(i):
        client = api.app.test_client()
        start.wait()
        r = client.post(
            "/api/v1/auth/tokens",
            json={"login": f"nobody{i}", "password": "x" * 12},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i}"},
        )
        answers.append((r.status_code, r.headers.get("Retry-After"), r.json.get("detail")))

    def reader():
        start.wait()
        for _ in range(10):
            reads.append(api.call("doc", "GET", f"{R}/{pid}/record").status_code)

    threads = [threading.Thread(target=sign_in, args=(i,)) for i in range(40)] + [threading.Thread(target=reader)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert reads == [200] * 10  # the signed-in physician's reads were never refused
    statuses = sorted({s for s, _, _ in answers})
    assert set(statuses) <= {401, 503} and 503 in statuses, answers
    shed = {(retry, detail) for s, retry, detail in answers if s == 503}
    assert len(shed) == 1 and next(iter(shed))[0]  # one answer whatever the login, with Retry-After
    with api.app.app_context():
        entries.write_counted(everything=True)
        db.session.commit()
        summaries = db.session.execute(select(AuditEntry).where(AuditEntry.action == "auth.shed")).scalars().all()
    assert sum(int(e.detail.split(";")[0].removeprefix("count=")) for e in summaries) == sum(
        1 for s, _, _ in answers if s == 503
    )
    assert len(summaries) == len({e.client_addr for e in summaries})  # one entry per address and minute


def test_a_sign_in_holds_no_connection_while_it_hashes(busy, monkeypatch):
    """Three sign-ins hashing at once with a pool of three: a fourth request still gets a
    connection at once (before, each sign-in held one until its hash was done)."""
    from renkei.people import auth

    api = busy
    api.user("cm", "care_manager")
    hashing, release = threading.Barrier(4), threading.Event()
    slow = auth._password_ok

    def held(stored, password):
        hashing.wait()
        release.wait(10)
        return slow(stored, password)

    monkeypatch.setattr(auth, "_password_ok", held)
    threads = [
        threading.Thread(
            target=api.client.post,
            args=("/api/v1/auth/tokens",),
            kwargs={"json": {"login": "cm", "password": PASSWORD}},
        )
        for _ in range(3)
    ]
    [t.start() for t in threads]
    hashing.wait(10)  # all three are inside their hash now
    try:
        assert api.call("cm", "GET", "/api/v1/users/me").status_code == 200
    finally:
        release.set()
        [t.join() for t in threads]
