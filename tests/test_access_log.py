"""Issue 14: the access log as a Merkle tree with signed heads kept outside the database.

The proofs are checked here by verifiers written from RFC 9162 §2.1.3.2 and §2.1.4.2
and the signed note by c2sp.org/signed-note, not by the project's own code."""

import base64
import hashlib
import threading
import time
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import create_engine, select, text

from renkei.access_log import sealer
from renkei.common import db
from tests.helpers import R, team
from tests.servers import free_port, start_server


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1 over leaf hashes, by its recursive definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return H(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def rfc_inclusion_ok(leaf_index, tree_size, leaf_hash, path, root) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc_consistency_ok(first, second, first_hash, second_hash, path) -> bool:
    """RFC 9162 §2.1.4.2, step by step (first < second)."""
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = H(b"\x01" + c + fr), H(b"\x01" + c + sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = H(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


def open_signed_note(note: str, public_key_b64: str) -> list[str]:
    """c2sp.org/signed-note: the text's lines, if one signature line verifies with the key."""
    body, _, signatures = note.partition("\n\n")
    signed = (body + "\n").encode()
    public = base64.b64decode(public_key_b64)
    assert len(public) == 32
    for line in signatures.strip("\n").split("\n"):
        dash, name, blob = line.split(" ")
        assert dash == "\u2014"
        blob = base64.b64decode(blob)
        assert blob[:4] == H(name.encode() + b"\n" + b"\x01" + public)[:4]
        Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], signed)  # raises if not
        return body.split("\n")
    raise AssertionError("no signature line")


def checkpoint(api):
    cp = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    origin, size, root = open_signed_note(cp["checkpoint"], cp["public_key"])[:3]
    assert (int(size), root) == (cp["tree_size"], cp["root_hash"]) and origin
    return cp


def sql(api, *statements, **params):
    from renkei.common import db

    with api.app.app_context():
        for s in statements:
            db.session.execute(text(s), params)
        db.session.commit()


def test_proofs_verify_with_an_independent_rfc9162_verifier(api):
    pid = team(api)
    first = checkpoint(api)
    for _ in range(7):
        api.call("doc", "GET", f"{R}/{pid}/record")
    second = checkpoint(api)
    entries = [
        e for e in api.call("admin", "GET", "/api/v1/audit?limit=1000").json["items"] if e["seq"] <= second["tree_size"]
    ]  # every one has its place: reading the log seals first
    assert second["tree_size"] > first["tree_size"] >= 5 and len(entries) == second["tree_size"]
    root = base64.b64decode(second["root_hash"])
    for e in entries:
        proof = api.call(
            "admin", "GET", f"/api/v1/audit/proof/inclusion?seq={e['seq']}&tree_size={second['tree_size']}"
        ).json
        assert proof["leaf_index"] == e["seq"] - 1 and proof["leaf_hash"] == e["leaf_hash"]
        assert rfc_inclusion_ok(
            proof["leaf_index"],
            proof["tree_size"],
            base64.b64decode(proof["leaf_hash"]),
            [base64.b64decode(h) for h in proof["audit_path"]],
            root,
        )
    # a proof for the wrong root fails: the verifier above can fail
    assert not rfc_inclusion_ok(
        0,
        second["tree_size"],
        base64.b64decode(entries[0]["leaf_hash"]),
        [base64.b64decode(h) for h in proof["audit_path"]],
        root,
    )
    leaves = {e["seq"]: base64.b64decode(e["leaf_hash"]) for e in entries}
    assert mth([leaves[i] for i in range(1, second["tree_size"] + 1)]) == root
    for m in sorted({1, 2, 4, 5, first["tree_size"], second["tree_size"] - 1}):
        proof = [
            base64.b64decode(h)
            for h in api.call(
                "admin", "GET", f"/api/v1/audit/proof/consistency?first={m}&second={second['tree_size']}"
            ).json["proof"]
        ]
        old_root = mth([leaves[i] for i in range(1, m + 1)])
        assert rfc_consistency_ok(m, second["tree_size"], old_root, root, proof), m
        assert not rfc_consistency_ok(m, second["tree_size"], H(b"another tree"), root, proof)
    assert base64.b64decode(first["root_hash"]) == mth([leaves[i] for i in range(1, first["tree_size"] + 1)])
    assert api.call(
        "admin", "GET", f"/api/v1/audit/proof/consistency?first={second['tree_size']}&second={second['tree_size']}"
    ).json == {"proof": []}


def test_proof_requests_beyond_the_sealed_tree_are_422_naming_the_field(api):
    team(api)
    size = checkpoint(api)["tree_size"]
    for query, field in (
        (f"seq={size + 5}&tree_size={size}", "seq"),
        (f"seq=1&tree_size={size + 1000}", "tree_size"),
        ("seq=0&tree_size=1", "seq"),
        (f"first={size}&second={size + 1000}", "second"),
        ("first=3&second=2", "first"),
    ):
        kind = "consistency" if "first" in query else "inclusion"
        r = api.call("admin", "GET", f"/api/v1/audit/proof/{kind}?{query}")
        assert r.status_code == 422 and field in r.json["errors"], (query, r.json)


def test_only_administrators_and_auditors_get_heads_and_proofs(api):
    pid = team(api)
    for path in (
        "/api/v1/audit/checkpoint",
        "/api/v1/audit/proof/inclusion?seq=1&tree_size=1",
        "/api/v1/audit/proof/consistency?first=1&second=1",
    ):
        assert api.call("doc", "GET", path).status_code == 403
    assert api.call("doc", "GET", f"{R}/{pid}/record").status_code == 200


def test_truncation_is_found_without_a_hand_saved_checkpoint(api):
    pid = team(api)
    for _ in range(3):
        api.call("doc", "GET", f"{R}/{pid}/record")
    size = checkpoint(api)["tree_size"]
    # someone with the database removes the newest entries and points the head back
    sql(api, "DELETE FROM audit_log WHERE seq > :s OR seq IS NULL", s=size - 3)
    sql(api, "UPDATE audit_head SET tree_size = :s", s=size - 3)
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is False and result["first_bad"] == size - 2, result


def test_the_auditors_page_says_what_was_checked_and_what_a_failure_means(api):
    """The page explains the check in words an auditor reads: how many signed
    checkpoints, and on a failure what it means, what to do, and which row."""
    pid = team(api)
    for _ in range(3):
        api.call("doc", "GET", f"{R}/{pid}/record")
    api.user("aud", "other", is_auditor=True)
    web = api.web("aud")
    page = web.get("/admin/audit/verify").get_data(as_text=True)
    assert 'class="chain ok"' in page and "署名付きチェックポイント" in page and "件と照合しました" in page, page
    size = checkpoint(api)["tree_size"]
    sql(api, "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = :s", s=size - 1)
    for html in (
        web.get("/admin/audit/verify").get_data(as_text=True),
        web.get("/admin/audit?verify=1&limit=100").get_data(as_text=True),
    ):
        assert f"改ざんを検出：{size - 1}番目の記録" in html and "書き換えられたか、削除されたか" in html, html
        assert "情報セキュリティの責任者に連絡" in html and f'data-first-bad="{size - 1}"' in html
    assert f'bad-entry" data-seq="{size - 1}"' in html  # the row itself is marked on the page
    english = web.get("/admin/audit/verify?lang=en").get_data(as_text=True)
    assert "An entry was altered, deleted or moved" in english


def test_an_attacker_with_database_write_access_cannot_hide_a_removed_entry(api):
    """Remove entry k, renumber everything after it, rebuild the tiles and the head row
    from the public algorithm: without the keys the MACs and signatures cannot follow."""
    from models import AuditEntry
    from renkei.access_log import entries
    from renkei.access_log.tree import Tiles
    from renkei.common import db

    pid = team(api)
    for _ in range(4):
        api.call("doc", "GET", f"{R}/{pid}/record")
    size = checkpoint(api)["tree_size"]
    k = size - 4
    sql(api, "DELETE FROM audit_log WHERE seq = :k OR seq IS NULL", k=k)
    sql(api, "UPDATE audit_log SET seq = seq - 1 WHERE seq > :k", k=k)
    with api.app.app_context():
        rows = db.session.execute(select(AuditEntry).where(AuditEntry.seq.is_not(None)).order_by(AuditEntry.seq))
        leaves = [entries.leaf_hash_of(e) for e in rows.scalars()]
        db.session.execute(text("DELETE FROM audit_tiles"))
        tiles = Tiles()
        tiles.extend(0, leaves)
        db.session.execute(
            text("UPDATE audit_head SET tree_size = :n, root_hash = :r"),
            {"n": len(leaves), "r": tiles.root(len(leaves))},
        )
        db.session.commit()
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is False and result["first_bad"] == k, result


def test_entries_not_yet_sealed_are_reported_with_their_age(api):
    from renkei.access_log import verification

    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")
    with api.app.app_context():  # as `flask audit-verify` sees it while no sealer has run
        result = verification.verify()
    assert result["ok"] is True and result["unsealed"] >= 1 and result["unsealed_oldest_seconds"] >= 0
    after = api.call("admin", "GET", "/api/v1/audit/verify").json  # an auditor's check seals first
    assert after["ok"] is True and after["unsealed"] <= 1 and after["heads"] >= 1


def test_every_signed_head_is_kept_outside_the_database(api):
    from renkei.access_log.sinks import DirectorySink

    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")
    cp = checkpoint(api)
    sink = DirectorySink(api.app.config["RENKEI"].audit_sink)
    notes = list(sink.notes())
    assert cp["checkpoint"] in notes
    for note in notes:
        open_signed_note(note, cp["public_key"])
    files = list(sink.path.glob("heads-*.txt"))
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)


