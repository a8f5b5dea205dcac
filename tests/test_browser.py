"""The pages in real Chromium (Debian's, driven by Playwright), against a real server
with the demo data: tablet editing, live updates, conflicts, urgent notes, printing,
the auditor's log. Screenshots go to test-artifacts/screenshots/."""

import re
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import expect

from tests.helpers import ROOT, covering_physician_totp, days_ago, signed_in_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "renkei-demo-2026"


@pytest.fixture(scope="module")
def server(demo_server):
    return demo_server


def signed_in(browser, server, login, **ctx):
    SHOTS.mkdir(parents=True, exist_ok=True)
    return signed_in_page(browser, server, login, PASSWORD, **ctx)


def open_patient(page, name="山田 太郎"):
    page.click(f"text={name}")
    page.wait_for_selector("#section-adl")


def care_manager_and_nurse_on_one_patient(browser, server):
    """Two people, two browsers, the same record open, both sockets connected."""
    cm = signed_in(browser, server, "cm.tanaka")
    ns = signed_in(browser, server, "ns.suzuki")
    for page in (cm, ns):
        open_patient(page)
    cm.wait_for_timeout(500)
    return cm, ns


def test_sign_in_and_edit_adl_on_a_tablet(browser, server):
    page = signed_in(browser, server, "cm.tanaka")
    assert page.locator(".patient-list li").count() >= 2
    for typed in ("たかはし", "タカハシ", "ﾀｶ", "高"):  # kana in either script, a prefix, kanji
        page.fill("#patient-filter", typed)
        assert page.locator(".patient-list li:visible").count() == 1, typed
    page.fill("#patient-filter", "")
    open_patient(page)
    section = page.locator("#section-adl")
    section.locator("[data-edit]").tap()
    form = section.locator("form")
    form.locator('fieldset[data-key="eating"] button[data-level="full_assist"]').tap()
    form.locator('fieldset[data-key="eating"] [data-note]').fill("ゼリー食に変更")
    page.screenshot(path=str(SHOTS / "tablet-adl-edit.png"), full_page=False)
    form.locator("button[type=submit]").tap()
    page.wait_for_selector("#section-adl[data-version='2']")
    text = page.locator("#section-adl dl").inner_text()
    assert "全介助（ゼリー食に変更）" in text
    assert "見守り" not in text.split("食事")[1].split("\n")[1]  # the old level is gone
    page.screenshot(path=str(SHOTS / "tablet-patient-page.png"), full_page=False)
    page.context.close()


