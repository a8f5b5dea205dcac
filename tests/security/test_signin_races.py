"""Findings 1 and 2: lockout and one-time codes hold under parallel requests
(PostgreSQL, 30+ at once)."""

import threading
import time

import pyotp
import pytest
from sqlalchemy import text

from renkei.common import db
from tests.helpers import PASSWORD
from tests.security.conftest import at_once

pytestmark = pytest.mark.postgres
TOKENS = "/api/v1/auth/tokens"


def _sign_in(login, password, otp=None, addr="127.0.0.1"):
    body = {"login": login, "password": password} | ({"otp": otp} if otp else {})
    return {"path": TOKENS, "method": "POST", "json": body, "environ_base": {"REMOTE_ADDR": addr}}


def test_thirty_parallel_wrong_passwords_lock_the_login_without_a_500(pg_api):
    pg_api.user("dr", "physician", second_factor=False)  # a password alone signs in
    codes = [r.status_code for r in at_once(pg_api, [_sign_in("dr", "wrong password!")] * 30)]
    assert 500 not in codes
    assert codes.count(401) == 5 and codes.count(429) == 25, codes
    # locked: even the right password is refused now
    r = pg_api.client.post(TOKENS, json={"login": "dr", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_the_right_password_among_parallel_wrong_ones_is_no_way_past_the_lock(pg_api):
    """39 wrong passwords in parallel and, while they run, the right one: once the lock
    holds, the right password is refused like the wrong ones (it got 201 before)."""
    pg_api.user("dr", "physician", second_factor=False)  # a password alone signs in
    results = []
    burst = threading.Thread(target=lambda: results.extend(at_once(pg_api, [_sign_in("dr", "wrong password!")] * 39)))
    burst.start()
    deadline = time.monotonic() + 30
    while not _locked(pg_api) and time.monotonic() < deadline:
        time.sleep(0.01)
    right = pg_api.client.open(**_sign_in("dr", PASSWORD))
    burst.join()
    codes = [r.status_code for r in results]
    assert right.status_code == 429
    assert 500 not in codes and codes.count(401) == 5 and codes.count(429) == 34, codes


def _locked(api) -> bool:
    with api.app.app_context():
        found = db.session.execute(text("SELECT count(*) FROM login_throttle WHERE locked_until IS NOT NULL")).scalar()
        db.session.commit()
    return found > 0


def test_one_address_cannot_lock_a_person_out_of_their_own_device(pg_api):
    pg_api.user("dr", "physician", second_factor=False)  # a password alone signs in
    at_once(pg_api, [_sign_in("dr", "wrong password!", addr="203.0.113.9")] * 30)
    r = pg_api.client.post(
        TOKENS, json={"login": "dr", "password": PASSWORD}, environ_base={"REMOTE_ADDR": "198.51.100.7"}
    )
    assert r.status_code == 201


def test_one_address_guessing_many_logins_is_throttled(pg_api):
    for i in range(8):
        pg_api.user(f"n{i}", "nurse", second_factor=False)
    attempts = [_sign_in(f"n{i}", f"guess {j} wrong", addr="203.0.113.9") for i in range(8) for j in range(4)]
    codes = [r.status_code for r in at_once(pg_api, attempts)]
    assert 500 not in codes  # 32 failures from one address, no login reached its own limit
    r = pg_api.client.post(
        TOKENS, json={"login": "n7", "password": PASSWORD}, environ_base={"REMOTE_ADDR": "203.0.113.9"}
    )
    assert r.status_code == 429
    r = pg_api.client.post(
        TOKENS, json={"login": "n7", "password": PASSWORD}, environ_base={"REMOTE_ADDR": "198.51.100.7"}
    )
    assert r.status_code == 201


def test_one_time_code_replayed_in_parallel_signs_in_exactly_once(pg_api):
    code = pyotp.TOTP(pg_api.admin_totp).at(time.time() + 30)  # the next step's code, not used yet
    results = at_once(pg_api, [_sign_in("admin", PASSWORD, code, addr=f"10.0.0.{i}") for i in range(30)])
    codes = [r.status_code for r in results]
    assert codes.count(201) == 1 and codes.count(401) == 29, codes