def test_notes_in_the_sink_that_our_key_did_not_sign_change_nothing_but_a_signed_one_does(api):
    """Verification checks a signature only where it decides something (a head that
    disagrees with the tree, or names entries that are gone): unsigned noise in the
    sink is counted and ignored, a head our key signed is always held to the tree."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from renkei.access_log import signed_note
    from renkei.access_log.sinks import DirectorySink

    pid = team(api)
    for _ in range(3):
        api.call("doc", "GET", f"{R}/{pid}/record")
    cp = checkpoint(api)
    size, origin = cp["tree_size"], cp["checkpoint"].split("\n")[0]
    sink = DirectorySink(api.app.config["RENKEI"].audit_sink)
    stranger = Ed25519PrivateKey.generate()
    for n, root in ((size, b"\x01" * 32), (size + 1000, b"\x02" * 32)):  # a wrong root; a longer log
        sink.append(signed_note.sign(signed_note.checkpoint_text(origin, n, root), origin, stranger))
    sink.append(f"{origin}\n{size - 1}\n{base64.b64encode(bytes(32)).decode()}\n\n\u2014 {origin} AAAA\n")
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is True and result["unverifiable_heads"] == 3 and result["heads"] >= 1, result
    # the same wrong root signed with the log's own key (someone who holds it rewrote history)
    with api.app.app_context():
        from renkei.access_log import keyring

        sink.append(keyring.keys().checkpoint(size - 1, b"\x03" * 32))
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is False and result.get("problem") in ("forked", "altered"), result


@pytest.mark.postgres
def test_a_sealer_asking_for_the_lease_while_the_holder_seals_is_told_no_at_once(pg_world):
    """Every server process's sealer asks for the lease now and then. While the holder
    seals a batch its transaction holds the lease row; the others are told no at once
    rather than waiting for the batch to end (bench/read_path.py saw them in pg_locks)."""
    w = pg_world
    engine = create_engine(w.env["RENKEI_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    with w.app.app_context():
        epoch = sealer.acquire()
        assert epoch is not None
        sealer.release(epoch)  # as the holder does when nothing waits: the lease looks free
        with engine.connect() as holder:  # the holder takes it again and seals: the row is locked
            holder.execute(text("UPDATE audit_lease SET holder = holder"))
            started = time.monotonic()
            try:
                assert sealer.acquire() is None
            finally:
                db.session.rollback()
            assert time.monotonic() - started < 1
            holder.rollback()
        db.session.remove()
    engine.dispose()


@pytest.mark.postgres
def test_two_processes_seal_every_entry_once_with_the_sealer_killed_mid_batch(pg_world):
    """Both servers append; the lease holder is killed while a batch is half written;
    the other takes over: every answered request's entry is sealed exactly once, the
    positions have no gap, and the log verifies against the heads in the sink."""
    w, procs = pg_world, []
    env = w.env | {"RENKEI_AUDIT_LEASE_SECONDS": "2"}
    engine = create_engine(w.env["RENKEI_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    unsealed = text("SELECT count(*) FROM audit_log WHERE seq IS NULL")

    def wait_until(condition, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    with (
        start_server(env | {"RENKEI_PORT": str(free_port())}, handle=procs) as a,
        start_server(env | {"RENKEI_PORT": str(free_port())}, handle=procs) as b,
    ):
        auth = {"Authorization": "Bearer " + w.tokens["doc"]}
        for base in (a, b):
            assert requests.get(f"{base}/api/v1/patients/{w.pid}/record", headers=auth).status_code == 200
        with engine.connect() as c:
            wait_until(
                lambda: (
                    c.execute(unsealed).scalar() == 0
                    and c.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
                    or c.rollback()
                )
            )
            holder = int(c.execute(text("SELECT holder FROM audit_lease")).scalar().split(":")[1])
        sealer = next(p for p in procs if p.pid == holder)
        bases = {procs[0].pid: a, procs[1].pid: b}
        answered, stop = [], threading.Event()

        def load(base):
            while not stop.is_set():
                rid = uuid.uuid4().hex
                try:
                    r = requests.get(
                        f"{base}/api/v1/patients/{w.pid}/record", timeout=5, headers=auth | {"X-Request-Id": rid}
                    )
                except requests.RequestException:
                    continue
                if r.status_code == 200:
                    answered.append(rid)

        threads = [threading.Thread(target=load, args=(base,)) for base in (a, b) for _ in range(2)]
        with engine.connect() as blocker:  # hold the head row: the next batch stops half-way
            blocker.execute(text("SELECT 1 FROM audit_head FOR UPDATE"))
            for t in threads:
                t.start()
            with engine.connect() as c:
                wait_until(
                    lambda: (
                        c.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query LIKE 'UPDATE audit_head%'"
                            )
                        ).scalar()
                        == 1
                        or c.rollback()
                    ),
                    timeout=10,
                )
                half_written = c.execute(text("SELECT count(*) FROM audit_log WHERE seq IS NULL")).scalar()
            sealer.kill()  # mid-batch: its seq assignments and tiles are uncommitted
            sealer.wait()
            blocker.rollback()
        survivor = bases[next(p.pid for p in procs if p.pid != holder)]
        time.sleep(3)  # load on the survivor while it takes the lease over
        stop.set()
        for t in threads:
            t.join()
        with engine.connect() as c:
            wait_until(lambda: c.execute(unsealed).scalar() == 0 or c.rollback(), timeout=30)
            count, placed, distinct, low, high = c.execute(
                text("SELECT count(*), count(seq), count(DISTINCT seq), min(seq), max(seq) FROM audit_log")
            ).one()
            ids = [r for (r,) in c.execute(text("SELECT request_id FROM audit_log WHERE action = 'record.read'"))]
        assert half_written > 0 and len(answered) > 50
        assert count == placed == distinct == high and low == 1  # gapless, each once
        assert all(ids.count(rid) == 1 for rid in answered)
        check = requests.get(
            survivor + "/api/v1/audit/verify", headers={"Authorization": "Bearer " + w.tokens["admin"]}
        ).json()
        assert check["ok"] is True and check["heads"] >= 2 and check["entries"] >= count, check
    engine.dispose()


def test_the_hash_chained_log_becomes_the_first_leaves_in_its_order(api):
    """Migration 0010: the old chain is verified once (a broken one stops the upgrade,
    changing nothing), then its entries become the tree's first leaves, same numbers."""
    from alembic import command

    from renkei.migrations import alembic_config

    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")
    api.call("pharm", "GET", f"{R}/{pid}/record")
    engine = api.app.extensions["renkei.engine"]

    def migrate(step, revision):
        with api.app.app_context(), engine.begin() as conn:
            step(alembic_config(conn), revision)

    migrate(command.downgrade, "0009")
    with engine.connect() as c:
        chain = c.execute(text("SELECT seq, action, outcome, actor_id FROM audit_log ORDER BY seq")).all()
    assert len(chain) > 10 and [r.seq for r in chain] == list(range(1, len(chain) + 1))
    sql(api, "UPDATE audit_log SET outcome = 'tampered' WHERE seq = 7")
    with pytest.raises(RuntimeError, match="does not verify at entry 7"):
        migrate(command.upgrade, "head")
    with engine.connect() as c:  # nothing changed: still the chain
        assert c.execute(text("SELECT count(*) FROM audit_log WHERE prev_hash IS NOT NULL")).scalar() == len(chain)
    sql(api, "UPDATE audit_log SET outcome = :o WHERE seq = 7", o=chain[6].outcome)
    migrate(command.upgrade, "head")
    entries = api.call("admin", "GET", "/api/v1/audit?limit=1000").json["items"][::-1]
    assert [(e["seq"], e["action"], e["outcome"], e["actor_id"]) for e in entries[: len(chain)]] == [
        tuple(r) for r in chain
    ]
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True


