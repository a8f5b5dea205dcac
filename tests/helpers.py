"""What the tests share: the app builder, `Api` (a client that calls the API as a person
would, with bearer tokens) and a small care team to start from."""

import base64
import contextlib
import re
import secrets
import shutil
import time as clock
import uuid
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pyotp
import requests
from sqlalchemy import select, text

from models import User
from renkei.app import create_app
from renkei.common import db
from renkei.patients import appointments, authz
from renkei.people import confirmations, directory
from renkei.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
R = "/api/v1/patients"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; Playwright never downloads one
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JST = timezone(timedelta(hours=9))
TABLET = {"viewport": {"width": 1280, "height": 800}, "has_touch": True, "is_mobile": False, "device_scale_factor": 1}


def days_ago(days: int) -> date:
    """A day in Japan counted back from today. Tests take every date from the clock, so
    none ages out of a window (a week's sheet, a month's chart); test_architecture checks
    the suite for literal dates."""
    return datetime.now(JST).date() - timedelta(days=days)


def japan_time_utc(day: date, hh_mm: str) -> str:
    """The API's UTC form of a Japan wall-clock time on a day: what a CSV row becomes."""
    at = datetime.combine(day, time.fromisoformat(hh_mm), JST).astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def signed_in_page(browser, base, login, password, otp=None, **context):
    """A new browser context signed in through the sign-in page (tablet-sized by default);
    `otp`: the one-time code, for a person with a second factor."""
    page = browser.new_context(base_url=base, locale="ja-JP", **(context or TABLET)).new_page()
    page.goto("/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    if otp:
        page.fill("input[name=otp]", otp)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    return page


DEMO_FOLDERS: dict[str, Path] = {}  # a demo server's address → its instance folder


def covering_physician_totp(base) -> pyotp.TOTP:
    """The demo covering physician's second factor (dr.kobayashi), from the demo server's
    instance/demo-credentials.txt."""
    text = (DEMO_FOLDERS[base] / "demo-credentials.txt").read_text()
    return pyotp.TOTP(re.search(r"Covering physician \(break-glass\): .* TOTP secret (\w+)", text).group(1))


def enrol_second_factor(base, login, password) -> pyotp.TOTP:
    """Enrol a TOTP second factor for `login` on a running server, through the API."""
    token = requests.post(base + "/api/v1/auth/tokens", json={"login": login, "password": password}).json()["token"]
    auth = {"Authorization": "Bearer " + token}
    totp = pyotp.TOTP(requests.post(base + "/api/v1/auth/totp", headers=auth).json()["secret"])
    assert requests.post(base + "/api/v1/auth/totp/confirm", json={"otp": totp.now()}, headers=auth).status_code == 204
    return totp


def _settings(url, master_key=None, **overrides):
    return Settings(
        database_url=url,
        master_key=master_key or secrets.token_bytes(32),
        previous_master_keys=[],
        secret_key=secrets.token_bytes(32),
        redis_url=None,
        embedded=False,
        **({"argon2_time_cost": 1, "argon2_memory_cost": 1024} | overrides),
    )


@contextlib.contextmanager
def template_copy(admin, prefix: str):
    """A new PostgreSQL database copied from the migrated template (conftest.py
    `pg_template`, whose engine `admin` is): its URL; dropped afterwards."""
    name = prefix + uuid.uuid4().hex[:12]
    with admin.connect() as c:
        c.execute(text(f"CREATE DATABASE {name} TEMPLATE renkei_template"))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        db.session.remove()
        with admin.connect() as c:
            c.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def build_app(url, master_key: bytes | None = None, **settings):
    app = create_app(_settings(url, master_key, **settings))
    app.config["TESTING"] = True
    return app


class Api:
    """Calls the API as a person would: with a bearer token from /auth/tokens."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.tokens: dict[str, str] = {}
        self.users: dict[str, dict] = {}
        self.totps: dict[str, pyotp.TOTP] = {}
        self.otp_steps: dict[str, int] = {}  # the last step whose code each person used
        self.admin_id, self.admin_totp = self._bootstrap_admin()
        self.totps["admin"] = pyotp.TOTP(self.admin_totp)
        self.tokens["admin"] = self.sign_in("admin", PASSWORD)
        self.org = self.call("admin", "POST", "/api/v1/organizations", {"name": "テスト診療所", "kind": "clinic"}).json[
            "id"
        ]

    def _bootstrap_admin(self):
        with self.app.app_context():
            out = directory.create_admin("admin", PASSWORD)
            db.session.commit()
        return out["id"], out["totp_secret"]

    def sign_in(self, login, password, otp=None):
        if otp is None and login in self.totps:
            otp = self.otp(login)
        body = {"login": login, "password": password} | ({"otp": otp} if otp else {})
        r = self.client.post("/api/v1/auth/tokens", json=body)
        assert r.status_code == 201, r.json
        return r.json["token"]

    def otp(self, login) -> str:
        """A one-time code the server has not seen yet for `login`: codes are valid ±1
        step (30 s) and each step once, so a test signing in often may wait for the next."""
        step = max(self.otp_steps.get(login, 0) + 1, _step(settled=True) - 1)
        while step > _step() + 1:
            clock.sleep(1)
        self.otp_steps[login] = step
        return self.totps[login].at(step * 30)

    def user(self, name, profession, second_factor=True, **extra) -> str:
        """A person made the way an administrator makes one (issue 29): the administrator
        creates the account, the person accepts the invitation with their own password,
        a second person confirms it (here on the server, as `flask --app wsgi
        confirm-user` does), and at the first sign-in the person enrols a second factor
        (second_factor=False: not yet — everything but enrolment answers 403)."""
        r = self.call(
            "admin",
            "POST",
            "/api/v1/users",
            {
                "login": name,
                "display_name": name.upper(),
                "organization_id": self.org,
                "profession": profession,
                **extra,
            },
        )
        assert r.status_code == 201, r.json
        accepted = self.client.post(
            "/api/v1/invitations/accept", json={"code": r.json["invitation"]["code"], "password": PASSWORD}
        )
        assert accepted.status_code == 201, accepted.json
        self.confirm(name)
        self.users[name] = {k: v for k, v in r.json.items() if k != "invitation"} | {"confirmed": True}
        self.tokens[name] = self.sign_in(name, PASSWORD)
        if second_factor:
            self.totps[name] = self.enrol(name)
        return r.json["id"]

    def server_admin(self, login="admin2") -> str:
        """Another administrator, made on the server (`flask --app wsgi create-admin`): tied
        to no one by creation, signed in with their second factor. Returns their id."""
        with self.app.app_context():
            out = directory.create_admin(login, PASSWORD)
            db.session.commit()
            db.session.remove()
        self.totps[login] = pyotp.TOTP(out["totp_secret"])
        self.tokens[login] = self.sign_in(login, PASSWORD)
        return out["id"]

    def spare_token(self, login) -> str:
        """Another bearer token for `login`, issued on the server without a sign-in (a test
        that revokes tokens over and over would otherwise wait for a one-time code each)."""
        from renkei.people import auth

        with self.app.app_context():
            user = db.session.execute(select(User).where(User.login == login)).scalar_one()
            token = auth.issue_token(user)[0]
            db.session.commit()
            db.session.remove()
        return token

    def confirm_appointment(self, pid, login):
        """The second person for an administrator's appointment, on the server (as
        `flask --app wsgi confirm-appointment` does)."""
        from renkei.common import work

        with self.app.app_context():
            appointments.confirm_appointment_on_server(pid, login)
            work.current().commit()
            db.session.remove()

    def confirm(self, login):
        from renkei.common import work

        with self.app.app_context():
            confirmations.confirm_user_on_server(login)
            work.current().commit()
            db.session.remove()

    def enrol(self, name) -> pyotp.TOTP:
        started = self.call(name, "POST", "/api/v1/auth/totp")
        assert started.status_code == 201, started.json
        totp = pyotp.TOTP(started.json["secret"])
        step = _step(settled=True) - 1  # the step before now: later sign-ins have two steps
        assert self.call(name, "POST", "/api/v1/auth/totp/confirm", {"otp": totp.at(step * 30)}).status_code == 204
        self.otp_steps[name] = step
        # The token that enrolled opens only the enrolment, for good: the person signs in
        # again with the new factor (here a token issued on the server, so no test waits
        # for the next one-time code).
        self.tokens[name] = self.spare_token(name)
        return totp

    def web(self, name, otp=None):
        """A browser-like client signed in to the pages as `name` (session cookie, CSRF)."""
        if otp is None and name in self.totps:
            otp = self.otp(name)
        client = self.app.test_client()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
        form = {"login": name, "password": PASSWORD, "csrf_token": csrf} | ({"otp": otp} if otp else {})
        assert client.post("/login", data=form).status_code == 302
        return client

    def call(self, who, method, path, json=None, headers=None):
        h = dict(headers or {})
        if who is not None:
            h["Authorization"] = "Bearer " + self.tokens[who]
        return self.client.open(path, method=method, json=json, headers=h)

    def patient(self, who, consent=True, **demographics) -> str:
        body = {
            "name": "連携 花子",
            "name_kana": "れんけい はなこ",
            "birth_date": "1940-02-03",
            "sex": "female",
        } | demographics
        r = self.call(who, "POST", "/api/v1/patients", body)
        assert r.status_code == 201, r.json
        pid = r.json["id"]
        if consent:
            r = self.call(
                who,
                "POST",
                f"/api/v1/patients/{pid}/consents",
                {"obtained_on": str(days_ago(30)), "obtained_by": who, "scope": "情報共有"},
            )
            assert r.status_code == 201, r.json
        return pid

    def join(self, pid, name, role, by="admin"):
        r = self.call(by, "POST", f"/api/v1/patients/{pid}/team", {"user_id": self.users[name]["id"], "role": role})
        assert r.status_code == 201, r.json


def _step(settled: bool = False) -> int:
    """The TOTP step (30 s) now; `settled`: not in the last second of a step, so a code of
    the step before now is still inside the server's ±1 step when it arrives."""
    while settled and clock.time() % 30 > 29:
        clock.sleep(0.2)
    return int(clock.time()) // 30


def grant_breakglass(api, who, pid, reason="夜間の急変対応"):
    """An open break-glass grant for `who`, made as the route makes it but without a
    one-time code each time: for fixtures that need one per test (the route itself is
    tested with its code and its limits)."""
    from renkei.common import work
    from renkei.patients import breakglass

    with api.app.app_context():
        actor = db.session.get(User, api.users[who]["id"])
        breakglass._open(actor, authz.live_patient(pid), reason, None, checked=True)
        work.current().commit()
        db.session.remove()


def team(api):
    """A care manager's patient with consent, a physician and a pharmacist on the team."""
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    api.user("pharm", "pharmacist")
    pid = api.patient("cm")
    api.join(pid, "doc", "primary_physician", by="cm")
    api.join(pid, "pharm", "pharmacist", by="doc")
    return pid


def random_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()
