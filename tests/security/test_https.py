"""Finding 3: behind a TLS-terminating proxy (nginx from Debian, platform/tls.sh) the
pages work in production mode: sign-in with its CSRF check, a section edit, a live
update — in real Chromium through https://."""

import os
import shutil
import subprocess
import sys
import time

import pyotp
import pytest
import requests

from tests.helpers import ROOT, random_master_key, signed_in_page, template_copy
from tests.servers import free_port, start_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.postgres]
DEMO_PASSWORD = "renkei-demo-2026"


@pytest.fixture(scope="module")
def https_base(tmp_path_factory, pg_template):
    if not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"):
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed")
        pytest.skip("nginx is not installed")
    folder = tmp_path_factory.mktemp("https")
    with template_copy(pg_template, "https_") as url:  # gunicorn serves on PostgreSQL only
        env = {k: v for k, v in os.environ.items() if not k.startswith("RENKEI_")}
        env |= {
            "RENKEI_INSTANCE_DIR": str(folder),
            "RENKEI_DATABASE_URL": url,
            "RENKEI_MASTER_KEY": random_master_key(),
            "RENKEI_SECRET_KEY": "p" * 40,
            "RENKEI_AUDIT_KEY_FILE": os.environ["RENKEI_AUDIT_KEY_FILE"],
            "RENKEI_TRUSTED_PROXIES": "1",
            "RENKEI_PORT": str(free_port()),
            "RENKEI_WORKERS": "1",
        }
        for command in (["init-db"], ["seed-demo"]):  # production mode: not the embedded default
            subprocess.run(
                [sys.executable, "-m", "flask", "--app", "wsgi", *command],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
        front = folder / "tls"
        with start_server(env, gunicorn=True):
            base = subprocess.run(
                ["bash", str(ROOT / "platform/tls.sh"), "start", str(front), str(free_port()), env["RENKEI_PORT"]],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            try:
                os.environ["RENKEI_TEST_CA"] = str(front / "cert.pem")  # to verify the front's certificate
                for login in (
                    "cm.tanaka",
                    "ns.suzuki",
                    "dr.sato",
                ):  # the demo's people get no pass outside the embedded default
                    SECOND_FACTORS[login] = _enrol(base, login)
                yield base
            finally:
                subprocess.run(["bash", str(ROOT / "platform/tls.sh"), "stop", str(front)])


SECOND_FACTORS: dict[str, pyotp.TOTP] = {}


def _enrol(base, login) -> pyotp.TOTP:
    """A TOTP second factor for a demo person, through the front (a password alone opens
    only the enrolment)."""
    ca = os.environ["RENKEI_TEST_CA"]
    token = requests.post(base + "/api/v1/auth/tokens", verify=ca, json={"login": login, "password": DEMO_PASSWORD})
    assert token.json()["enrolment_required"] is True
    auth = {"Authorization": "Bearer " + token.json()["token"]}
    totp = pyotp.TOTP(requests.post(base + "/api/v1/auth/totp", headers=auth, verify=ca).json()["secret"])
    confirmed = requests.post(base + "/api/v1/auth/totp/confirm", json={"otp": totp.now()}, headers=auth, verify=ca)
    assert confirmed.status_code == 204
    USED_STEP[login] = int(time.time() // 30)
    return totp


USED_STEP: dict[str, int] = {}


def _code(login) -> str:
    """A code the server has not seen: each step once, ±1 step accepted (waits if need be)."""
    step = USED_STEP[login] + 1
    while step > time.time() // 30 + 1:
        time.sleep(1)
    USED_STEP[login] = step
    return SECOND_FACTORS[login].at(step * 30)


def _signed_in(browser, base, login):
    return signed_in_page(
        browser,
        base,
        login,
        DEMO_PASSWORD,
        otp=_code(login),
        ignore_https_errors=True,
        viewport={"width": 1280, "height": 800},
        has_touch=True,
    )


def test_sign_in_edit_and_live_update_through_https(browser, https_base):
    cm = _signed_in(browser, https_base, "cm.tanaka")
    ns = _signed_in(browser, https_base, "ns.suzuki")
    cookies = cm.context.cookies()
    assert any(c["name"] == "session" and c["secure"] for c in cookies)
    for page in (cm, ns):
        page.click("text=山田 太郎")
        page.wait_for_selector("#section-home")
    cm.wait_for_timeout(500)
    cm.locator("#section-home [data-edit]").click()
    cm.locator('#section-home textarea[data-key="bed"]').fill("電動ベッド（HTTPS経由）")
    cm.locator("#section-home button[type=submit]").click()
    cm.wait_for_selector("#section-home[data-version='1']")
    ns.wait_for_selector("#section-home:has-text('電動ベッド（HTTPS経由）')", timeout=10000)
    cm.context.close()
    ns.context.close()


def test_https_answers_carry_hsts_and_the_proxy_is_trusted_one_hop_only(https_base):
    r = requests.get(https_base + "/login", verify=os.environ["RENKEI_TEST_CA"])
    assert r.status_code == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert r.headers["Referrer-Policy"] == "same-origin"


def test_clinical_text_through_the_front_never_lands_in_its_temp_files(https_base):
    """A note's body (over nginx's default 16 KB buffer) and a timeline answer (over its
    proxy buffers) went through nginx's temporary files on disk: plaintext at rest."""
    ca = os.environ["RENKEI_TEST_CA"]
    token = requests.post(
        https_base + "/api/v1/auth/tokens",
        verify=ca,
        json={"login": "cm.tanaka", "password": DEMO_PASSWORD, "otp": _code("cm.tanaka")},
    ).json()["token"]
    auth = {"Authorization": "Bearer " + token}
    pid = requests.get(https_base + "/api/v1/patients", headers=auth, verify=ca).json()["items"][0]["id"]
    for i in range(8):
        r = requests.post(
            f"{https_base}/api/v1/patients/{pid}/notes",
            headers=auth,
            verify=ca,
            json={"body": f"長い申し送り{i}：" + "褥瘡の処置と体位変換について。" * 250, "category": "other"},
        )
        assert r.status_code == 201, r.text
    r = requests.get(f"{https_base}/api/v1/patients/{pid}/notes?limit=200", headers=auth, verify=ca)
    assert r.status_code == 200 and len(r.content) > 64 * 1024
    log = os.path.dirname(ca) + "/error.log"
    assert "temporary file" not in open(log).read()


def test_the_front_takes_the_files_the_app_takes(https_base):
    """Issue 29: nginx allowed 2 MB bodies while the app allows 20 MB: a 3 MB PDF got
    nginx's HTML 413, which the app never saw or logged."""
    ca = os.environ["RENKEI_TEST_CA"]
    token = requests.post(
        https_base + "/api/v1/auth/tokens",
        verify=ca,
        json={"login": "dr.sato", "password": DEMO_PASSWORD, "otp": _code("dr.sato")},
    ).json()["token"]
    auth = {"Authorization": "Bearer " + token}
    pid = requests.get(https_base + "/api/v1/patients", headers=auth, verify=ca).json()["items"][0]["id"]
    pdf = b"%PDF-1.4\n" + b"0" * (3 * 1024 * 1024) + b"\n%%EOF\n"
    r = requests.post(
        f"{https_base}/api/v1/patients/{pid}/attachments",
        headers=auth,
        verify=ca,
        files={"file": ("紹介状.pdf", pdf, "application/pdf")},
    )
    assert r.status_code == 201, r.text[:300]
