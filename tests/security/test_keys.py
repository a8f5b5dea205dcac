"""Finding 7: outside the embedded default, a process without its keys stops with a
clear error instead of generating keys of its own beside the code."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, random_master_key


def _flask(args, env, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=base | {"RENKEI_INSTANCE_DIR": str(tmp_path)} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("missing", ["RENKEI_MASTER_KEY", "RENKEI_SECRET_KEY", "RENKEI_AUDIT_KEY_FILE"])
@pytest.mark.parametrize("command", [["init-db"], ["create-admin", "--login", "root", "--password", "long enough pw"]])
def test_a_production_database_without_keys_is_refused(tmp_path, missing, command):
    """The access log's key too (issue 29: a missing one was generated per machine, with a
    warning only, so several machines signed with different keys)."""
    audit_key = tmp_path / "keys" / "audit.key"
    audit_key.parent.mkdir()
    audit_key.write_text(random_master_key() + "\n")
    env = {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/prod.db",
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_SECRET_KEY": "s" * 40,
        "RENKEI_AUDIT_KEY_FILE": str(audit_key),
    }
    del env[missing]
    done = _flask(command, env, tmp_path)
    assert done.returncode != 0
    assert missing in done.stderr and "Traceback" not in done.stderr
    assert not any((tmp_path / k).exists() for k in ("master.key", "secret.key", "audit.key"))
    assert not (tmp_path / "prod.db").exists() or (tmp_path / "prod.db").stat().st_size == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"RENKEI_MASTER_KEY": "c2hvcnQ="},
        {"RENKEI_SECRET_KEY": "short"},
        {"RENKEI_MASTER_KEY": "", "RENKEI_MASTER_KEY_FILE": "/nonexistent/key"},
    ],
)
def test_a_malformed_key_is_a_clear_error(tmp_path, bad):
    env = {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/prod.db",
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_SECRET_KEY": "s" * 40,
    } | bad
    done = _flask(["init-db"], env, tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "RENKEI_" in done.stderr


def test_development_may_opt_into_generated_keys(tmp_path):
    done = _flask(
        ["init-db"], {"RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/dev.db", "RENKEI_ENV": "development"}, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "master.key").exists() and "DEVELOPMENT master key" in done.stderr