def test_the_database_builds_each_leaf_exactly_as_the_sealer_does(api):
    """Verification reads each leaf's text as the database builds it (fast); the sealer
    builds it in Python. Both must agree to the byte — also for a time on the second,
    empty fields and non-ASCII detail. A row whose text could be read two ways (an empty
    string where the log keeps NULL, a separator inside a field) is found."""
    from datetime import datetime, timedelta

    from models import AuditEntry
    from renkei.access_log import entries, merkle, sealer, verification
    from renkei.common import db

    team(api)
    with api.app.app_context():
        entries.write(
            [
                entries.Pending(
                    action="audit.read",
                    outcome="ok",
                    at=datetime.now().replace(microsecond=0) - timedelta(days=1),
                    detail="name~検索;x=1",
                ),
                entries.Pending(action="login.password", outcome="denied", detail=""),
                entries.Pending(action="audit.read", outcome="ok", detail="back\\slash\ttab\nline"),
            ]
        )
        db.session.commit()
        sealer.seal_all()
        rows = db.session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
        texts = list(verification.leaf_texts(0))
        assert len(texts) == len(rows) > 5
        for (seq, text_, odd), e in zip(texts, rows):
            assert seq == e.seq and not odd and merkle.leaf_hash(text_.encode()) == entries.leaf_hash_of(e)
        original = {e.seq: (e.client_addr, e.request_id, e.detail) for e in rows[:3]}
        assert all(original[2][:2])
        db.session.rollback()
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True  # the fast path reads them alike
    sep = "char(30)" if api.app.config["RENKEI"].database_url.startswith("sqlite") else "chr(30)"
    for seq, tamper in (
        (3, "UPDATE audit_log SET detail = '' WHERE seq = 3"),
        # the same text: address and request id made one field
        (2, f"UPDATE audit_log SET client_addr = client_addr || {sep} || request_id, request_id = NULL WHERE seq = 2"),
    ):
        assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True
        sql(api, tamper)
        result = api.call("admin", "GET", "/api/v1/audit/verify").json
        assert result["ok"] is False and result["first_bad"] == seq, (tamper, result)
        sql(
            api,
            "UPDATE audit_log SET client_addr = :a, request_id = :o, detail = :d WHERE seq = :s",
            a=original[seq][0],
            o=original[seq][1],
            d=original[seq][2],
            s=seq,
        )


