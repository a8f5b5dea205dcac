"""Operations: encrypted backup and a restore drill, signed audit checkpoints."""

import base64
import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid

from sqlalchemy import text

from tests.helpers import ROOT, Api, R, build_app, team
from tests.test_attachments import pdf, upload


def audit_env(settings, tmp_path) -> dict:
    """The test app's audit key and sink, for a command run as a separate process."""
    key_file = tmp_path / "audit.keys"
    key_file.write_text("".join(base64.b64encode(k).decode() + "\n" for k in settings.audit_keys))
    return {"RENKEI_AUDIT_KEY_FILE": str(key_file), "RENKEI_AUDIT_SINK": str(settings.audit_sink)}


def flask(args, url, master: bytes, tmp_path, **env):
    env = (
        os.environ
        | {
            "RENKEI_DATABASE_URL": url,
            "RENKEI_MASTER_KEY": base64.b64encode(master).decode(),
            "RENKEI_INSTANCE_DIR": str(tmp_path),
            "RENKEI_SECRET_KEY": "x" * 32,
        }
        | env
    )
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def flask_fails(args, url, master: bytes, tmp_path) -> str:
    env = os.environ | {
        "RENKEI_DATABASE_URL": url,
        "RENKEI_MASTER_KEY": base64.b64encode(master).decode(),
        "RENKEI_INSTANCE_DIR": str(tmp_path),
        "RENKEI_SECRET_KEY": "x" * 32,
    }
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    return out.stdout + out.stderr


def _empty_database_like(url, request, tmp_path):
    if url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/restored.db"
    admin = request.getfixturevalue("pg_template")
    name = "restore_" + uuid.uuid4().hex[:8]
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    return admin.url.set(database=name).render_as_string(hide_password=False)


