"""Operations: encrypted backup and a restore drill, signed audit checkpoints."""
import base64
import csv
import io
import json
import os
import subprocess
import sys
import uuid

from sqlalchemy import text

from tests.helpers import ROOT, Api, build_app
from tests.helpers import R, team


def flask(args, url, master: bytes, tmp_path):
    env = os.environ | {"RENKEI_DATABASE_URL": url, "RENKEI_MASTER_KEY": base64.b64encode(master).decode(),
                        "RENKEI_INSTANCE_DIR": str(tmp_path), "RENKEI_SECRET_KEY": "x" * 32}
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


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
    contents = {"adl": {"eating": {"level": "supervision", "note": "バックアップ確認"}},
                "diseases_medications": {"medications": [{"name": "復元テスト錠"}]}}
    for section, content in contents.items():
        api.call("doc", "PUT", f"{R}/{pid}/record/{section}", {"content": content}, headers={"If-Match": '"0"'})
    api.call("cm", "POST", f"{R}/{pid}/notes", {"body": "復元後も読めること", "category": "other"})
    settings = api.app.config["RENKEI"]
    from renkei import db
    db.session.remove()
    file = tmp_path / "renkei.backup"
    flask(["backup", "--out", str(file)], settings.database_url, settings.master_key, tmp_path)
    raw = file.read_bytes()
    assert raw.startswith(b"RENKEI-BACKUP-1\n")
    for plain in ("バックアップ確認", "audit_log", "section_revisions"):
        assert plain.encode() not in raw and plain.encode("utf-16-le") not in raw

    target = _empty_database_like(settings.database_url, request, tmp_path)
    flask(["restore", "--src", str(file), "--yes"], target, settings.master_key, tmp_path)
    restored = build_app(target, settings.master_key)
    restored_api = Api.__new__(Api)
    restored_api.app, restored_api.client, restored_api.tokens = restored, restored.test_client(), {}
    restored_api.tokens["doc"] = restored_api.sign_in("doc", "correct horse battery")
    record = restored_api.call("doc", "GET", f"{R}/{pid}/record").json["sections"]
    for section, content in contents.items():
        assert record[section]["content"] == content
    notes = restored_api.call("doc", "GET", f"{R}/{pid}/notes").json["items"]
    assert notes[0]["body"] == "復元後も読めること"
    with restored.app_context():
        from renkei import audit
        assert audit.verify()["ok"] is True
    restored.extensions["renkei.engine"].dispose()
    # a backup is useless without the master key
    env_key = os.urandom(32)
    env = os.environ | {"RENKEI_DATABASE_URL": target, "RENKEI_MASTER_KEY": base64.b64encode(env_key).decode(),
                        "RENKEI_SECRET_KEY": "x" * 32, "RENKEI_INSTANCE_DIR": str(tmp_path)}
    wrong = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "restore", "--src", str(file), "--yes"],
                           cwd=ROOT, env=env, capture_output=True, text=True)
    assert wrong.returncode != 0


def test_signed_checkpoint_detects_truncation(api):
    team(api)
    cp = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    assert set(cp) == {"seq", "hash", "at", "public_key", "signature"}
    assert api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", cp).json["ok"] is True
    forged = dict(cp, seq=cp["seq"] - 1)
    assert api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", forged).json == {"ok": False, "reason": "signature"}
    from renkei import db
    with api.app.app_context():  # someone removes the newest entries, hiding what happened
        db.session.execute(text("DELETE FROM audit_log WHERE seq >= :s"), {"s": cp["seq"] - 2})
        db.session.commit()
    assert api.call("admin", "GET", "/api/v1/audit/verify").json["ok"] is True  # the chain alone cannot tell
    result = api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", cp).json
    assert result["ok"] is False and result["reason"] == "truncated or rewritten"


def test_checkpoint_commands(sqlite_app, tmp_path):
    settings = sqlite_app.config["RENKEI"]
    Api(sqlite_app)
    from renkei import db
    db.session.remove()
    cp = json.loads(flask(["audit-checkpoint"], settings.database_url, settings.master_key, tmp_path))
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(cp))
    assert json.loads(flask(["audit-verify", "--checkpoint", str(path)], settings.database_url,
                            settings.master_key, tmp_path))["ok"] is True


