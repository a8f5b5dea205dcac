"""Fixtures for the security regression tests: an Api on a fresh PostgreSQL database
(races only show there) and a helper that fires requests at once."""

import threading

import pytest

from tests.helpers import Api, build_app, template_copy


@pytest.fixture
def pg_api(pg_template):
    with template_copy(pg_template, "s_") as url:
        # A hashing queue deep enough that every parallel attempt reaches the lockout
        # counters these tests race (shedding a burst: tests/security/test_signin_burst.py).
        app = build_app(url, signin_queue=64)
        yield Api(app)
        app.extensions["renkei.engine"].dispose()


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
