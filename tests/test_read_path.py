"""Issue 14: what an audited read costs the database, and that the cheaper path keeps
every promise of the expensive one (docs/ARCHITECTURE.md, "Round trips of a read").

Round trips are counted on the wire: libpq's protocol trace of the app's connections,
where every Query or Sync message the client sends waits for one answer."""

import os
import uuid

import pytest
from psycopg import pq
from sqlalchemy import event, select, text, update

from models import User
from renkei.access_log import entries
from renkei.common import db
from tests.helpers import days_ago, team

ON_POSTGRES = [pytest.param("postgresql", marks=pytest.mark.postgres)]


class Wire:
    """The protocol messages the app's connections send, from libpq's trace."""

    def __init__(self, engine, path):
        self.file = open(path, "w+")
        engine.dispose()  # connections made from now on are traced

        @event.listens_for(engine, "connect")
        def _trace(dbapi_conn, _record):
            dbapi_conn.prepare_threshold = None  # every statement shows its text (Parse); same round trips
            dbapi_conn.pgconn.trace(self.file.fileno())
            dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def during(self, call):
        """(round trips, SQL sent) while call() runs."""
        self.file.flush()
        start = os.lseek(self.file.fileno(), 0, os.SEEK_END)
        result = call()
        self.file.flush()
        self.file.seek(start)
        sent = [line.split("\t") for line in self.file.read().splitlines() if line.startswith("F\t")]
        trips = sum(1 for m in sent if m[2] in ("Query", "Sync"))
        # Parse: ' "" "SELECT …' (the statement's first line); Query: ' "BEGIN"'
        statements = [
            m[3].split('"', 3)[3] if m[2] == "Parse" else m[3].strip().strip('"')
            for m in sent
            if m[2] in ("Query", "Parse")
        ]
        return result, trips, statements


def writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]


def count_entries(api, action):
    with api.app.app_context():
        n = db.session.execute(text("SELECT count(*) FROM audit_log WHERE action = :a"), {"a": action}).scalar()
        db.session.commit()
        return n


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_an_audited_record_read_is_four_round_trips_and_its_writes_stay_one_transaction(api, tmp_path):
    pid = team(api)
    api.call(
        "cm",
        "PUT",
        f"/api/v1/patients/{pid}/record/home_care_cautions",
        {"content": {"cautions": "階段に注意"}},
        headers={"If-Match": '"0"'},
    )
    wire = Wire(api.app.extensions["renkei.engine"], tmp_path / "trace")
    read = lambda: api.call("doc", "GET", f"/api/v1/patients/{pid}/record")  # noqa: E731
    before = count_entries(api, "record.read")

    # The first look also moves the doctor's last look: that write and the audit entry
    # commit together or not at all.
    r, trips, sent = wire.during(read)
    assert r.status_code == 200 and r.json["sections"]["home_care_cautions"]["content"]["cautions"] == "階段に注意"
    assert sent.count("BEGIN") == sent.count("COMMIT") == 1, sent
    inside = sent[sent.index("BEGIN") + 1 : sent.index("COMMIT")]
    assert writes(sent) == writes(inside) and len(writes(inside)) == 2, sent
    assert any(w.startswith("INSERT INTO audit_log") for w in writes(inside))

    # Every later read within the minute costs four round trips (token, patient with
    # membership and consent, the sections, the audit entry) and writes its entry alone:
    # no ping, no transaction to open or close.
    for _ in range(8):  # more than psycopg's prepare threshold (5): no difference
        r, trips, sent = wire.during(read)
        assert r.status_code == 200
        assert trips <= 4, sent
        assert "BEGIN" not in sent and [w.split()[:3] for w in writes(sent)] == [["INSERT", "INTO", "audit_log"]], sent
    assert count_entries(api, "record.read") == before + 9  # each read still left its entry

    # A patient the caller may not see: still one entry, still no transaction (the
    # first one also created the key that digests typed ids).
    for _ in range(2):
        before = count_entries(api, "record.read")
        r, trips, sent = wire.during(lambda: api.call("doc", "GET", f"/api/v1/patients/{uuid.uuid4()}/record"))
        assert count_entries(api, "record.read") == before + 1
    assert r.status_code == 404 and "BEGIN" not in sent, sent
    assert [w.split()[:3] for w in writes(sent)] == [["INSERT", "INTO", "audit_log"]], sent


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_a_write_that_fails_after_its_first_statement_changes_nothing(api, monkeypatch):
    """A transaction begins only at the first write: everything after it is still atomic."""
    pid = team(api)
    path = f"/api/v1/patients/{pid}/record/home_care_cautions"
    assert api.call("cm", "PUT", path, {"content": {"cautions": "一"}}, headers={"If-Match": '"0"'}).status_code == 200

    def broken(pending, alone=False):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(entries, "write", broken)
    r = api.call("cm", "PUT", path, {"content": {"cautions": "二"}}, headers={"If-Match": '"1"'})
    assert r.status_code == 500
    monkeypatch.undo()
    after = api.call("cm", "GET", path).json
    assert (after["version"], after["content"]["cautions"]) == (1, "一")

    # The same for a unit of work whose very first statement writes.
    with api.app.app_context():
        db.session.execute(update(User).where(User.login == "cm").values(display_name="誰か"))
        db.session.execute(select(User.id)).all()
        db.session.rollback()
    assert api.call("cm", "GET", "/api/v1/users/me").json["display_name"] == "CM"


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_connections_the_database_dropped_are_replaced_after_a_pause_and_never_answer_500(api, monkeypatch, pg_server):
    pid = team(api)
    read = lambda: api.call("doc", "GET", f"/api/v1/patients/{pid}/record")  # noqa: E731
    engine = api.app.extensions["renkei.engine"]

    def drop_connections():
        admin = engine.url.set(database="postgres")
        from sqlalchemy import create_engine

        killer = create_engine(admin, isolation_level="AUTOCOMMIT")
        with killer.connect() as c:
            c.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": engine.url.database},
            )
        killer.dispose()

    assert read().status_code == 200
    # Used a moment ago: not pinged, so the first request on a dropped connection fails
    # as "try again" (503 with Retry-After) and the pool replaces its connections.
    drop_connections()
    r = read()
    assert r.status_code == 503 and r.headers["Retry-After"], r.json
    assert read().status_code == 200
    # Idle for longer than the ping interval: tested first, replaced, the request succeeds.
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0)
    drop_connections()
    assert read().status_code == 200


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_a_read_is_not_held_up_by_another_transaction_moving_the_same_last_look(api):
    """Two reads of one patient by one person at the turn of the minute both move the
    last-look mark; the second must not wait for the first (it used to wait for the
    row lock, up to the 2 s lock timeout and then 503)."""
    pid = team(api)
    engine = api.app.extensions["renkei.engine"]
    doc = api.users["doc"]["id"]
    with engine.connect() as other:  # another request, mid-transaction, holding the row
        other.execute(text("UPDATE team_members SET last_viewed_at = NULL WHERE user_id = :u"), {"u": doc})
        r = api.call("doc", "GET", f"/api/v1/patients/{pid}/record")
        assert r.status_code == 200, r.json
        other.rollback()
    r = api.call("doc", "GET", f"/api/v1/patients/{pid}/record")
    assert r.status_code == 200
    with api.app.app_context():
        mark = db.session.execute(
            text("SELECT last_viewed_at FROM team_members WHERE user_id = :u"), {"u": doc}
        ).scalar()
        db.session.commit()
    assert mark is not None  # the mark moves once the row is free


