"""Issue 31: what a tablet could not send survives a reload, a closed tab and the next
sign-in on the same device — sealed in IndexedDB under a key the server holds per device
and person, so the stored bytes hold no text and a colleague's sign-in sends nothing of
it (docs/ARCHITECTURE.md, "The offline outbox"). Debian Chromium on a tablet."""

import json
import re
import time

import pytest
import requests
from sqlalchemy import update

from models import User, utcnow
from renkei.common import db
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, TABLET

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "device_scale_factor": 1}
PATIENT = "高橋 ハル"

READ_RAW = """async () => {
  const db = await new Promise((ok, fail) => { const r = indexedDB.open("renkei-outbox");
    r.onsuccess = () => ok(r.result); r.onerror = () => fail(r.error); });
  if (!db.objectStoreNames.contains("items")) return [];
  const rows = await new Promise(ok => { const r = db.transaction("items").objectStore("items").getAll();
    r.onsuccess = () => ok(r.result); });
  db.close();
  // Every stored value as it is on disk: byte arrays as numbers, the rest as JSON.
  return rows.map(row => JSON.stringify(row, (k, v) =>
    v instanceof ArrayBuffer || ArrayBuffer.isView(v) ? Array.from(new Uint8Array(v.buffer || v)) : v));
}"""


