"""Fixtures: a fresh database per test on SQLite and on a real PostgreSQL server,
an app bound to it, and `Api`, a small client that signs people in with tokens."""
import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


def _settings(url, master_key=None):
    from renkei.settings import Settings
    return Settings(database_url=url, master_key=master_key or secrets.token_bytes(32), previous_master_keys=[],
                    secret_key=secrets.token_bytes(32), redis_url=None, embedded=False,
                    argon2_time_cost=1, argon2_memory_cost=1024)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A real PostgreSQL 15 server for the session (platform/postgres.sh)."""
    if os.environ.get("RENKEI_TEST_PG_URL"):
        yield os.environ["RENKEI_TEST_PG_URL"]
        return
    data = Path(tempfile.mkdtemp(prefix="renkei-pg-"))  # the postgres user must reach it
    os.chmod(data, 0o777)
    port = str(54400 + os.getpid() % 500)
    proc = subprocess.run(["bash", str(ROOT / "platform/postgres.sh"), "start", str(data), port],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL did not start: " + proc.stderr)
        pytest.skip("PostgreSQL not available: " + proc.stderr.strip())
    url = proc.stdout.strip()
    yield url
    subprocess.run(["bash", str(ROOT / "platform/postgres.sh"), "stop", str(data)])
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    from renkei.cli import upgrade_schema
    from renkei.db import make_engine
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_schema(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server):
    from renkei.cli import upgrade_schema
    from renkei.db import make_engine
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("DROP DATABASE IF EXISTS renkei_template"))
        c.execute(text("CREATE DATABASE renkei_template"))
    engine = make_engine(pg_server.rsplit("/", 1)[0] + "/renkei_template")
    upgrade_schema(engine)
    engine.dispose()
    return admin


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, migrated database for one test, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "renkei.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin = request.getfixturevalue("pg_template")
    name = "t_" + uuid.uuid4().hex[:12]
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE renkei_template"))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    from renkei import db
    db.session.remove()
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(scope="module")
def module_api(tmp_path_factory, sqlite_template):
    """An Api on a SQLite database shared by the tests of one module (for tests that
    build one world and run many requests against it)."""
    path = tmp_path_factory.mktemp("module") / "renkei.db"
    shutil.copy(sqlite_template, path)
    app = build_app(f"sqlite:///{path}")
    yield Api(app)
    app.extensions["renkei.engine"].dispose()


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template):
    path = tmp_path / "renkei.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def build_app(url, master_key: bytes | None = None):
    from renkei import create_app
    app = create_app(_settings(url, master_key))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def app(database_url, tmp_path):
    app = build_app(database_url)
    yield app
    app.extensions["renkei.engine"].dispose()


@pytest.fixture
def sqlite_app(sqlite_url, tmp_path):
    app = build_app(sqlite_url)
    yield app
    app.extensions["renkei.engine"].dispose()


class Api:
    """Calls the API as a person would: with a bearer token from /auth/tokens."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.tokens: dict[str, str] = {}
        self.users: dict[str, dict] = {}
        self.admin_id, self.admin_totp = self._bootstrap_admin()
        self.tokens["admin"] = self.sign_in("admin", PASSWORD, pyotp.TOTP(self.admin_totp).now())
        self.org = self.call("admin", "POST", "/api/v1/organizations",
                             {"name": "テスト診療所", "kind": "clinic"}).json["id"]

    def _bootstrap_admin(self):
        from renkei import cli, db
        with self.app.app_context():
            out = cli.create_admin("admin", PASSWORD)
            db.session.commit()
        return out["id"], out["totp_secret"]

    def sign_in(self, login, password, otp=None):
        body = {"login": login, "password": password} | ({"otp": otp} if otp else {})
        r = self.client.post("/api/v1/auth/tokens", json=body)
        assert r.status_code == 201, r.json
        return r.json["token"]

    def user(self, name, profession, **extra) -> str:
        """Create a user through the API, sign them in, remember them as `name`."""
        r = self.call("admin", "POST", "/api/v1/users", {
            "login": name, "password": PASSWORD, "display_name": name.upper(),
            "organization_id": self.org, "profession": profession, **extra})
        assert r.status_code == 201, r.json
        self.users[name] = r.json
        self.tokens[name] = self.sign_in(name, PASSWORD)
        return r.json["id"]

    def call(self, who, method, path, json=None, headers=None):
        h = dict(headers or {})
        if who is not None:
            h["Authorization"] = "Bearer " + self.tokens[who]
        return self.client.open(path, method=method, json=json, headers=h)

    def patient(self, who, consent=True, **demographics) -> str:
        body = {"name": "連携 花子", "name_kana": "れんけい はなこ", "birth_date": "1940-02-03",
                "sex": "female"} | demographics
        r = self.call(who, "POST", "/api/v1/patients", body)
        assert r.status_code == 201, r.json
        pid = r.json["id"]
        if consent:
            r = self.call(who, "POST", f"/api/v1/patients/{pid}/consents",
                          {"obtained_on": "2026-10-01", "obtained_by": who, "scope": "情報共有"})
            assert r.status_code == 201, r.json
        return pid

    def join(self, pid, name, role, by="admin"):
        r = self.call(by, "POST", f"/api/v1/patients/{pid}/team",
                      {"user_id": self.users[name]["id"], "role": role})
        assert r.status_code == 201, r.json


@pytest.fixture
def api(app):
    return Api(app)


@pytest.fixture
def sqlite_api(sqlite_app):
    return Api(sqlite_app)


@pytest.fixture(scope="module")
def redis_url():
    from tests.servers import free_port
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    folder, port = tempfile.mkdtemp(prefix="renkei-redis-"), str(free_port())
    url = subprocess.run(["bash", str(ROOT / "platform/redis.sh"), "start", folder, port],
                         capture_output=True, text=True, check=True).stdout.strip()
    yield url
    subprocess.run(["bash", str(ROOT / "platform/redis.sh"), "stop", folder])
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_world(request, tmp_path):
    """A PostgreSQL database shared by several server processes."""
    from tests.servers import World
    admin = request.getfixturevalue("pg_template")
    name = "rt_" + uuid.uuid4().hex[:10]
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE renkei_template"))
    yield World(admin.url.set(database=name).render_as_string(hide_password=False), tmp_path)
    from renkei import db
    db.session.remove()
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def random_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()
