"""Issue 12: nothing a person types is lost, and nothing that changes nothing is saved —
through the API and in the care manager's tablet (Debian Chromium)."""

import json

import pytest
from sqlalchemy import select

from models import UserEvent
from renkei.common import db
from tests.helpers import ROOT, signed_in_page, team

DEMO_PASSWORD = "renkei-demo-2026"
SHOTS = ROOT / "test-artifacts" / "screenshots"


def open_patient(browser, base, login, name="山田 太郎", **ctx):
    page = signed_in_page(browser, base, login, DEMO_PASSWORD, **ctx)
    page.click(f"text={name}")
    page.wait_for_selector("#section-adl")
    page.wait_for_timeout(300)  # the socket is connected
    return page


def versions(page, section):
    return int(page.locator(f"#section-{section}").get_attribute("data-version"))


def writes(page, section):
    """The PUTs the page sends for a section, and the answers that came back."""
    sent, answered = [], []
    is_put = lambda r: r.method == "PUT" and r.url.endswith("/record/" + section)  # noqa: E731
    page.on("request", lambda r: sent.append(r) if is_put(r) else None)
    page.on("response", lambda r: answered.append(r.status) if is_put(r.request) else None)
    return sent, answered


def test_a_put_that_changes_nothing_writes_nothing_even_with_a_stale_if_match(api):
    """Issue 12: Enter in a メモ field, an empty form or the same edit sent twice made
    versions that showed the whole team 「更新」."""
    pid = team(api)
    path = f"/api/v1/patients/{pid}/record/home"
    empty = api.call("cm", "PUT", path, {"content": {}}, headers={"If-Match": '"0"'})
    assert empty.status_code == 200 and empty.json["version"] == 0
    first = api.call("cm", "PUT", path, {"content": {"bed": "電動ベッド"}}, headers={"If-Match": '"0"'})
    assert first.json["version"] == 1
    for if_match in ('"1"', '"0"'):  # the same edit again, as sent the first time
        again = api.call("cm", "PUT", path, {"content": {"bed": "電動ベッド"}}, headers={"If-Match": if_match})
        assert again.status_code == 200 and again.json["version"] == 1 and again.headers["ETag"] == '"1"'
    assert [v["version"] for v in api.call("doc", "GET", path + "/versions").json["items"]] == [1]
    stale = api.call("cm", "PUT", path, {"content": {"bed": "別のベッド"}}, headers={"If-Match": '"0"'})
    assert stale.status_code == 412  # a real change on a stale version is still caught


def test_a_note_of_only_spaces_is_refused_on_its_field(api):
    pid = team(api)
    for blank in [" ", "\u3000\u3000", "\n\t "]:
        r = api.call("cm", "POST", f"/api/v1/patients/{pid}/notes", {"body": blank, "category": "other"})
        assert r.status_code == 422 and "body" in r.json["errors"], repr(blank)
    assert api.call("cm", "GET", f"/api/v1/patients/{pid}/notes").json["items"] == []


@pytest.mark.browser
def test_two_people_editing_different_fields_both_keep_their_change(browser, demo_server):
    """A three-way merge against the version the editor opened: the nurse's field and
    the care manager's field both survive, and the care manager is told."""
    cm = open_patient(browser, demo_server, "cm.tanaka")
    ns = open_patient(browser, demo_server, "ns.suzuki")
    v = versions(cm, "condition")
    for page in (cm, ns):
        page.locator("#section-condition [data-edit]").click()
    ns.locator('#section-condition textarea[data-key="recent_changes"]').fill("昨夜から微熱")
    ns.locator("#section-condition button[type=submit]").click()
    ns.wait_for_selector(f"#section-condition[data-version='{v + 1}']")
    cm.locator('#section-condition textarea[data-key="medication_note"]').fill("朝の薬を一包化")
    cm.locator("#section-condition button[type=submit]").click()
    cm.wait_for_selector(f"#section-condition[data-version='{v + 2}']")
    text = cm.locator("#section-condition").inner_text()
    assert "昨夜から微熱" in text and "朝の薬を一包化" in text
    assert "鈴木 花子" in cm.locator("#section-condition .merged").inner_text()
    ns.wait_for_selector("#section-condition:has-text('朝の薬を一包化')", timeout=10000)
    cm.context.close()
    ns.context.close()