def sign_in(page, login):
    page.goto("/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))


def open_patient(page):
    page.click(f"text={PATIENT}")
    page.wait_for_selector("#section-care_notes")
    page.wait_for_timeout(300)


def write_note_and_edit(page, note, edit):
    page.fill("#note-form textarea[name=body]", note)
    page.click("#note-form button[type=submit]")
    page.wait_for_selector(f"#note-outbox li:has-text('{note}')")
    page.locator("#section-care_notes [data-edit]").click()
    page.locator('#section-care_notes textarea[data-key="notes"]').fill(edit)
    page.locator("#section-care_notes button[type=submit]").click()
    page.wait_for_selector("#section-care_notes .status:has-text('未送信')")
    page.wait_for_selector("#offline [data-waiting]:has-text('未送信 2件')")


def assert_sealed(page, *texts):
    rows = page.evaluate(READ_RAW)
    assert len(rows) == 2
    raw = "".join(rows)
    for text in texts:
        utf8 = ",".join(str(b) for b in text.encode())
        assert text not in raw and utf8 not in raw, text  # neither as text nor as its bytes
    assert all(set(json.loads(r)) == {"n", "kid", "iv", "ct"} for r in rows)


class Server:
    """What the team sees on the server, through the care manager's bearer token."""

    def __init__(self, base):
        self.base = base
        r = requests.post(base + "/api/v1/auth/tokens", json={"login": "cm.tanaka", "password": DEMO_PASSWORD})
        self.auth = {"Authorization": "Bearer " + r.json()["token"]}
        items = requests.get(base + "/api/v1/patients", headers=self.auth).json()["items"]
        self.pid = next(p["id"] for p in items if p["name"] == PATIENT)

    def notes_with(self, text):
        items = requests.get(f"{self.base}/api/v1/patients/{self.pid}/notes?limit=100", headers=self.auth).json()
        return [n for n in items["items"] if n["body"] == text]

    def care_notes(self):
        return requests.get(f"{self.base}/api/v1/patients/{self.pid}/record/care_notes", headers=self.auth).json()


@pytest.mark.browser
def test_a_waiting_note_and_edit_are_sealed_and_survive_a_reload(browser, demo_server):
    server = Server(demo_server)
    v = server.care_notes()["version"]
    page = browser.new_context(base_url=demo_server, locale="ja-JP", **TABLET).new_page()
    sign_in(page, "cm.tanaka")
    open_patient(page)
    # The server is busy for the next hour: everything waits (no network failure, so no
    # service worker is asked to send; the reload is what must carry it).
    busy = lambda route: route.fulfill(status=503, headers={"Retry-After": "3600"}, body="")  # noqa: E731
    page.route(re.compile(r".*/api/v1/patients/[^/]+/(notes|record/care_notes)$"), busy)
    write_note_and_edit(page, "再読み込み前の申し送り", "再読み込み前の記録")
    assert_sealed(page, "再読み込み前の申し送り", "再読み込み前の記録", server.pid)
    page.unroute(re.compile(r".*/api/v1/patients/[^/]+/(notes|record/care_notes)$"))
    page.reload()
    page.wait_for_selector("#timeline li:has-text('再読み込み前の申し送り')", timeout=15000)
    page.wait_for_selector(f"#section-care_notes[data-version='{v + 1}']", timeout=15000)
    page.wait_for_timeout(2000)  # anything sent twice would have arrived by now
    assert len(server.notes_with("再読み込み前の申し送り")) == 1
    after = server.care_notes()
    assert after["version"] == v + 1 and after["content"]["notes"] == "再読み込み前の記録"
    assert page.evaluate(READ_RAW) == [] and page.locator("#offline").is_hidden()
    page.context.close()


@pytest.mark.browser
def test_the_next_sign_in_on_the_device_sends_it_once_and_a_colleague_sends_nothing(browser, demo_server, tmp_path):
    server = Server(demo_server)
    v = server.care_notes()["version"]
    device = tmp_path / "tablet-profile"  # the same device: one browser profile, reopened

    def open_device(**shape):
        ctx = browser.browser_type.launch_persistent_context(
            str(device),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            base_url=demo_server,
            locale="ja-JP",
            **shape,
        )
        return ctx, ctx.pages[0] if ctx.pages else ctx.new_page()

    ctx, page = open_device(**PORTRAIT)
    sign_in(page, "cm.tanaka")
    open_patient(page)
    ctx.set_offline(True)
    page.wait_for_selector("#offline [data-offline]:visible")  # said at once, before anything fails
    write_note_and_edit(page, "圏外で閉じた申し送り", "圏外で閉じた記録")
    assert_sealed(page, "圏外で閉じた申し送り", "圏外で閉じた記録")
    page.screenshot(path=str(device.parent / "offline-bar.png"))
    ctx.clear_cookies(name="session")  # and by the time it is back, her session has ended (idle timeout)
    ctx.close()  # the tab, the browser, the battery: gone while offline

    # A colleague signs in on the same tablet: she neither sees nor sends it.
    ctx, page = open_device(**TABLET)
    sign_in(page, "ns.suzuki")
    open_patient(page)
    page.wait_for_timeout(3000)
    assert page.locator("#note-outbox li").count() == 0 and page.locator("#offline").is_hidden()
    assert server.notes_with("圏外で閉じた申し送り") == [] and server.care_notes()["version"] == v
    assert len(page.evaluate(READ_RAW)) == 2  # still waiting for its owner
    page.click("header form[action='/logout'] button")
    page.wait_for_url(re.compile(r".*/login.*"))

    # Her next sign-in on this device sends everything, once.
    sign_in(page, "cm.tanaka")
    deadline = time.monotonic() + 15
    while not server.notes_with("圏外で閉じた申し送り") and time.monotonic() < deadline:
        time.sleep(0.25)
    page.wait_for_timeout(2000)  # anything sent twice would have arrived by now
    assert len(server.notes_with("圏外で閉じた申し送り")) == 1
    after = server.care_notes()
    assert after["version"] == v + 1 and after["content"]["notes"] == "圏外で閉じた記録"
    assert page.evaluate(READ_RAW) == []
    ctx.close()


def test_the_outbox_key_is_one_per_person_and_device_and_an_access_reset_changes_it(api):
    """The key is derived, never stored: the same person on the same device gets it back
    (a link from another site still names the device: SameSite=Lax), anyone or anywhere
    else gets another, and an access reset retires it."""
    api.user("cm", "care_manager")
    api.user("ns", "nurse")
    keys = lambda who: api.call(who, "GET", "/api/v1/users/me/outbox-key").json["keys"][0]["key"]  # noqa: E731
    first = api.call("cm", "GET", "/api/v1/users/me/outbox-key")
    cookie = next(c for c in first.headers.getlist("Set-Cookie") if c.startswith("renkei_device="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=34560000" in cookie
    mine = first.json["keys"][0]["key"]
    assert keys("cm") == mine and keys("ns") != mine and "csrf_token" not in first.json  # a bearer token needs none
    api.client.delete_cookie("renkei_device")
    elsewhere = keys("cm")
    assert elsewhere != mine
    with api.app.app_context():
        db.session.execute(update(User).where(User.login == "cm").values(reset_at=utcnow()))
        db.session.commit()
    assert keys("cm") != elsewhere
