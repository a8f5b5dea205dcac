"""Fixtures: a fresh database per test on SQLite and on a real PostgreSQL server,
an app bound to it, and an `Api` (tests/helpers.py) that signs people in with tokens."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from renkei.common.db import make_engine
from renkei.migrations import upgrade_schema
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, DEMO_FOLDERS, ROOT, Api, build_app, random_master_key, template_copy
from tests.servers import World, free_port, start_server


@pytest.fixture(scope="session", autouse=True)
def audit_key_file(tmp_path_factory):
    """The access log's key, which every server process outside the embedded default must
    be given (renkei/settings.py): one file for the session, as one deployment shares one."""
    path = tmp_path_factory.mktemp("keys") / "audit.key"
    path.write_text(random_master_key() + "\n")
    path.chmod(0o600)
    os.environ["RENKEI_AUDIT_KEY_FILE"] = str(path)
    yield path


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A real PostgreSQL 15 server for the session (platform/postgres.sh)."""
    if os.environ.get("RENKEI_TEST_PG_URL"):
        yield os.environ["RENKEI_TEST_PG_URL"]
        return
    data = Path(tempfile.mkdtemp(prefix="renkei-pg-"))  # the postgres user must reach it
    os.chmod(data, 0o777)
    port = str(free_port())  # a fixed range can collide with a client port in use
    proc = subprocess.run(
        ["bash", str(ROOT / "platform/postgres.sh"), "start", str(data), port], capture_output=True, text=True
    )
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
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_schema(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server):
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
    with template_copy(request.getfixturevalue("pg_template"), "t_") as url:
        yield url


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


@pytest.fixture
def api(app):
    return Api(app)


@pytest.fixture
def sqlite_api(sqlite_app):
    return Api(sqlite_app)


def _require_redis():
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")


@pytest.fixture(scope="module")
def redis_url():
    _require_redis()
    folder, port = tempfile.mkdtemp(prefix="renkei-redis-"), str(free_port())
    url = subprocess.run(
        ["bash", str(ROOT / "platform/redis.sh"), "start", folder, port], capture_output=True, text=True, check=True
    ).stdout.strip()
    yield url
    subprocess.run(["bash", str(ROOT / "platform/redis.sh"), "stop", folder])
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_world(request, tmp_path):
    """A PostgreSQL database shared by several server processes."""
    with template_copy(request.getfixturevalue("pg_template"), "rt_") as url:
        yield World(url, tmp_path)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis of this test's own, so the test may stop and start it: (url, control)."""
    _require_redis()
    script, folder, port = str(ROOT / "platform/redis.sh"), str(tmp_path / "redis"), str(free_port())
    control = {
        "start": lambda: subprocess.run(
            ["bash", script, "start", folder, port], capture_output=True, text=True, check=True
        ).stdout.strip(),
        "stop": lambda: subprocess.run(["bash", script, "stop", folder], check=True),
    }
    url = control["start"]()
    yield url, control
    subprocess.run(["bash", script, "stop", folder])


@pytest.fixture
def own_postgres(tmp_path):
    """A PostgreSQL server of this test's own, so the test may stop and start it."""
    folder = Path(tempfile.mkdtemp(prefix="renkei-pgf-"))
    os.chmod(folder, 0o777)
    script = str(ROOT / "platform/postgres.sh")
    port = str(free_port())
    url = subprocess.run(
        ["bash", script, "start", str(folder), port], capture_output=True, text=True, check=True
    ).stdout.strip()
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("CREATE DATABASE renkei"))
    admin.dispose()
    db_url = url.rsplit("/", 1)[0] + "/renkei"
    engine = make_engine(db_url)
    upgrade_schema(engine)
    engine.dispose()
    control = {
        "start": lambda: subprocess.run(["bash", script, "start", str(folder), port], check=True, capture_output=True),
        "stop": lambda: subprocess.run(["bash", script, "stop", str(folder)], check=True),
    }
    yield db_url, control
    control["stop"]()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, for a module's browser tests."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright  # heavy; only modules that drive a browser

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """The service as `python wsgi.py` starts it (embedded SQLite, demo data), for a
    module's browser tests."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    folder = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
    env |= {
        "RENKEI_INSTANCE_DIR": str(folder),
        "RENKEI_PORT": str(free_port()),
        "RENKEI_MASTER_KEY": random_master_key(),
    }
    with start_server(env, timeout=60) as base:
        DEMO_FOLDERS[base] = folder
        yield base