def test_what_a_database_writer_tries_after_the_review_is_found(api):
    """The security review's findings: values stored another way (SQLite keeps any type
    in any column; PostgreSQL times to_char cannot write alike), a forged non-ASCII MAC,
    a lease pushed into the far future to stop sealing, and entries left waiting."""
    from datetime import timedelta

    from models import utcnow
    from renkei.access_log import entries, verification
    from renkei.common import db

    pid = team(api)
    for _ in range(3):
        api.call("doc", "GET", f"{R}/{pid}/record")
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True
    sqlite = api.app.config["RENKEI"].database_url.startswith("sqlite")
    tampers = (
        [
            (3, "UPDATE audit_log SET patient_id = CAST(actor_id AS BLOB) WHERE seq = 3"),
            (4, "UPDATE audit_log SET at = replace(at, ' ', 'T') WHERE seq = 4"),
        ]
        if sqlite
        else [(3, "UPDATE audit_log SET at = 'infinity' WHERE seq = 3")]
    )
    tampers.append((5, "UPDATE audit_log SET mac = substr(mac, 1, 8) || 'é' WHERE seq = 5"))
    with api.app.app_context():
        before = {
            r[0]: r
            for r in db.session.execute(text("SELECT seq, at, patient_id, mac FROM audit_log WHERE seq IN (3, 4, 5)"))
        }
    for seq, tamper in tampers:
        sql(api, tamper)
        result = api.call("admin", "GET", "/api/v1/audit/verify").json
        assert result["ok"] is False and result["first_bad"] == seq, (tamper, result)
        sql(
            api,
            "UPDATE audit_log SET at = :at, patient_id = :p, mac = :m WHERE seq = :s",
            at=before[seq][1],
            p=before[seq][2],
            m=before[seq][3],
            s=seq,
        )
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True
    # a lease written far ahead does not stop sealing
    sql(api, "UPDATE audit_lease SET epoch = epoch + 1, expires_at = :t", t=utcnow() + timedelta(days=3650))
    api.call("doc", "GET", f"{R}/{pid}/record")
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is True and result["unsealed"] <= 1
    # entries left waiting for a minute mean nobody seals: not "ok"
    with api.app.app_context():
        entries.write([entries.Pending(action="record.read", outcome="ok", at=utcnow() - timedelta(minutes=2))])
        db.session.commit()
        stalled = verification.verify()
    assert stalled["ok"] is False and "sealer is not running" in stalled["reason"]


