"""Nothing is lost, nothing is readable at rest, nothing in the log can be altered
unnoticed. On SQLite and PostgreSQL."""

import threading

import pytest
from sqlalchemy import text

from tests.helpers import R, team

CANARY_NAME = "カナリア試験太郎"
CANARY_TEXT = "canary-7f3a9-心不全の増悪に注意"
CANARY_WEIGHT = 73.6


def test_concurrent_writers_exactly_one_wins_and_nothing_is_lost(api):
    pid = team(api)
    api.user("ns", "nurse")
    api.join(pid, "ns", "nurse", by="cm")
    writers = ["cm", "doc", "ns"] * 3
    results, barrier = {}, threading.Barrier(len(writers))

    def write(i, who):
        client = api.app.test_client()
        barrier.wait()
        r = client.put(
            f"{R}/{pid}/record/condition",
            json={"content": {"summary": f"writer {i}"}},
            headers={"Authorization": "Bearer " + api.tokens[who], "If-Match": '"0"'},
        )
        results[i] = (r.status_code, r.json)

    threads = [threading.Thread(target=write, args=(i, w)) for i, w in enumerate(writers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    codes = sorted(code for code, _ in results.values())
    assert codes == [200] + [412] * (len(writers) - 1)
    winner = next(body for code, body in results.values() if code == 200)
    # every loser was handed the winner's version to merge with
    for code, body in results.values():
        if code == 412:
            assert body["current"]["version"] == 1
            assert body["current"]["content"] == winner["content"]
    versions = api.call("cm", "GET", f"{R}/{pid}/record/condition/versions").json["items"]
    assert [v["content"] for v in versions] == [winner["content"]]
    # the loser merges and retries against the version it was given
    r = api.call(
        "doc", "PUT", f"{R}/{pid}/record/condition", {"content": {"summary": "merged"}}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json["version"] == 2
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True


def test_concurrent_notes_to_overlapping_teams_all_commit_with_gapless_event_seqs(api):
    """Two patients share a team; everybody posts at once. No write fails (a lock-order
    deadlock would surface here as a 500) and every member's events are numbered 1..N."""
    first = team(api)
    second = api.patient("cm")
    api.join(second, "doc", "primary_physician", by="cm")
    api.join(second, "pharm", "pharmacist", by="doc")
    posts = [(pid, who) for pid in (first, second) for who in ("cm", "doc", "pharm")] * 3
    codes, barrier = [], threading.Barrier(len(posts))

    def post(pid, who):
        client = api.app.test_client()
        barrier.wait()
        r = client.post(
            f"{R}/{pid}/notes",
            json={"body": "同時投稿", "category": "other"},
            headers={"Authorization": "Bearer " + api.tokens[who]},
        )
        codes.append(r.status_code)

    threads = [threading.Thread(target=post, args=p) for p in posts]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert codes == [201] * len(posts)
    from renkei.common import db

    with api.app.app_context():
        for who in ("cm", "doc", "pharm"):
            seqs = (
                db.session.execute(
                    text("SELECT seq FROM user_events WHERE user_id = :u ORDER BY seq"), {"u": api.users[who]["id"]}
                )
                .scalars()
                .all()
            )
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= len(posts)


def test_a_deadlock_victim_is_told_to_retry_not_that_the_database_is_down(sqlite_app):
    import psycopg.errors
    from sqlalchemy.exc import OperationalError

    from renkei.common import work

    with sqlite_app.test_request_context():
        database_problem = work.begin().database_problem
        victim = database_problem(OperationalError("UPDATE users ...", {}, psycopg.errors.DeadlockDetected()), "t")
        down = database_problem(OperationalError("SELECT 1", {}, psycopg.errors.ConnectionTimeout()), "t")
    assert victim.status == down.status == 503
    assert "concurrent change" in victim.detail and "not reachable" in down.detail


def _all_stored_bytes(api) -> bytes:
    """Every value of every table, as the database hands it out."""
    from models import Base
    from renkei.common import db

    chunks = []
    with api.app.app_context():
        for table in Base.metadata.sorted_tables:
            for row in db.session.execute(table.select()):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)


def _fill_with_canaries(api):
    api.user("cm", "care_manager")
    pid = api.patient("cm", name=CANARY_NAME, name_kana="かなりあしけんたろう", address="カナリア町1-1")
    api.call(
        "cm", "PUT", f"{R}/{pid}/record/care_notes", {"content": {"notes": CANARY_TEXT}}, headers={"If-Match": '"0"'}
    )
    api.call("cm", "POST", f"{R}/{pid}/notes", {"body": CANARY_TEXT, "category": "observation"})
    r = api.call(
        "cm",
        "POST",
        f"{R}/{pid}/observations",  # "73.6" cannot be part of an id or a time
        {"kind": "body_weight", "value": CANARY_WEIGHT, "note": CANARY_TEXT},
    )
    assert r.status_code == 201 and r.json["value"] == CANARY_WEIGHT
    api.call("cm", "GET", f"{R}/{pid}/record")
    assert api.call("cm", "GET", f"{R}/{pid}").json["name"] == CANARY_NAME
    return pid


def test_no_plaintext_patient_data_at_rest(api, tmp_path):
    _fill_with_canaries(api)
    stored = _all_stored_bytes(api)
    for canary in (CANARY_NAME, CANARY_TEXT, "カナリア町", "かなりあ", "1940-02-03", str(CANARY_WEIGHT)):
        assert canary.encode() not in stored
    url = api.app.config["RENKEI"].database_url
    if url.startswith("sqlite"):
        import glob

        from renkei.common import db

        db.session.remove()
        api.app.extensions["renkei.engine"].dispose()  # the last close checkpoints the WAL
        path = url.removeprefix("sqlite:///")
        raw = b"".join(open(f, "rb").read() for f in glob.glob(path + "*"))
        assert len(raw) > 10000
        for canary in (CANARY_NAME, CANARY_TEXT, str(CANARY_WEIGHT)):
            assert canary.encode() not in raw and canary.encode("utf-16-le") not in raw


def test_ciphertext_copied_to_another_row_does_not_decrypt(api):
    pid = _fill_with_canaries(api)
    other = api.patient("cm")
    for url in (f"{R}/{pid}/record/wishes", f"{R}/{other}/record/care_notes"):
        api.call(
            "cm",
            "PUT",
            url,
            {"content": {"patient_wishes": "自宅"} if "wishes" in url else {"notes": "x"}},
            headers={"If-Match": '"0"'},
        )
    from models import SectionRevision
    from renkei.common import db

    with api.app.app_context():
        revs = {(r.patient_id, r.section): r for r in db.session.query(SectionRevision)}
        stolen = revs[(pid, "care_notes")].content_ct
        revs[(pid, "wishes")].content_ct = stolen  # same patient, other section
        revs[(other, "care_notes")].content_ct = stolen  # same section, other patient
        db.session.commit()
    for target in (f"{R}/{pid}/record/wishes", f"{R}/{other}/record/care_notes"):
        r = api.call("cm", "GET", target)
        assert r.status_code == 500
        assert CANARY_TEXT not in r.get_data(as_text=True)
    assert api.call("cm", "GET", f"{R}/{pid}/record/care_notes").json["content"]["notes"] == CANARY_TEXT


def test_master_key_rotation_rewraps_data_keys(api):
    import secrets

    from renkei.common import crypto, vault
    from renkei.common.crypto import Keyring

    pid = _fill_with_canaries(api)
    old = api.app.config["RENKEI"].master_key
    new = secrets.token_bytes(32)
    with api.app.app_context():
        api.app.extensions["renkei.keyring"] = Keyring(new, [old])
        assert vault.rotate_master_key() >= 2  # the patient and the system keys
    assert api.call("cm", "GET", f"{R}/{pid}/record/care_notes").json["content"]["notes"] == CANARY_TEXT
    api.app.extensions["renkei.keyring"] = Keyring(new)  # old key retired
    assert api.call("cm", "GET", f"{R}/{pid}").json["name"] == CANARY_NAME
    api.app.extensions["renkei.keyring"] = Keyring(old)  # a wrong key reads nothing
    assert api.call("cm", "GET", f"{R}/{pid}").status_code == 500
    with pytest.raises(crypto.DecryptionError):
        crypto.unseal(new, crypto.seal(new, b"x", "patient=a"), "patient=b")


def test_access_log_holds_no_clinical_content(api):
    _fill_with_canaries(api)
    csv = api.call("admin", "GET", "/api/v1/audit/export.csv").get_data(as_text=True)
    assert "record.write" in csv and "note.create" in csv
    for canary in (CANARY_NAME, CANARY_TEXT):
        assert canary not in csv


@pytest.mark.parametrize(
    "tamper, first_bad",
    [
        ("UPDATE audit_log SET outcome = 'tampered' WHERE seq = 4", 4),
        ("UPDATE audit_log SET actor_id = NULL WHERE seq = 3", 3),
        ("DELETE FROM audit_log WHERE seq = 5", 5),
        (
            "UPDATE audit_log SET seq = CASE seq WHEN 3 THEN 1003 WHEN 4 THEN 3 END WHERE seq IN (3, 4);"
            "UPDATE audit_log SET seq = 4 WHERE seq = 1003",
            3,
        ),
    ],
)
def test_audit_tampering_is_detected(api, tamper, first_bad):
    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True
    from renkei.common import db

    with api.app.app_context():
        for statement in tamper.split(";"):
            db.session.execute(text(statement))
        db.session.commit()
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is False and result["first_bad"] == first_bad
