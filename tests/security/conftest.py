"""Fixtures for the security regression tests: an Api on a fresh PostgreSQL database
(races only show there) and a helper that fires requests at once."""
import threading
import uuid

import pytest
from sqlalchemy import text

from renkei import db
from tests.helpers import Api, build_app


@pytest.fixture
def pg_api(pg_template):
    name = "s_" + uuid.uuid4().hex[:12]
    with pg_template.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE renkei_template"))
    app = build_app(pg_template.url.set(database=name).render_as_string(hide_password=False))
    yield Api(app)
    app.extensions["renkei.engine"].dispose()
    db.session.remove()
    with pg_template.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def at_once(api, requests: list[dict]) -> list:
    """Send every request (kwargs of test_client.open) in its own thread, released together."""
    results, barrier = [None] * len(requests), threading.Barrier(len(requests))

    def send(i, kwargs):
        client = api.app.test_client()
        barrier.wait()
        results[i] = client.open(**kwargs)

    threads = [threading.Thread(target=send, args=(i, r)) for i, r in enumerate(requests)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results