@pytest.mark.browser
def test_a_save_that_changes_nothing_is_not_sent(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka")
    (sent, _), v = writes(page, "home"), versions(page, "home")
    page.locator("#section-home [data-edit]").click()
    page.locator('#section-home textarea[data-key="bed"]').press("End")
    page.locator("#section-home button[type=submit]").click()
    page.wait_for_selector("#section-home .status:has-text('変更はありません')")
    assert sent == [] and versions(page, "home") == v
    page.context.close()


@pytest.mark.browser
def test_a_second_tap_on_the_chosen_adl_level_keeps_it(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka", has_touch=True)
    form, v = page.locator("#section-adl form"), versions(page, "adl")
    page.locator("#section-adl [data-edit]").tap()
    level = form.locator('fieldset[data-key="bathing"] button[data-level="partial_assist"]')
    level.tap()
    level.tap()
    assert level.get_attribute("aria-pressed") == "true"
    form.locator("button[type=submit]").tap()
    page.wait_for_selector(f"#section-adl[data-version='{v + 1}']")
    bathing = page.locator("#section-adl dl").inner_text().split("入浴")[1].split("\n")[1]
    assert bathing.startswith("一部介助")  # the demo's 全介助, changed by the first tap, kept by the second
    page.context.close()


@pytest.mark.browser
def test_a_note_and_an_edit_made_offline_arrive_exactly_once(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka", name="高橋 ハル")
    (_, answered), v = writes(page, "care_notes"), versions(page, "care_notes")
    page.context.set_offline(True)
    page.fill("#note-form textarea[name=body]", "圏外で書いた申し送り")
    page.click("#note-form button[type=submit]")
    page.wait_for_selector("#note-outbox li:has-text('圏外で書いた申し送り')")  # shown as 未送信
    page.screenshot(path=str(SHOTS / "offline-outbox.png"))
    assert page.locator("#note-form textarea[name=body]").input_value() == ""
    page.locator("#section-care_notes [data-edit]").click()
    page.locator('#section-care_notes textarea[data-key="notes"]').fill("圏外で直した記録")
    page.locator("#section-care_notes button[type=submit]").click()
    page.wait_for_selector("#section-care_notes .status:has-text('未送信')")
    page.wait_for_timeout(4000)  # retries happen while offline
    page.context.set_offline(False)
    page.wait_for_selector("#timeline li:has-text('圏外で書いた申し送り')", timeout=15000)
    page.wait_for_selector(f"#section-care_notes[data-version='{v + 1}']", timeout=15000)
    page.wait_for_timeout(3000)  # anything sent twice would have arrived by now
    page.reload()
    page.wait_for_selector("#timeline")
    assert page.locator("#timeline li", has_text="圏外で書いた申し送り").count() == 1
    assert versions(page, "care_notes") == v + 1 and answered == [200]  # sent once it could be
    assert page.locator("#note-outbox li").count() == 0
    page.context.close()


def test_full_width_phone_numbers_and_extensions_are_accepted_as_typed(api):
    """Japanese input: ０９０－１２３４－５６７８ and （内線12） were refused."""
    pid = team(api)
    r = api.call(
        "cm",
        "POST",
        "/api/v1/patients",
        {
            "name": "電話 太郎",
            "name_kana": "でんわ たろう",
            "birth_date": "1940-01-01",
            "sex": "male",
            "phone": "０９０－１２３４－５６７８",
        },
    )
    assert r.status_code == 201, r.json
    assert r.json["phone"] == "090-1234-5678"
    contacts = {"key_contacts": [{"name": "長男", "phone": "０３－１２３４－５６７８（内線１２）"}]}
    r = api.call(
        "cm", "PUT", f"/api/v1/patients/{pid}/record/family_care", {"content": contacts}, headers={"If-Match": '"0"'}
    )
    assert r.status_code == 200 and r.json["content"]["key_contacts"][0]["phone"] == "03-1234-5678(内線12)"
    bad = api.call(
        "cm",
        "PUT",
        f"/api/v1/patients/{pid}/record/family_care",
        {"content": {"key_contacts": [{"name": "長男", "phone": "いつでも"}]}},
        headers={"If-Match": '"0"'},
    )
    assert bad.status_code == 422 and "いつでも" not in bad.get_data(as_text=True)


@pytest.mark.browser
def test_the_tablet_page_wraps_long_text_folds_long_notes_and_says_who_may_edit(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka", viewport={"width": 800, "height": 1280}, has_touch=True)
    page.fill("#note-form textarea[name=body]", "あ" * 600 + "x" * 300)  # one unbroken string
    page.click("#note-form button[type=submit]")
    note = page.locator("#timeline li", has_text="xxxx").first
    note.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    more = note.locator("button.more")
    assert more.inner_text() == "続きを読む"
    body = note.locator(".body")
    body.wait_for(state="visible")  # the live event of this note may re-render the timeline meanwhile
    folded = body.bounding_box()["height"]
    more.tap()
    page.wait_for_function("([el, h]) => el.getBoundingClientRect().height > h", arg=[body.element_handle(), folded])
    # 疾病・使用薬剤 is not the care manager's to write: the page says whose it is
    why = page.locator("#section-diseases_medications .readonly-why").inner_text()
    assert (
        "主治医" in why and "薬剤師" in why and page.locator("#section-diseases_medications [data-edit]").count() == 0
    )
    # Escape closes a form and keeps what was typed
    page.locator("#section-home [data-edit]").tap()
    page.locator('#section-home textarea[data-key="bed"]').fill("途中まで書いた")
    page.keyboard.press("Escape")
    assert page.locator("#section-home form").is_hidden()
    page.locator("#section-home [data-edit]").tap()
    assert page.locator('#section-home textarea[data-key="bed"]').input_value() == "途中まで書いた"
    page.context.close()


@pytest.mark.browser
def test_a_refused_save_says_why_in_japanese_on_the_field_and_keeps_the_text(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka")
    page.fill("#note-form textarea[name=body]", "　　")  # full-width spaces only
    page.click("#note-form button[type=submit]")
    page.wait_for_selector("#note-form .field-error:has-text('本文を入力してください')")
    assert page.locator("#note-form textarea[name=body]").input_value() == "　　"
    assert "{" not in page.locator("#note-form .status").inner_text()  # no raw JSON
    section = page.locator("#section-family_care")
    section.locator("[data-edit]").click()
    rows = section.locator('fieldset[data-key="key_contacts"]')
    rows.locator("[data-add-row]").click()
    row = rows.locator("[data-row]").last
    row.locator('input[data-key="name"]').fill("長女")
    row.locator('input[data-key="phone"]').fill("夜はつながりにくい")
    section.locator("button[type=submit]").click()
    error = row.locator(".field-error")
    error.wait_for()
    assert "電話番号の形式" in error.inner_text()
    assert row.locator('input[data-key="phone"]').input_value() == "夜はつながりにくい"
    page.context.close()


def test_the_author_sees_who_read_the_note_out_of_how_many_and_hears_it_live(api):
    """The author's own note showed 「未読」; now 既読 n/m, and a `note.acked` event."""
    pid = team(api)  # cm, doc, pharm
    note = api.call("cm", "POST", f"/api/v1/patients/{pid}/notes", {"body": "夕方に訪問", "category": "contact"}).json
    assert note["readers"] == 2 and note["acks"] == []
    assert api.call("doc", "POST", f"/api/v1/patients/{pid}/notes/{note['id']}/ack").status_code == 204
    api.call("doc", "POST", f"/api/v1/patients/{pid}/notes/{note['id']}/ack")  # again: one ack, one event
    mine = api.call("cm", "GET", f"/api/v1/patients/{pid}/notes").json["items"][0]
    assert [a["display_name"] for a in mine["acks"]] == ["DOC"] and mine["readers"] == 2
    with api.app.app_context():
        acked = db.session.execute(select(UserEvent.payload).where(UserEvent.name == "note.acked")).scalars().all()
    assert len(acked) == 3  # to cm, doc and pharm, once
    assert all(
        json.loads(p) | {"at": None, "seq": None}
        == {"patient_id": pid, "note_id": note["id"], "user_id": api.users["doc"]["id"], "at": None, "seq": None}
        for p in acked
    )


def test_the_only_care_manager_cannot_leave_the_team(api):
    pid = team(api)
    me = api.users["cm"]["id"]
    r = api.call("cm", "DELETE", f"/api/v1/patients/{pid}/team/{me}")
    assert r.status_code == 409
    api.user("cm2", "care_manager")
    api.join(pid, "cm2", "care_manager", by="cm")
    assert api.call("cm", "DELETE", f"/api/v1/patients/{pid}/team/{me}").status_code == 204


@pytest.mark.browser
def test_the_authors_page_counts_readers_live(browser, demo_server):
    cm = open_patient(browser, demo_server, "cm.tanaka")
    sw = open_patient(browser, demo_server, "ns.suzuki")
    cm.fill("#note-form textarea[name=body]", "明日の訪問時間を変更します")
    cm.click("#note-form button[type=submit]")
    mine = cm.locator("#timeline li", has_text="明日の訪問時間を変更します")
    mine.wait_for()
    count = mine.locator(".read-count").inner_text()
    assert count.startswith("既読 0/")
    theirs = sw.locator("#timeline li", has_text="明日の訪問時間を変更します")
    theirs.wait_for(timeout=10000)
    theirs.locator("[data-ack]").click()
    cm.wait_for_selector(
        "#timeline li:has-text('明日の訪問時間を変更します') .read-count:has-text('既読 1/')", timeout=10000
    )
    assert "鈴木 花子" in cm.locator("#timeline li", has_text="明日の訪問時間を変更します").inner_text()
    cm.context.close()
    sw.context.close()


@pytest.mark.browser
def test_on_a_portrait_tablet_the_notes_and_urgent_ones_are_one_tap_away(browser, demo_server):
    writer = open_patient(browser, demo_server, "ns.suzuki")
    writer.fill("#note-form textarea[name=body]", "夜間に転倒あり、至急確認を")
    writer.check("#note-form input[name=urgent]")
    writer.click("#note-form button[type=submit]")
    writer.wait_for_selector("#timeline li:has-text('夜間に転倒あり')")
    writer.context.close()
    page = open_patient(browser, demo_server, "cm.tanaka", viewport={"width": 800, "height": 1280}, has_touch=True)
    urgent = page.locator(".patient-head a.badge.urgent")
    assert "至急の連絡" in urgent.inner_text()  # seen on arrival, at the top
    jump = page.locator("a.jump-notes")
    assert jump.is_visible() and jump.bounding_box()["y"] < 1280  # fixed on screen
    jump.tap()
    page.wait_for_function("() => location.hash === '#notes-box'")
    page.wait_for_timeout(300)
    box = page.locator("#note-form textarea").bounding_box()  # in view: write at once
    assert 0 <= box["y"] and box["y"] + box["height"] <= 1280
    # the ADL levels answer arrow keys; the save bar stays on screen in a long form
    page.locator("#section-adl [data-edit]").tap()
    first = page.locator('#section-adl fieldset[data-key="eating"] button.level').first
    first.focus()
    page.keyboard.press("ArrowRight")
    assert (
        page.locator('#section-adl fieldset[data-key="eating"] button[data-level="supervision"]').get_attribute(
            "aria-pressed"
        )
        == "true"
    )
    assert page.locator("#section-adl .form-actions button[type=submit]").is_visible()
    box = page.locator("#section-adl .form-actions").bounding_box()
    assert box["y"] + box["height"] <= 1280 + 1
    page.context.close()


@pytest.mark.browser
def test_on_a_phone_the_header_is_compact(browser, demo_server):
    page = open_patient(browser, demo_server, "cm.tanaka", viewport={"width": 390, "height": 844}, has_touch=True)
    assert page.locator("header.top").bounding_box()["height"] < 844 * 0.15
    page.context.close()


@pytest.mark.browser
def test_leaving_the_page_with_an_unsaved_edit_or_note_asks_first(browser, demo_server):
    """Found walking the tablet: the language link (or any link) dropped an open edit and
    a typed note without a word."""
    page = open_patient(browser, demo_server, "cm.tanaka", has_touch=True)
    asked = []
    page.on("dialog", lambda d: (asked.append(d.type), d.dismiss()))
    page.locator("#section-adl [data-edit]").tap()
    page.locator('#section-adl fieldset[data-key="eating"] button.level[aria-pressed="false"]').first.tap()
    page.locator("#note-form textarea").fill("書きかけの申し送り")
    page.locator("header a:has-text('English')").click()
    page.wait_for_timeout(500)
    assert asked == ["beforeunload"]
    assert page.locator("#note-form textarea").input_value() == "書きかけの申し送り"  # still here, still typed
    assert page.locator("#section-adl form").is_visible()
    page.context.close()


@pytest.mark.browser
def test_cancel_discards_the_edit(browser, demo_server):
    """やめる left the changed level selected, so the next 保存 saved what was cancelled."""
    page = open_patient(browser, demo_server, "cm.tanaka", name="高橋 ハル", has_touch=True)
    section = page.locator("#section-adl")
    section.locator("[data-edit]").tap()
    section.locator('fieldset[data-key="bathing"] button[data-level="full_assist"]').tap()
    section.locator("[data-cancel]").tap()
    page.wait_for_timeout(500)
    page.locator("#section-adl [data-edit]").tap()
    pressed = page.locator('#section-adl fieldset[data-key="bathing"] button[aria-pressed="true"]')
    assert pressed.count() == 0  # as saved: nothing chosen for 入浴
    asked = []
    page.on("dialog", lambda d: (asked.append(d.type), d.dismiss()))
    page.goto("/")  # an open form with nothing changed leaves without a question
    assert asked == []
    page.context.close()
