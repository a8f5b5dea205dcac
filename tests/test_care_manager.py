"""Issue 12: the care manager's walk on a tablet (Debian Chromium) — registering a
patient with consent, withdrawing it, building the team with the picker — and the
whole day walked in landscape and portrait, in Japanese and English, counting taps.

The walk leaves screenshots and the tap counts in test-artifacts/screenshots/ (walk-*);
the README's gallery is made from them."""

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from models import AuditEntry
from renkei.common import db
from tests.helpers import ROOT, TABLET, R, days_ago, signed_in_page, team

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "is_mobile": False, "device_scale_factor": 1}
SHOTS = ROOT / "test-artifacts" / "screenshots"


# --- through the API -------------------------------------------------------------------


def test_registering_with_consent_is_one_step_and_a_refused_consent_registers_nobody(api):
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    body = {
        "name": "佐藤 一",
        "name_kana": "さとう はじめ",
        "birth_date": "1940-01-01",
        "sex": "male",
        "consent": {"obtained_on": str(days_ago(7)), "obtained_by": "田中", "scope": "在宅療養の情報共有"},
    }
    future = days_ago(-1).isoformat()  # tomorrow in Japan, where consent dates are judged
    bad = api.call("cm", "POST", R, dict(body, consent=dict(body["consent"], obtained_on=future)))
    assert bad.status_code == 422 and "obtained_on" in bad.json["errors"]["consent"]
    assert api.call("cm", "GET", R).json["items"] == []  # nothing half-registered
    made = api.call("cm", "POST", R, body)
    assert made.status_code == 201 and made.json["consent"] is True
    pid = made.json["id"]
    api.join(pid, "doc", "primary_physician", by="cm")
    assert api.call("doc", "GET", f"{R}/{pid}").json["name"] == "佐藤 一"  # shared at once
    consents = api.call("cm", "GET", f"{R}/{pid}/consents").json["items"]
    assert [(c["obtained_on"], c["active"]) for c in consents] == [(body["consent"]["obtained_on"], True)]
    with api.app.app_context():  # auditors find it where consents are: its own entry
        logged = db.session.execute(
            select(AuditEntry.action, AuditEntry.detail).where(AuditEntry.patient_id == pid).order_by(AuditEntry.seq)
        ).all()
    assert [a for a, _ in logged][:2] == ["consent.create", "patient.create"]
    assert logged[0][1] == f"consent={consents[0]['id']};at_registration"


def test_the_team_picker_finds_people_by_name_and_organisation(api):
    pid = team(api)  # cm, doc, nurse
    api.user("ph", "pharmacist", display_name="伊藤 健")
    api.user("ph2", "pharmacist", display_name="伊藤 100%")

    def found(q, **extra):
        r = api.call("cm", "GET", "/api/v1/users?" + "&".join(f"{k}={v}" for k, v in {"q": q, **extra}.items()))
        assert r.status_code == 200, r.json
        return sorted(u["display_name"] for u in r.json["items"])

    assert found("伊藤") == ["伊藤 100%", "伊藤 健"]
    assert found("伊藤 健") == found("伊藤　健") == found("伊藤健") == ["伊藤 健"]  # every word; spaces optional
    assert found("100%25") == ["伊藤 100%"]  # % is a character, not a wildcard
    assert found("テスト診療所 伊藤") == ["伊藤 100%", "伊藤 健"]  # organisation and name
    assert len(found("伊藤", limit=1)) == 1
    assert "login" not in api.call("cm", "GET", "/api/v1/users?q=伊藤").json["items"][0]
    assert api.call("cm", "GET", "/api/v1/users?q=").status_code == 422
    assert pid


# --- in the browser ----------------------------------------------------------------------


def team_page(browser, base, patient):
    """The care manager's チーム・同意 page of a patient, reached from the care list."""
    page = signed_in_page(browser, base, "cm.tanaka", DEMO_PASSWORD, **TABLET)
    page.locator(f"text={patient}").tap()
    page.wait_for_selector("#section-adl")
    page.goto(page.url + "/team")
    return page


