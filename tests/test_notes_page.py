"""Issue 31: the 連絡帳 on a tablet (Debian Chromium) — older notes by scrolling, a
reply that threads, search by a word of the body, 既読 by being seen and 確認 by the
button, unread counts that move on the care list while it is open."""

import pytest
import requests

from tests.helpers import TABLET, signed_in_page

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "is_mobile": False, "device_scale_factor": 1}
PATIENT = "高橋 ハル"  # the demo's: cm.tanaka, dr.sato, ns.suzuki
R = "/api/v1/patients"


class Caller:
    def __init__(self, base, login):
        self.base = base
        r = requests.post(base + "/api/v1/auth/tokens", json={"login": login, "password": DEMO_PASSWORD})
        self.headers = {"Authorization": "Bearer " + r.json()["token"]}

    def __call__(self, method, path, body=None):
        r = requests.request(method, self.base + path, json=body, headers=self.headers)
        assert r.status_code < 300, r.text
        return r.json() if r.status_code != 204 else None

    def patient(self, name=PATIENT):
        return next(p["id"] for p in self("GET", R)["items"] if p["name"] == name)

    def post(self, pid, body, **extra):
        return self("POST", f"{R}/{pid}/notes", {"body": body, "category": "contact", **extra})


def open_patient(browser, base, login, **ctx):
    page = signed_in_page(browser, base, login, DEMO_PASSWORD, **(ctx or TABLET))
    page.click(f"text={PATIENT}")
    page.wait_for_selector("#timeline")
    page.wait_for_timeout(300)  # the socket is connected
    return page


@pytest.mark.browser
@pytest.mark.parametrize("ctx", [TABLET, PORTRAIT], ids=["landscape", "portrait"])
def test_every_note_is_reachable_by_scrolling_down(browser, demo_server, ctx):
    cm = Caller(demo_server, "cm.tanaka")
    pid, tag = cm.patient(), "縦" if ctx is PORTRAIT else "横"
    for i in range(35):
        cm.post(pid, f"訪問記録{tag} {i:02d}")
    page = open_patient(browser, demo_server, "ns.suzuki", **ctx)
    for _ in range(10):  # as a thumb would: the older notes come as the end of the list comes into view
        if page.locator(f"#notes li:has-text('訪問記録{tag} 00')").count():
            break
        page.mouse.wheel(0, 4000)
        page.wait_for_timeout(400)
    bodies = page.locator(f"#notes li[data-note] .body:has-text('訪問記録{tag}')").all_inner_texts()
    assert bodies == [f"訪問記録{tag} {i:02d}" for i in reversed(range(35))]  # each once, newest first
    page.context.close()


@pytest.mark.browser
def test_a_reply_threads_under_its_note_and_search_finds_a_note_by_a_word(browser, demo_server):
    cm = Caller(demo_server, "cm.tanaka")
    pid = cm.patient()
    page = open_patient(browser, demo_server, "ns.suzuki")
    question = cm.post(pid, "明日の点滴の時間を午後に変更できますか")
    note = page.locator(f"#notes li[data-note='{question['id']}']")
    note.wait_for(timeout=10000)  # arrives live
    note.locator("[data-reply]").first.tap()
    assert "明日の点滴" in page.locator("#note-form .replying").inner_text()
    page.fill("#note-form textarea[name=body]", "14時に伺います")
    page.tap("#note-form button[type=submit]")
    folded = note.locator("details.replies li:has-text('14時に伺います')")
    folded.wait_for(timeout=10000)
    assert page.locator("#note-form .replying").is_hidden()
    reply = next(n for n in cm("GET", f"{R}/{pid}/notes")["items"] if n["body"] == "14時に伺います")
    assert reply["reply_to"] == question["id"]

    page.fill("#note-search input[name=text]", "点滴")
    page.tap("#note-search button[type=submit]")
    results = page.locator("#search-results")
    results.locator("li.note:has-text('明日の点滴の時間を午後に変更できますか')").wait_for()
    assert page.locator("#timeline").is_hidden() and results.locator("li.note").count() == 1
    page.tap("[data-search-clear]")
    assert page.locator("#timeline").is_visible() and results.is_hidden()
    page.context.close()


