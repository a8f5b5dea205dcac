"""Operations: encrypted backup and a restore drill, signed audit checkpoints."""
import base64
import json
import os
import subprocess
import sys
import uuid

from sqlalchemy import text

from tests.conftest import ROOT, Api, build_app
from tests.test_api import R, team


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
                        "RENKEI_INSTANCE_DIR": str(tmp_path)}
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