def test_a_patient_rolled_back_with_its_request_is_not_named_in_the_failure_entry(api, monkeypatch):
    """The audit entry reuses what the access check found only while that still holds:
    a registration that fails after its consent was checked leaves no patient, and its
    failure entry holds the id only as a digest, like any id that names nobody."""

    api.user("cm", "care_manager")

    def broken(*args, **kwargs):
        raise RuntimeError("failed after the consent was recorded")

    from renkei.patients import registry

    monkeypatch.setattr(registry, "patient_out", broken)
    r = api.call(
        "cm",
        "POST",
        "/api/v1/patients",
        {
            "name": "連携 花子",
            "name_kana": "れんけい はなこ",
            "birth_date": "1940-02-03",
            "sex": "female",
            "consent": {"obtained_on": str(days_ago(30)), "obtained_by": "cm", "scope": "情報共有"},
        },
    )
    assert r.status_code == 500
    with api.app.app_context():
        row = db.session.execute(text("SELECT patient_id, detail FROM audit_log WHERE action = 'patient.create'")).one()
        assert db.session.execute(text("SELECT count(*) FROM patients")).scalar() == 0
        db.session.commit()
    assert row.patient_id is None and "patient~" in row.detail, row


@pytest.mark.parametrize("database_url", ON_POSTGRES, indirect=True)
def test_after_a_shred_the_pool_still_gives_up_on_locks_after_two_seconds(api):
    """Purging a shredded patient's freed space waits up to 10 s for its lock; the
    connection it used goes back to the pool, and requests on it must keep their 2 s."""
    pid = team(api)
    assert api.call("admin", "DELETE", f"/api/v1/patients/{pid}").status_code == 204
    engine = api.app.extensions["renkei.engine"]
    held = [engine.connect() for _ in range(engine.pool.checkedin() + 1)]  # every pooled one, and a new one
    try:
        assert {c.execute(text("SHOW lock_timeout")).scalar() for c in held} == {"2s"}
    finally:
        for c in held:
            c.close()