@pytest.mark.browser
def test_a_note_on_screen_for_two_seconds_is_seen_and_the_button_confirms_it(browser, demo_server):
    cm = Caller(demo_server, "cm.tanaka")
    pid = cm.patient()
    plain = cm.post(pid, "ご家族から夕方に電話があります")
    page = open_patient(browser, demo_server, "dr.sato")
    mine = page.locator(f"#notes li[data-note='{plain['id']}']")
    mine.scroll_into_view_if_needed()
    assert mine.locator(".badge.unread").count() == 1
    page.wait_for_timeout(2800)
    assert mine.locator(".badge.unread").count() == 0
    seen = next(n for n in cm("GET", f"{R}/{pid}/notes")["items"] if n["id"] == plain["id"])
    assert [s["display_name"] for s in seen["seen_by"]] == ["佐藤 一郎"] and seen["acks"] == []
    mine.locator("[data-ack]").tap()
    page.wait_for_function(
        "id => !document.querySelector(`#notes li[data-note='${id}'] [data-ack]`)", arg=plain["id"], timeout=10000
    )
    confirmed = next(n for n in cm("GET", f"{R}/{pid}/notes")["items"] if n["id"] == plain["id"])
    assert [a["display_name"] for a in confirmed["acks"]] == ["佐藤 一郎"]
    page.context.close()


@pytest.mark.browser
def test_the_care_list_counts_unread_notes_live(browser, demo_server):
    cm = Caller(demo_server, "cm.tanaka")
    pid = cm.patient()
    ns = signed_in_page(browser, demo_server, "ns.suzuki", DEMO_PASSWORD)  # lands on the care list
    row = ns.locator(f"li[data-patient='{pid}']")
    before = int(row.locator("[data-unread]").get_attribute("data-unread"))
    ns.wait_for_timeout(300)  # the socket is connected
    urgent = cm.post(pid, "発熱38.6℃、至急相談", urgent=True)
    ns.wait_for_function(
        "n => document.querySelector(`li[data-patient] [data-unread-urgent]:not([hidden])`)"
        " && Number(document.querySelector(`li[data-patient='${n.pid}'] [data-unread]`).dataset.unread) === n.want",
        arg={"pid": pid, "want": before + 1},
        timeout=10000,
    )
    assert row.locator("[data-unread-urgent]").inner_text().endswith("1")
    # the same person reads it on another page: this list hears of it and counts down
    other = ns.context.new_page()
    other.goto("/")
    other.click(f"text={PATIENT}")
    other.locator(f"#notes li[data-note='{urgent['id']}']").scroll_into_view_if_needed()
    ns.wait_for_function(
        "pid => document.querySelector(`li[data-patient='${pid}'] [data-unread-urgent]`).hidden",
        arg=pid,
        timeout=10000,
    )
    # it and whatever else was on screen for two seconds
    assert int(row.locator("[data-unread]").get_attribute("data-unread")) <= before
    ns.context.close()


@pytest.mark.browser
def test_a_refused_file_is_said_in_japanese_before_the_note_is_posted(browser, demo_server, tmp_path):
    cm = Caller(demo_server, "cm.tanaka")
    pid = cm.patient()
    page = open_patient(browser, demo_server, "ns.suzuki")
    notes_before = len(cm("GET", f"{R}/{pid}/notes?limit=200")["items"])
    page.fill("#note-form textarea[name=body]", "報告書を添付します")
    page.set_input_files(
        "#note-form input[name=files]",
        [
            {"name": "メモ.txt", "mimeType": "text/plain", "buffer": "ただのテキスト".encode()},
            {"name": "訪問看護報告書.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n" + b" " * 2000},
        ],
    )
    refused = page.locator("#note-form .chosen li.failed")
    assert refused.count() == 1 and "メモ.txt" in refused.inner_text()
    assert "写真（JPEG・PNG・WebP・HEIC）かPDFを選んでください" in refused.inner_text()  # Japanese, and what to do
    page.tap("#note-form button[type=submit]")
    page.wait_for_timeout(800)
    assert "送れないファイルがあります" in page.locator("#note-form .status").inner_text()
    assert len(cm("GET", f"{R}/{pid}/notes?limit=200")["items"]) == notes_before  # nothing was posted
    refused.locator("button").tap()  # 外す
    page.tap("#note-form button[type=submit]")
    link = page.locator("#notes li:has-text('報告書を添付します') a.file")
    link.wait_for(timeout=15000)
    assert link.inner_text() == "訪問看護報告書.pdf"  # its name, not 「PDF」
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "訪問看護報告書.pdf"
    page.context.close()