def test_backup_is_encrypted_and_a_restore_drill_reads_everything(api, request, tmp_path):
    pid = team(api)
    contents = {
        "adl": {"eating": {"level": "supervision", "note": "バックアップ確認"}},
        "diseases_medications": {"medications": [{"name": "復元テスト錠"}]},
    }
    for section, content in contents.items():
        api.call("doc", "PUT", f"{R}/{pid}/record/{section}", {"content": content}, headers={"If-Match": '"0"'})
    api.call("cm", "POST", f"{R}/{pid}/notes", {"body": "復元後も読めること", "category": "other"})
    letter = pdf(300_000, b"BACKUP-CANARY-51")  # an attachment of several frames rides along
    aid = upload(api, "doc", pid, letter, filename="紹介状.pdf", mimetype="application/pdf").json["id"]
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True  # sealed, heads signed
    settings = api.app.config["RENKEI"]
    from renkei.common import db

    db.session.remove()
    file = tmp_path / "renkei.backup"
    flask(["backup", "--out", str(file)], settings.database_url, settings.master_key, tmp_path)
    raw = file.read_bytes()
    assert raw.startswith(b"RENKEI-BACKUP-2\n")
    for plain in ("バックアップ確認", "audit_log", "section_revisions", "BACKUP-CANARY-51"):
        assert plain.encode() not in raw and plain.encode("utf-16-le") not in raw

    # A backup altered or cut short is refused before the target changes.
    target = _empty_database_like(settings.database_url, request, tmp_path)
    for name, damaged in (
        ("flipped", raw[: len(raw) // 2] + bytes([raw[len(raw) // 2] ^ 1]) + raw[len(raw) // 2 + 1 :]),
        ("cut", raw[: len(raw) - 70_000]),
    ):
        bad = tmp_path / f"{name}.backup"
        bad.write_bytes(damaged)
        out = flask_fails(["restore", "--src", str(bad), "--yes"], target, settings.master_key, tmp_path)
        assert "altered or cut short" in out
    if target.startswith("sqlite"):
        assert not os.path.exists(target.removeprefix("sqlite:///"))

    target = _empty_database_like(settings.database_url, request, tmp_path)
    flask(["restore", "--src", str(file), "--yes"], target, settings.master_key, tmp_path)
    restored = build_app(target, settings.master_key, audit_keys=settings.audit_keys, audit_sink=settings.audit_sink)
    restored_api = Api.__new__(Api)
    restored_api.app, restored_api.client, restored_api.tokens = restored, restored.test_client(), {}
    restored_api.totps, restored_api.otp_steps = api.totps, api.otp_steps  # the same people, restored
    restored_api.tokens["doc"] = restored_api.sign_in("doc", "correct horse battery")
    record = restored_api.call("doc", "GET", f"{R}/{pid}/record").json["sections"]
    for section, content in contents.items():
        without_row_ids = {
            k: [{f: v for f, v in row.items() if f != "id"} for row in v] if isinstance(v, list) else v
            for k, v in record[section]["content"].items()
        }  # list rows gained their ids on save (renkei/sections/rows.py)
        assert without_row_ids == content
    notes = restored_api.call("doc", "GET", f"{R}/{pid}/notes").json["items"]
    assert notes[0]["body"] == "復元後も読めること"
    assert restored_api.call("doc", "GET", f"{R}/{pid}/attachments/{aid}").data == letter
    with restored.app_context():
        from renkei.access_log import verification

        restored_log = verification.verify()  # the same audit key and heads: the log restored verifies
        assert restored_log["ok"] is True and restored_log["heads"] >= 1 and restored_log["entries"] > 10
    restored.extensions["renkei.engine"].dispose()
    # a backup is useless without the master key
    env_key = os.urandom(32)
    env = os.environ | {
        "RENKEI_DATABASE_URL": target,
        "RENKEI_MASTER_KEY": base64.b64encode(env_key).decode(),
        "RENKEI_SECRET_KEY": "x" * 32,
        "RENKEI_INSTANCE_DIR": str(tmp_path),
    }
    wrong = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "restore", "--src", str(file), "--yes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert wrong.returncode != 0


def test_a_kept_signed_head_is_checked_against_the_log(api):
    """An auditor's copy of a head (issue 14: the hand-saved checkpoints become signed
    notes) still verifies while the log holds its entries, and not once they are cut."""
    team(api)
    note = api.call("admin", "GET", "/api/v1/audit/checkpoint").json["checkpoint"]
    assert api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", {"checkpoint": note}).json["ok"] is True
    lines = note.split("\n")
    forged = "\n".join([lines[0], str(int(lines[1]) - 1)] + lines[2:])
    assert api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", {"checkpoint": forged}).json == {
        "ok": False,
        "reason": "signature",
    }
    size = int(lines[1])
    from renkei.common import db

    with api.app.app_context():  # someone removes the newest entries, hiding what happened
        db.session.execute(text("DELETE FROM audit_log WHERE seq >= :s OR seq IS NULL"), {"s": size - 2})
        db.session.commit()
    result = api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", {"checkpoint": note}).json
    assert result["ok"] is False and result["first_bad"] == size - 2


def test_checkpoint_commands(sqlite_app, tmp_path):
    settings = sqlite_app.config["RENKEI"]
    Api(sqlite_app)
    from renkei.common import db

    db.session.remove()
    env = audit_env(settings, tmp_path)
    assert json.loads(flask(["audit-seal"], settings.database_url, settings.master_key, tmp_path, **env)) == {
        "sealed": 2,
        "unsealed": 0,
        "unsealed_oldest_seconds": 0,
    }  # sign-in, organisation
    note = flask(["audit-checkpoint"], settings.database_url, settings.master_key, tmp_path, **env)
    assert note.split("\n")[:2] == ["renkei/audit-log", "2"]
    path = tmp_path / "head.txt"
    path.write_text(note)
    assert (
        json.loads(
            flask(
                ["audit-verify", "--checkpoint", str(path)], settings.database_url, settings.master_key, tmp_path, **env
            )
        )["ok"]
        is True
    )


def run_flask(args, settings, tmp_path):
    env = (
        os.environ
        | {
            "RENKEI_DATABASE_URL": settings.database_url,
            "RENKEI_INSTANCE_DIR": str(tmp_path),
            "RENKEI_MASTER_KEY": base64.b64encode(settings.master_key).decode(),
            "RENKEI_SECRET_KEY": "x" * 32,
        }
        | audit_env(settings, tmp_path)
    )
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_retention_archives_old_entries_and_the_rest_still_verifies(api, tmp_path):
    from models import utcnow
    from renkei.common import db
    from renkei.common.timefmt import iso

    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")  # evidence that will be archived
    old_cp = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    time.sleep(0.002)  # the cutoff is in milliseconds: strictly between the two requests
    cutoff = iso(utcnow())
    time.sleep(0.002)
    api.call("cm", "GET", f"{R}/{pid}/record")  # stays in the live log
    settings = api.app.config["RENKEI"]
    db.session.remove()
    file = tmp_path / "audit-2026.archive"

    assert json.loads(run_flask(["audit-archive", "--out", str(file)], settings, tmp_path).stdout)["archived"] == 0
    out = run_flask(["audit-archive", "--out", str(file), "--before", cutoff], settings, tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    again = run_flask(["audit-archive", "--out", str(file), "--before", iso(utcnow())], settings, tmp_path)
    assert again.returncode != 0 and "exists" in again.stderr  # an archive is never overwritten
    assert result["through_seq"] > old_cp["tree_size"] and result["archived"] == result["through_seq"]

    live = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert live["ok"] is True and live["first_bad"] is None and live["archived_through"] == result["through_seq"]
    reads = api.call("admin", "GET", f"/api/v1/audit?patient_id={pid}&action=record.read").json["items"]
    assert [r["actor_id"] for r in reads] == [api.users["cm"]["id"]]  # the physician's read is archived
    assert (
        api.call("admin", "GET", "/api/v1/audit?action=audit.archive").json["items"][0]["detail"]
        == f"through={result['through_seq']};entries={result['archived']}"
    )
    moved = api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", {"checkpoint": old_cp["checkpoint"]}).json
    assert moved["ok"] is False and moved["reason"].startswith("archived")
    # archived entries keep their places in the tree: their proofs still verify
    from tests.test_access_log import rfc_inclusion_ok

    now = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    proof = api.call("admin", "GET", f"/api/v1/audit/proof/inclusion?seq=2&tree_size={now['tree_size']}").json
    assert rfc_inclusion_ok(
        1,
        now["tree_size"],
        base64.b64decode(proof["leaf_hash"]),
        [base64.b64decode(h) for h in proof["audit_path"]],
        base64.b64decode(now["root_hash"]),
    )
    # the auditor's page says where the live log begins, and verifies on request without JavaScript
    api.user("aud", "other", is_auditor=True)
    web = api.web("aud")
    page = web.get("/admin/audit").get_data(as_text=True)
    assert f"#{result['through_seq']} までの記録はアーカイブ済み" in page and 'class="chain ok"' not in page
    assert 'class="chain ok" id="chain-status"' in web.get("/admin/audit?verify=1").get_data(as_text=True)

    raw = file.read_bytes()
    assert pid.encode() not in raw and b"record.read" not in raw
    cp_file = tmp_path / "head.txt"
    cp_file.write_text(old_cp["checkpoint"])
    checked = run_flask(["audit-verify", "--archive", str(file), "--checkpoint", str(cp_file)], settings, tmp_path)
    assert checked.returncode == 0 and json.loads(checked.stdout) | {"entries": 0} == {
        "ok": True,
        "entries": 0,
        "from_seq": 1,
        "through_seq": result["through_seq"],
    }
    (tmp_path / "now.txt").write_text(now["checkpoint"])
    elsewhere = run_flask(
        ["audit-verify", "--archive", str(file), "--checkpoint", str(tmp_path / "now.txt")], settings, tmp_path
    )
    assert elsewhere.returncode == 1 and "checkpoint not in this archive" in elsewhere.stdout
    rows = list(
        csv.DictReader(io.StringIO(run_flask(["audit-export", "--archive", str(file)], settings, tmp_path).stdout))
    )
    assert len(rows) == result["archived"]
    assert {"actor_id": api.users["doc"]["id"], "action": "record.read"}.items() <= next(
        r for r in rows if r["patient_id"] == pid and r["action"] == "record.read"
    ).items()

    (tmp_path / "cut.archive").write_bytes(raw[:-20])
    cut = run_flask(["audit-verify", "--archive", str(tmp_path / "cut.archive")], settings, tmp_path)
    assert cut.returncode == 1 and "cut short" in cut.stdout

    def verify_after(sql, **params):
        with api.app.app_context():
            db.session.execute(text(sql), params)
            db.session.commit()
        return api.call("admin", "GET", "/api/v1/audit/verify").json["ok"]

    anchor = result["through_seq"]
    with api.app.app_context():
        nxt = db.session.execute(text("SELECT seq FROM audit_log WHERE seq IS NOT NULL ORDER BY seq LIMIT 1")).scalar()
        note = db.session.execute(text("SELECT note FROM audit_anchors")).scalar()
    # someone moves the anchor along to hide the next entries: its signed size no longer fits ...
    assert verify_after("UPDATE audit_anchors SET seq = :s WHERE seq = :a", s=nxt + 3, a=anchor) is False
    assert verify_after("UPDATE audit_anchors SET seq = :a WHERE seq = :s", s=nxt + 3, a=anchor) is True
    # ... or plants an auditor's signed tree head as the anchor: signed as another thing
    assert (
        verify_after("UPDATE audit_anchors SET seq = :s, note = :n", s=now["tree_size"], n=now["checkpoint"]) is False
    )
    assert verify_after("UPDATE audit_anchors SET seq = :a, note = :n", a=anchor, n=note) is True
    # ... or cuts more off the beginning
    assert verify_after("DELETE FROM audit_log WHERE seq = :s", s=nxt) is False
    refused = run_flask(
        ["audit-archive", "--out", str(tmp_path / "again.archive"), "--before", iso(utcnow())], settings, tmp_path
    )
    assert refused.returncode != 0 and "does not verify" in refused.stderr
    assert not (tmp_path / "again.archive").exists()


def test_a_backup_streams_and_an_old_one_still_restores(sqlite_api, tmp_path):
    """Format 2 seals the dump frame by frame as it is read: memory stays flat with tens
    of megabytes of attachments. A format-1 file (one sealed message) still restores."""
    import tracemalloc

    from renkei.common import backup, crypto

    api = sqlite_api
    pid = team(api)
    for i in range(3):
        assert upload(api, "doc", pid, pdf(8_000_000, b"BIG-%d" % i), filename="scan.pdf").status_code == 201
    settings = api.app.config["RENKEI"]
    out = tmp_path / "big.backup"
    tracemalloc.start()
    size = backup.backup(settings.database_url, settings.master_key, out)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size > 24_000_000 and peak < 8_000_000, (size, peak)

    old = tmp_path / "old.backup"
    dump = b"".join(backup._plain_frames(settings.master_key, out))
    old.write_bytes(backup.MAGIC + crypto.seal(backup.file_key(settings.master_key, "backup"), dump, "backup"))
    target = f"sqlite:///{tmp_path}/from-old.db"
    backup.restore(target, settings.master_key, old)
    restored = build_app(target, settings.master_key)
    client = restored.test_client()
    token = client.post(
        "/api/v1/auth/tokens", json={"login": "doc", "password": "correct horse battery", "otp": api.otp("doc")}
    ).json["token"]
    items = client.get(f"{R}/{pid}/attachments", headers={"Authorization": "Bearer " + token}).json["items"]
    assert len(items) == 3
    restored.extensions["renkei.engine"].dispose()