@pytest.mark.browser
def test_a_care_manager_registers_a_patient_with_consent_from_the_page(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **TABLET)
    page.locator("a:has-text('利用者を登録')").tap()
    form = page.locator("#register-form")
    assert not form.locator("input[name=consented]").is_checked()  # consent is a deliberate act
    form.locator("label.check").tap()
    form.locator("input[name=name]").fill("渡辺 千代")
    form.locator("input[name=obtained_on]").fill((date.today() + timedelta(days=3)).isoformat())
    form.locator("button[type=submit]").tap()
    # each problem in Japanese on its field; what was typed stays
    page.wait_for_selector("#register-form .field-error")
    errors = {
        el.evaluate(
            "e => e.previousElementSibling.getAttribute('name') || e.previousElementSibling.dataset.key"
        ): el.inner_text()
        for el in form.locator(".field-error").all()
    }
    assert errors == {
        "name_kana": "入力してください",
        "birth_date": "入力してください",
        "sex": "選んでください",
        "obtained_on": "同意日は今日以前の日付にしてください",
    }, errors
    assert form.locator("input[name=name]").input_value() == "渡辺 千代"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "register-errors.png"))
    form.locator("input[name=name_kana]").fill("わたなべ ちよ")
    form.locator("input[name=birth_date]").fill("1936-05-05")
    form.locator("label.pill:has-text('女性')").tap()
    form.locator("input[name=obtained_on]").fill(date.today().isoformat())
    form.locator("button[type=submit]").tap()
    page.wait_for_selector("h1:has-text('渡辺 千代')")
    assert "同意未取得" not in page.locator("main").inner_text()
    # the team page shows the consent; withdrawing it is recorded and hides the name
    page.goto(page.url + "/team")
    consent = page.locator("li:has(.badge.ok)")
    assert "在宅療養に関わる医療・介護関係者間での情報共有" in consent.inner_text()
    page.once("dialog", lambda d: d.accept())
    consent.locator("[data-withdraw-consent]").tap()
    page.wait_for_selector("li .badge:has-text('撤回')")
    page.goto("/")
    row = page.locator(".patient-list li:has-text('同意撤回のため非表示')")
    assert row.count() == 1 and row.locator(".badge.warn").inner_text() == "同意撤回"
    # not a dead end: the record says why in Japanese and leads to recording a new consent
    row.locator("a").tap()
    page.wait_for_selector("text=同意が記録されていないか、撤回されています")
    page.locator("a:has-text('チーム・同意で同意を記録する')").tap()
    page.wait_for_selector("#consent-form")
    assert page.locator("#consent-form input[name=obtained_on]").input_value() == date.today().isoformat()
    page.locator("#consent-form button[type=submit]").tap()
    page.wait_for_selector("li .badge.ok")
    page.goto("/")
    assert page.locator(".patient-list li:has-text('渡辺 千代')").count() == 1
    page.context.close()


@pytest.mark.browser
def test_the_team_picker_searches_and_hides_current_members(browser, demo_server):
    page = team_page(browser, demo_server, "高橋 ハル")
    assert page.locator("#member-form select[name=user_id], [data-pick]").count() == 0  # nobody listed up front
    search = page.locator("#people-search")
    search.fill("鈴木")  # on the team already
    page.wait_for_selector("#people-results li.empty")
    search.fill("薬局")  # by organisation
    page.wait_for_selector("#people-results button:has-text('伊藤 健')")
    assert page.locator("#people-results button").count() == 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "team-picker.png"))
    search.fill("小林")
    page.locator("#people-results button:has-text('小林 誠')").tap()
    assert page.locator("#people-picked").inner_text().startswith("小林 誠")
    roles = page.locator("#member-form select[name=role] option:not([disabled])").all_inner_texts()
    assert sorted(roles) == ["主治医", "副主治医"]
    page.locator("#member-form select[name=role]").select_option("backup_physician")
    page.locator("#member-form button[type=submit]").tap()
    page.wait_for_selector("table.grid td:has-text('小林 誠')")
    search = page.locator("#people-search")
    search.fill("小林")  # now a member: no longer offered, and said so
    page.wait_for_selector("#people-results li.empty:has-text('小林 誠さんはすでにチームにいます')")
    # Enter (the soft keyboard's 検索 key) picks the first result; it never submits an earlier pick
    search.fill("加藤")
    page.locator("#people-results button:has-text('加藤 陽子')").tap()
    search.fill("伊藤健")  # no space needed
    page.wait_for_selector("#people-results button:has-text('伊藤 健')")
    search.press("Enter")
    assert page.locator("#people-picked").inner_text().startswith("伊藤 健")
    assert page.locator("table.grid td:has-text('伊藤 健')").count() == 0  # picked, not yet added
    page.context.close()