def run_flask(args, settings, tmp_path):
    env = os.environ | {"RENKEI_DATABASE_URL": settings.database_url, "RENKEI_INSTANCE_DIR": str(tmp_path),
                        "RENKEI_MASTER_KEY": base64.b64encode(settings.master_key).decode(),
                        "RENKEI_SECRET_KEY": "x" * 32}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_retention_archives_old_entries_and_the_rest_still_verifies(api, tmp_path):
    from renkei import db
    from renkei.timefmt import iso
    from models import utcnow
    pid = team(api)
    api.call("doc", "GET", f"{R}/{pid}/record")  # evidence that will be archived
    old_cp = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    cutoff = iso(utcnow())
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
    assert result["through_seq"] > old_cp["seq"] and result["archived"] == result["through_seq"]

    live = api.call("admin", "GET", "/api/v1/audit/verify").json
    assert live["ok"] is True and live["first_bad"] is None
    reads = api.call("admin", "GET", f"/api/v1/audit?patient_id={pid}&action=record.read").json["items"]
    assert [r["actor_id"] for r in reads] == [api.users["cm"]["id"]]  # the physician's read is archived
    assert api.call("admin", "GET", "/api/v1/audit?action=audit.archive").json["items"][0]["detail"] == \
        f"through={result['through_seq']};entries={result['archived']}"
    moved = api.call("admin", "POST", "/api/v1/audit/checkpoint/verify", old_cp).json
    assert moved["ok"] is False and moved["reason"].startswith("archived")
    # the auditor's page says where the live log begins, and verifies on request without JavaScript
    api.user("aud", "other", is_auditor=True)
    web = api.web("aud")
    page = web.get("/admin/audit").get_data(as_text=True)
    assert f"#{result['through_seq']} までの記録はアーカイブ済み" in page and 'class="chain ok"' not in page
    assert '<p class="chain ok" id="chain-status">' in web.get("/admin/audit?verify=1").get_data(as_text=True)

    raw = file.read_bytes()
    assert pid.encode() not in raw and b"record.read" not in raw
    cp_file = tmp_path / "cp.json"
    cp_file.write_text(json.dumps(old_cp))
    checked = run_flask(["audit-verify", "--archive", str(file), "--checkpoint", str(cp_file)], settings, tmp_path)
    assert checked.returncode == 0 and json.loads(checked.stdout) | {"entries": 0} == {
        "ok": True, "entries": 0, "from_seq": 1, "through_seq": result["through_seq"]}
    (tmp_path / "now.json").write_text(json.dumps(api.call("admin", "GET", "/api/v1/audit/checkpoint").json))
    elsewhere = run_flask(["audit-verify", "--archive", str(file), "--checkpoint", str(tmp_path / "now.json")],
                          settings, tmp_path)
    assert elsewhere.returncode == 1 and "checkpoint not in this archive" in elsewhere.stdout
    rows = list(csv.DictReader(io.StringIO(run_flask(["audit-export", "--archive", str(file)], settings, tmp_path).stdout)))
    assert len(rows) == result["archived"]
    assert {"actor_id": api.users["doc"]["id"], "action": "record.read"}.items() <= \
        next(r for r in rows if r["patient_id"] == pid and r["action"] == "record.read").items()

    (tmp_path / "cut.archive").write_bytes(raw[:-20])
    cut = run_flask(["audit-verify", "--archive", str(tmp_path / "cut.archive")], settings, tmp_path)
    assert cut.returncode == 1 and "cut short" in cut.stdout

    def verify_after(sql, **params):
        with api.app.app_context():
            db.session.execute(text(sql), params)
            db.session.commit()
        return api.call("admin", "GET", "/api/v1/audit/verify").json["ok"]
    # someone cuts more off the beginning and moves the anchor along: its signature no longer fits
    anchor_seq = result["through_seq"]
    with api.app.app_context():
        nxt = db.session.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq LIMIT 1")).one()
    assert verify_after("DELETE FROM audit_log WHERE seq = :s", s=nxt.seq) is False
    assert verify_after("UPDATE audit_anchors SET seq = :s, hash = :h WHERE seq = :a",
                        s=nxt.seq, h=nxt.hash, a=anchor_seq) is False
    # ... or plants an auditor's checkpoint as the anchor: signed for another purpose
    cp = api.call("admin", "GET", "/api/v1/audit/checkpoint").json
    assert verify_after("UPDATE audit_anchors SET seq = :s, hash = :h, at = :at, signature = :sig",
                        s=cp["seq"], h=cp["hash"], at=cp["at"], sig=cp["signature"]) is False
    refused = run_flask(["audit-archive", "--out", str(tmp_path / "again.archive"), "--before", iso(utcnow())],
                        settings, tmp_path)
    assert refused.returncode != 0 and "does not verify" in refused.stderr
    assert not (tmp_path / "again.archive").exists()