def test_an_anchor_signed_with_a_leaked_key_cannot_cut_the_log_short(api):
    """Whoever holds an old audit key and the database could sign an archive anchor and
    delete the entries before it; the anchor is also kept in the sink, so it does not fit."""
    from datetime import datetime, timedelta

    from models import AuditAnchor
    from renkei.access_log.tree import Tiles
    from renkei.common import db

    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True
    with api.app.app_context():
        from renkei.access_log import keyring

        note = keyring.keys().anchor(6, Tiles().root(6))
        db.session.add(AuditAnchor(seq=6, note=note, entries=6, archived_at=datetime.now() - timedelta(days=30)))
        db.session.execute(text("DELETE FROM audit_log WHERE seq <= 6"))
        db.session.commit()
    result = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert result["ok"] is False and "anchor" in result["reason"]


@pytest.mark.slow
@pytest.mark.postgres
def test_every_verification_answers_under_gunicorn_as_deployed(pg_world):
    """Issue 29: under gunicorn's gevent worker the heads were read on a thread without
    the app context, so the API, the checkpoint check and the auditor's page said 500."""
    import pyotp

    from tests.helpers import PASSWORD

    w = pg_world
    admin = {"Authorization": "Bearer " + w.tokens["admin"]}
    with w.server(gunicorn=True) as base:
        requests.get(f"{base}/api/v1/patients/{w.pid}/record", headers={"Authorization": "Bearer " + w.tokens["doc"]})
        verified = requests.get(base + "/api/v1/audit/verify", headers=admin)
        assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text
        cp = requests.get(base + "/api/v1/audit/checkpoint", headers=admin).json()
        checked = requests.post(
            base + "/api/v1/audit/checkpoint/verify", json={"checkpoint": cp["checkpoint"]}, headers=admin
        )
        assert checked.status_code == 200 and checked.json()["ok"] is True, checked.text
        # The session cookie is Secure (not embedded): sent by hand over this plain HTTP.
        form = requests.get(base + "/login")
        csrf = form.text.split('name="csrf_token" value="')[1].split('"')[0]
        otp = pyotp.TOTP(w.api.admin_totp).at(time.time() + 30)  # the API sign-in used this step's code
        signed = requests.post(
            base + "/login",
            allow_redirects=False,
            cookies={"session": form.cookies["session"]},
            data={"login": "admin", "password": PASSWORD, "otp": otp, "csrf_token": csrf},
        )
        assert signed.status_code == 302
        shown = requests.get(base + "/admin/audit/verify", cookies={"session": signed.cookies["session"]})
        assert shown.status_code == 200 and 'class="chain ok"' in shown.text and "件と照合しました" in shown.text
