"""The commands of docs/API.md, run as an operator would."""

import json
import os
import subprocess
import sys

import pyotp
import requests

from tests.helpers import ROOT, random_master_key
from tests.servers import free_port, start_server


def run(args, env):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_init_db_create_admin_and_serve(tmp_path):
    env = os.environ | {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_SECRET_KEY": "s" * 32,
        "RENKEI_INSTANCE_DIR": str(tmp_path),
    }
    assert run(["init-db"], env).returncode == 0
    assert run(["init-db"], env).returncode == 0  # no-op on a current schema
    out = run(["create-admin", "--login", "root", "--password", "a long password"], env)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(line) == {"id", "totp_secret"}
    assert run(["create-admin", "--login", "root", "--password", "a long password"], env).returncode != 0
    port = free_port()
    with start_server(env | {"RENKEI_PORT": str(port)}) as base:
        assert requests.get(base + "/healthz").status_code == 200
        r = requests.post(
            base + "/api/v1/auth/tokens",
            json={"login": "root", "password": "a long password", "otp": pyotp.TOTP(line["totp_secret"]).now()},
        )
        assert r.status_code == 201
        me = requests.get(base + "/api/v1/users/me", headers={"Authorization": "Bearer " + r.json()["token"]})
        assert me.json()["id"] == line["id"] and me.json()["is_admin"] is True


def test_rotate_master_key_command(tmp_path):
    old, new = random_master_key(), random_master_key()
    env = os.environ | {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "RENKEI_MASTER_KEY": old,
        "RENKEI_SECRET_KEY": "s" * 32,
        "RENKEI_INSTANCE_DIR": str(tmp_path),
    }
    run(["init-db"], env)
    assert run(["create-admin", "--login", "root", "--password", "a long password"], env).returncode == 0
    out = run(["rotate-master-key"], env | {"RENKEI_MASTER_KEY": new, "RENKEI_MASTER_KEY_PREVIOUS": old})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rewrapped"] >= 1
    # afterwards the old key is no longer needed
    assert (
        run(
            ["create-admin", "--login", "root2", "--password", "a long password"], env | {"RENKEI_MASTER_KEY": new}
        ).returncode
        == 0
    )


def test_migrations_build_the_schema_the_models_describe(database_url):
    """A model changed without a migration would work in tests that create tables from
    models and fail on a real upgrade; here the migrated database must match the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models import Base
    from renkei.common.db import make_engine

    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_seed_demo_into_an_instance_folder_that_does_not_exist_yet(tmp_path):
    """Issue 11 (7): seed-demo committed, then failed writing the credentials file."""
    folder = tmp_path / "not" / "yet"
    env = os.environ | {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_SECRET_KEY": "s" * 32,
        "RENKEI_INSTANCE_DIR": str(folder),
    }
    assert run(["init-db"], env).returncode == 0
    out = run(["seed-demo"], env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "TOTP secret" in (folder / "demo-credentials.txt").read_text()


def test_init_db_indexes_the_names_of_patients_registered_before_prefix_search(tmp_path):
    """Migration 0008 adds the prefix tokens but holds no keys; init-db fills them in."""
    import sqlite3

    env = os.environ | {
        "RENKEI_DATABASE_URL": f"sqlite:///{tmp_path}/r.db",
        "RENKEI_MASTER_KEY": random_master_key(),
        "RENKEI_SECRET_KEY": "s" * 32,
        "RENKEI_INSTANCE_DIR": str(tmp_path),
    }
    assert run(["init-db"], env).returncode == 0
    assert run(["seed-demo"], env).returncode == 0
    with sqlite3.connect(tmp_path / "r.db") as db:
        patients = db.execute("SELECT count(*) FROM patients").fetchone()[0]
        db.execute("DELETE FROM patient_search_tokens")  # as a database from before 0008 has it
    out = run(["init-db"], env)
    assert out.returncode == 0 and f"{patients} patients' names indexed" in out.stdout, out.stderr
    with sqlite3.connect(tmp_path / "r.db") as db:
        assert db.execute("SELECT count(DISTINCT patient_id), count(*) FROM patient_search_tokens").fetchone() == (
            patients,
            patients * 10,
        )
        assert (
            db.execute(
                "SELECT count(DISTINCT patient_id) FROM audit_log WHERE action = 'patient.index_names'"
            ).fetchone()[0]
            == patients
        )
    assert "0 patients' names indexed" in run(["init-db"], env).stdout