@pytest.mark.browser
def test_adding_without_choosing_someone_says_so_on_the_picker(browser, demo_server):
    page = team_page(browser, demo_server, "高橋 ハル")
    page.locator("#member-form button[type=submit]").tap()
    error = page.locator('#member-form [data-key="user_id"] + .field-error')
    assert error.inner_text() == "追加する人を検索して選んでください"
    page.context.close()


@pytest.mark.browser
def test_the_care_list_filter_holds_after_going_back_and_says_when_nothing_matches(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **PORTRAIT)
    names = page.locator(".patient-list li .name").all_inner_texts()
    kana = [n.split("\n")[-1] for n in names if "非表示" not in n]
    assert kana == sorted(kana)  # 五十音順
    page.fill("#patient-filter", "やま")
    page.locator(".patient-list li:visible a").first.tap()
    page.wait_for_selector("#section-adl")
    page.go_back()
    page.wait_for_selector("#patient-filter")
    page.wait_for_timeout(300)
    assert page.locator("#patient-filter").input_value() == "やま"
    assert page.locator(".patient-list li:visible").count() == 1
    page.fill("#patient-filter", "該当なしの名前")
    assert page.locator("#no-match").is_visible()
    page.context.close()


@pytest.mark.browser
def test_in_portrait_the_notes_button_steps_aside_once_the_notes_are_on_screen(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **PORTRAIT)
    page.locator(".patient-list a:has-text('山田 太郎')").tap()
    page.wait_for_selector("#section-adl")
    jump = page.locator("a.jump-notes")
    assert jump.is_visible()
    jump.tap()
    page.wait_for_timeout(500)
    assert not jump.is_visible()  # not over the note box or the team list
    page.mouse.wheel(0, -100000)
    page.wait_for_timeout(500)
    assert jump.is_visible()
    page.context.close()


class Taps:
    """Counts the taps a person makes (typing is not a tap)."""

    def __init__(self):
        self.count = 0

    def __call__(self, locator):
        locator.tap()
        self.count += 1


@pytest.mark.browser
@pytest.mark.parametrize("layout,lang", [("landscape", "ja"), ("portrait", "ja"), ("landscape", "en")])
def test_the_care_managers_day_takes_few_taps(browser, demo_server, layout, lang):
    """From the care list: open a patient, change an ADL level and post a note; at most 3
    taps for the ADL change and 2 for the note once the patient is open."""
    page = signed_in_page(
        browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **(TABLET if layout == "landscape" else PORTRAIT)
    )
    words = {
        "ja": {"edit": "編集", "save": "保存", "post": "投稿", "register": "利用者を登録"},
        "en": {"edit": "Edit", "save": "Save", "post": "Post", "register": "Register a patient"},
    }[lang]
    if lang == "en":
        page.goto("/?lang=en")
    SHOTS.mkdir(parents=True, exist_ok=True)

    def shot(step):
        page.wait_for_timeout(200)
        page.screenshot(path=str(SHOTS / f"walk-{layout}-{lang}-{step}.png"))

    assert page.locator(f"a:has-text('{words['register']}')").is_visible()
    shot("1-list")
    page.locator(".patient-list a:has-text('山田 太郎')").tap()
    page.wait_for_selector("#section-adl")
    page.wait_for_timeout(300)  # the socket is connected
    shot("2-patient")

    adl, tap = page.locator("#section-adl"), Taps()
    version = int(adl.get_attribute("data-version"))
    tap(adl.locator(f"[data-edit]:has-text('{words['edit']}')"))
    tap(adl.locator('fieldset[data-key="eating"] button.level[aria-pressed="false"]').first)
    shot("3-adl-edit")
    tap(adl.locator(f".form-actions button[type=submit]:has-text('{words['save']}')"))
    page.wait_for_selector(f"#section-adl[data-version='{version + 1}']")
    adl_taps = tap.count
    shot("4-adl-saved")

    tap, text = Taps(), f"{layout}/{lang}: 食事の様子を共有します"
    tap(page.locator("a.jump-notes") if layout == "portrait" else page.locator("#note-form textarea"))
    assert page.evaluate("document.activeElement.name") == "body"  # ready to write
    page.keyboard.insert_text(text)
    tap(page.locator(f"#note-form button[type=submit]:has-text('{words['post']}')"))
    page.wait_for_selector(f"#timeline li:has-text('{text}')")
    note_taps = tap.count
    shot("5-note-posted")
    (SHOTS / f"walk-{layout}-{lang}-taps.json").write_text(json.dumps({"adl_change": adl_taps, "note": note_taps}))
    assert adl_taps <= 3 and note_taps <= 2
    page.context.close()