def test_teammate_change_arrives_live_and_a_conflict_is_merged(browser, server):
    cm, ns = care_manager_and_nurse_on_one_patient(browser, server)
    # live: the nurse's change appears on the care manager's open page, no reload
    ns.locator("#section-home [data-edit]").click()
    ns.locator('#section-home textarea[data-key="bed"]').fill("電動ベッド（3モーター）")
    ns.locator("#section-home button[type=submit]").click()
    cm.wait_for_selector("#section-home:has-text('電動ベッド（3モーター）')", timeout=10000)
    assert "flash" in cm.locator("#section-home").get_attribute("class")
    # conflict: both edit the same section; the second saver sees both versions
    version = int(cm.locator("#section-condition").get_attribute("data-version"))
    for page in (cm, ns):
        page.locator("#section-condition [data-edit]").click()
    cm.locator('#section-condition textarea[data-key="summary"]').fill("ケアマネの記録")
    ns.locator('#section-condition textarea[data-key="summary"]').fill("看護師の記録")
    ns.locator("#section-condition button[type=submit]").click()
    ns.wait_for_selector(f"#section-condition[data-version='{version + 1}']")
    cm.locator("#section-condition button[type=submit]").click()
    # both changed the same field: mine and theirs side by side, with who, to choose
    choice = cm.locator("#section-condition .conflict fieldset.merge-choice")
    choice.wait_for(state="visible")
    assert choice.count() == 1 and choice.locator("legend").inner_text() == "現在の状態"
    assert "ケアマネの記録" in choice.locator(".choice-mine").inner_text()
    theirs = choice.locator(".choice-theirs").inner_text()
    assert "看護師の記録" in theirs and "鈴木" in theirs
    # when, in Japan time like the rest of the page, whatever the device's zone (UTC here)
    now = datetime.now(ZoneInfo("Asia/Tokyo"))
    assert any((now - timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M") in theirs for m in (0, 1)), theirs
    cm.wait_for_timeout(500)  # scrolled to the choice
    assert choice.bounding_box()["y"] < 800
    cm.screenshot(path=str(SHOTS / "conflict.png"))
    choice.locator(".choice-theirs").click()
    cm.locator("#section-condition .conflict button.primary").click()
    # theirs kept: nothing to write, their version shown (the choice box named it too)
    cm.wait_for_selector(f"#section-condition[data-version='{version + 1}'] dl.values:has-text('看護師の記録')")
    ns.wait_for_timeout(500)
    cm.context.close()
    ns.context.close()


def test_urgent_note_is_posted_seen_live_and_acknowledged(browser, server):
    cm, ns = care_manager_and_nurse_on_one_patient(browser, server)
    cm.fill("#note-form textarea", "夕方から38.2℃の発熱。水分摂取少なめ。")
    cm.locator("#note-form label.pill:has-text('バイタル')").click()
    cm.locator("#note-form .urgent-toggle").click()
    cm.locator("#note-form button[type=submit]").click()
    note = ns.locator(".note.urgent:has-text('38.2℃')")
    note.wait_for(timeout=10000)
    note.locator("[data-ack]").click()
    ns.wait_for_selector(".note.urgent:has-text('38.2℃') .acks:has-text('鈴木 花子')")
    cm.reload()
    assert "鈴木 花子" in cm.locator(".note.urgent:has-text('38.2℃') .acks").inner_text()
    cm.context.close()
    ns.context.close()


def test_a_nurse_records_vitals_in_one_save_and_the_physician_sees_the_alert_live(browser, server):
    from tests.helpers import TABLET

    doc = signed_in(browser, server, "dr.sato")
    open_patient(doc)
    doc.wait_for_timeout(500)  # the socket is up
    ns = signed_in(browser, server, "ns.suzuki", **TABLET, timezone_id="Asia/Tokyo")
    open_patient(ns)
    ns.locator("[data-open-vitals]").tap()
    form = ns.locator("#vitals-form")
    form.locator("input[name=body_temperature]").fill("45.5")  # a slip of the finger: impossible
    form.locator("input[name='blood_pressure.systolic']").fill("１５０")  # the IME left full-width on
    form.locator("input[name='blood_pressure.diastolic']").fill("９０")
    form.locator("button[type=submit]").tap()
    refusal = form.locator("label[data-field=body_temperature] .field-error")
    expect(refusal).to_have_text(re.compile("体温は30〜45の範囲で入力してください"))
    form.locator("input[name=body_temperature]").fill("38,6")
    ns.screenshot(path=str(SHOTS / "tablet-vitals-form.png"), full_page=False)
    form.locator("button[type=submit]").tap()
    expect(form.locator(".status")).to_have_text(re.compile("体温が閾値を超えたため、チームに通知しました"))
    expect(ns.locator("[data-chart=body_temperature] .latest")).to_contain_text("38.6")
    expect(ns.locator("[data-chart=blood_pressure] .latest")).to_contain_text("150/90")
    assert form.locator("input[name=body_temperature]").input_value() == ""  # ready for the next patient

    banner = doc.locator("#vitals-alert-live")
    expect(banner).to_be_visible(timeout=10000)
    expect(banner).to_contain_text("体温")
    expect(doc.locator("[data-chart=body_temperature] .badge.urgent")).to_have_text("閾値超え")
    doc.screenshot(path=str(SHOTS / "physician-vitals-alert.png"), full_page=False)

    doc.goto("/summary")
    article = doc.locator("article.summary:has-text('山田 太郎')")
    expect(article.locator(".badge.urgent", has_text="バイタルの閾値超え")).to_be_visible()
    expect(article.locator("[data-chart=body_temperature] svg.trend")).to_be_visible()
    expect(article.locator("[data-chart=blood_pressure] .latest")).to_contain_text("150/90")
    article.screenshot(path=str(SHOTS / "summary-vitals.png"))
    doc.context.close()

    form.locator("input[name=heart_rate]").fill("170")  # possible, but not what anyone expects: asked once
    form.locator("button[type=submit]").tap()
    expect(form.locator(".status")).to_have_text(re.compile("いつもと大きく異なる値です（脈拍 170）"))
    expect(ns.locator("[data-chart=heart_rate] .latest")).not_to_contain_text("170")
    form.locator("button[type=submit]").tap()
    expect(form.locator(".status")).to_have_text("記録しました")
    expect(ns.locator("[data-chart=heart_rate] .latest")).to_contain_text("170")
    ns.context.close()


def test_a_physician_imports_an_excel_csv_and_marks_a_reading_entered_in_error(browser, server, tmp_path):
    from tests.helpers import TABLET

    doc = signed_in(browser, server, "dr.sato", **TABLET, timezone_id="Asia/Tokyo")
    open_patient(doc, "高橋 ハル")
    doc.click("text=推移と一覧")
    doc.wait_for_selector("#thresholds")
    csv_file = tmp_path / "device.csv"  # as Excel in Japan saves it: Shift_JIS
    day = f"{days_ago(1):%Y/%m/%d}"  # yesterday: inside the sheet's window whatever the date
    csv_file.write_bytes(
        f"measured_at,kind,value,unit,note\n{day} 7:30,体温,36.9,℃,起床時\n{day} 7:31,血圧,141/88,mmHg,\n".encode(
            "shift_jis"
        )
    )
    doc.set_input_files("#import-form input[name=csv]", str(csv_file))
    preview = doc.locator("#import-preview")
    expect(preview.locator("thead")).to_contain_text("測定日時")
    expect(preview).to_contain_text("新規 2件、重複 0件、エラー 0件")
    doc.locator("[data-import-save]").tap()
    expect(doc.locator("#import-form .status")).to_have_text("2件取り込みました")

    doc.locator("#sheet-box summary").tap()
    doc.locator("[data-mark-errors]").tap()
    cell = doc.locator("#vital-sheet [data-mark]", has_text="141/88")
    doc.once("dialog", lambda dialog: dialog.accept() if "141/88" in dialog.message else dialog.dismiss())
    cell.tap()
    expect(doc.locator("#vital-sheet .error", has_text="141/88")).to_contain_text("誤入力")
    assert doc.locator("#sheet-box").get_attribute("open") is not None  # still open: the physician keeps their place
    doc.context.close()


def test_a_photo_taken_on_the_tablet_reaches_a_teammate_and_opens_full_screen(browser, server, tmp_path):
    """Issue 15: a care manager attaches two photos of a pressure sore to a note from the
    tablet layout; the nurse's open page shows the thumbnails within 5 s, without a
    reload, and they open full screen and swipe; the photos page lines the series up."""
    from PIL import Image

    shots = []
    for i, colour in enumerate(((200, 40, 40), (60, 140, 60))):
        path = tmp_path / f"IMG_000{i}.jpg"
        Image.new("RGB", (1200, 900), colour).save(path, "JPEG")
        shots.append(str(path))
    cm, ns = care_manager_and_nurse_on_one_patient(browser, server)
    cm.fill("#note-form textarea", "仙骨部の発赤、前回より縮小")
    cm.set_input_files("#note-form input[name=files]", shots)
    assert cm.locator("#note-form .chosen li").count() == 2  # what will be sent, before sending
    cm.fill("#note-form input[name=series]", "仙骨部褥瘡")
    cm.locator("#note-form button[type=submit]").tap()
    started = time.monotonic()
    thumbs = ns.locator(".note:has-text('前回より縮小') .thumbs img")
    expect(thumbs).to_have_count(2, timeout=5000)
    ns.wait_for_function(
        """() => [...document.querySelectorAll('.note .thumbs img')]
                            .filter(i => i.complete && i.naturalWidth > 0).length >= 2""",
        timeout=5000,
    )
    assert time.monotonic() - started < 5
    ns.locator(".note:has-text('前回より縮小')").screenshot(path=str(SHOTS / "tablet-note-with-photos.png"))

    ns.locator(".note:has-text('前回より縮小') .thumbs a").first.tap()
    viewer = ns.locator("#viewer")
    expect(viewer).to_be_visible()
    first = ns.locator("#viewer img").get_attribute("src")
    ns.wait_for_function("() => document.querySelector('#viewer img').naturalWidth === 1200")
    ns.screenshot(path=str(SHOTS / "tablet-photo-viewer.png"))
    box = viewer.bounding_box()
    ns.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2)
    viewer.dispatch_event("touchstart", {"touches": [{"identifier": 1, "clientX": 900, "clientY": 400}]})
    viewer.dispatch_event("touchend", {"changedTouches": [{"identifier": 1, "clientX": 500, "clientY": 400}]})
    assert ns.locator("#viewer img").get_attribute("src") != first  # swiped to the other photo
    ns.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # A photo of the home's stairs goes to the 家屋の状況 section; the nurse sees it there.
    cm.set_input_files("#section-home input[data-attach-section]", shots[:1])
    expect(cm.locator("#section-home .thumbs img")).to_have_count(1, timeout=5000)
    expect(ns.locator("#section-home .thumbs img")).to_have_count(1, timeout=5000)

    ns.goto(ns.url.rstrip("/") + "/photos")
    series = ns.locator("section.series:has-text('仙骨部褥瘡')")
    expect(series.locator("img")).to_have_count(2)
    expect(ns.locator("section.series:has-text('部位の指定なし') img")).to_have_count(1)
    ns.screenshot(path=str(SHOTS / "tablet-photo-series.png"))
    cm.context.close()
    ns.context.close()


def test_emergency_sheet_prints_without_navigation(browser, server):
    page = signed_in(browser, server, "dr.sato")
    open_patient(page)
    condition = page.locator("#section-condition dl.values dd").first.inner_text()
    page.click("text=急変時情報シート")
    page.wait_for_selector(".sheet")
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    body = page.locator(".sheet").inner_text()
    for expected in (
        "山田 太郎",
        "昭和13年",
        "フロセミド",
        "ペニシリン",
        "心不全の増悪",
        "佐藤 一郎",
        "090-5550-1001",
        "03-5550-0101",  # the physician's and the clinic's phones
        "090-5550-2001",  # the key person's
        condition,
    ):  # the recent condition, as the record has it now
        assert expected in body
    assert "心肺蘇生を希望しない" in page.locator(".sheet .dnar").inner_text()  # a box, not a line in a list
    assert page.locator(".sheet .dnar").is_visible()
    page.screenshot(path=str(SHOTS / "emergency-sheet-print.png"), full_page=True)
    pdf = page.pdf(format="A4")
    assert pdf[:4] == b"%PDF" and len(pdf) > 10000
    page.context.close()


def test_physician_summary(browser, server):
    page = signed_in(browser, server, "dr.sato", viewport={"width": 1366, "height": 900})
    page.goto("/summary")
    text = page.locator("main").inner_text()
    assert "山田 太郎" in text and "フロセミド" in text and "できる限り自宅で過ごしたい" in text
    page.screenshot(path=str(SHOTS / "physician-summary.png"), full_page=True)
    page.context.close()


def test_auditor_filters_the_access_log(browser, server):
    signed_in(browser, server, "dr.sato").context.close()  # so the physician is in the log
    page = signed_in(browser, server, "auditor", viewport={"width": 1366, "height": 900})
    page.goto("/admin/audit")
    expect(page.locator("#chain-status")).to_contain_text("改ざんは検出されていません")  # filled in after load
    expect(page.locator("#chain-status")).to_contain_text("署名付きチェックポイント")
    page.select_option("select[name=actor_id]", label="佐藤 一郎")
    page.click("#audit-filter button[type=submit]")
    page.wait_for_url(re.compile(r"actor_id="))
    actors = page.locator("table.audit tr td:nth-child(3)").all_inner_texts()
    assert actors and set(actors) == {"佐藤 一郎"}
    page.screenshot(path=str(SHOTS / "audit-log.png"), full_page=False)
    # the English interface is one click away
    page.click("text=English")
    assert "Access log" in page.locator("h1").inner_text()
    page.context.close()


def test_pages_need_sign_in_and_carry_no_store(browser, server):
    r = requests.get(server + "/summary", allow_redirects=False)
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    page = signed_in(browser, server, "cm.tanaka")
    response = page.goto("/summary")
    assert response.headers["cache-control"] == "no-store"
    page.context.close()


def test_an_edit_made_offline_stays_and_is_sent_when_back_online(browser, server):
    page = signed_in(browser, server, "cm.tanaka")
    open_patient(page, "高橋 ハル")
    version = int(page.locator("#section-care_notes").get_attribute("data-version"))
    page.locator("#section-care_notes [data-edit]").click()
    page.locator('#section-care_notes textarea[data-key="notes"]').fill("電波が切れても失われない記録")
    page.context.set_offline(True)
    page.locator("#section-care_notes button[type=submit]").click()
    page.wait_for_selector("#section-care_notes .status:has-text('未送信')")
    assert page.locator("#offline").is_visible()
    assert (
        page.locator('#section-care_notes textarea[data-key="notes"]').input_value() == "電波が切れても失われない記録"
    )
    page.context.set_offline(False)
    page.wait_for_selector(f"#section-care_notes[data-version='{version + 1}']", timeout=15000)
    assert "電波が切れても失われない記録" in page.locator("#section-care_notes dl").inner_text()
    page.context.close()


def test_breakglass_from_the_sheets_qr_code_is_read_only_and_marked(browser, server):
    """The on-call physician scans the sheet's QR code: not on the team, so the
    break-glass form opens with the code filled in; a second factor, a reason, and the
    record opens read-only. A team member scanning it lands on the record."""
    cm = signed_in(browser, server, "cm.tanaka")
    open_patient(cm)
    patient_url = cm.url
    cm.click("text=急変時情報シート")
    code = cm.locator(".sheet-code").inner_text().strip()
    link = cm.locator(".sheet img.qr").get_attribute("src")
    assert link.startswith("data:image/svg+xml") and re.fullmatch(r"[A-Z2-7]{5}-[A-Z2-7]{5}", code)
    cm.goto(f"/p/{code}")
    assert cm.url == patient_url  # a member goes straight to the record
    cm.wait_for_timeout(500)  # the socket is connected: the team hears of the break-glass live
    totp = covering_physician_totp(server)  # finding a patient needs a second factor: he has one
    er = signed_in(browser, server, "dr.kobayashi", otp=totp.now())  # a physician not on this team
    er.goto(f"/p/{code}")
    er.wait_for_selector("#breakglass-form")
    assert er.locator("#breakglass-form input[name=code]").input_value() == code
    er.fill("#breakglass-form textarea[name=reason]", "救急搬送先で既往歴と服薬を確認")
    er.fill("#breakglass-form input[name=otp]", totp.at(time.time() + 30))
    er.click("#breakglass-form button[type=submit]")
    er.wait_for_selector(".banner.breakglass")
    assert "閲覧のみ" in er.locator(".banner.breakglass").inner_text()
    assert er.locator("[data-edit]").count() == 0 and er.locator("#note-form").count() == 0
    assert "フロセミド" in er.locator("#section-diseases_medications").inner_text()
    er.screenshot(path=str(SHOTS / "breakglass.png"))
    er.context.close()
    # the team sees it: live on the open page, then a banner, an entry in the timeline, a badge in the list
    cm.wait_for_selector("#breakglass-live:visible", timeout=10000)
    cm.wait_for_selector("#timeline li.emergency:has-text('救急搬送先で既往歴と服薬を確認')")
    cm.reload()
    banner = cm.locator("[data-open-breakglass]").inner_text()
    assert "小林 誠" in banner and "救急搬送先で既往歴と服薬を確認" in banner
    cm.goto("/")
    assert cm.locator(".patient-list li:has-text('山田 太郎') .badge.urgent:has-text('緊急時アクセス中')").count() == 1
    cm.context.close()
