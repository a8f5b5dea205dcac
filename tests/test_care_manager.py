"""Issue 12: the care manager's walk on a tablet (Debian Chromium) — registering a
patient with consent, withdrawing it, building the team with the picker — and the
whole day walked in landscape and portrait, in Japanese and English, counting taps.

The walk leaves screenshots and the tap counts in test-artifacts/screenshots/ (walk-*);
the README's gallery is made from them."""
import json
from datetime import date, timedelta

import pytest

from tests.helpers import R, ROOT, TABLET, signed_in_page, team

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "is_mobile": False,
            "device_scale_factor": 1}
SHOTS = ROOT / "test-artifacts" / "screenshots"


# --- through the API -------------------------------------------------------------------

def test_registering_with_consent_is_one_step_and_a_refused_consent_registers_nobody(api):
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    body = {"name": "佐藤 一", "name_kana": "さとう はじめ", "birth_date": "1940-01-01", "sex": "male",
            "consent": {"obtained_on": "2026-11-01", "obtained_by": "田中", "scope": "在宅療養の情報共有"}}
    future = (date.today() + timedelta(days=1)).isoformat()
    bad = api.call("cm", "POST", R, dict(body, consent=dict(body["consent"], obtained_on=future)))
    assert bad.status_code == 422 and "obtained_on" in bad.json["errors"]["consent"]
    assert api.call("cm", "GET", R).json["items"] == []  # nothing half-registered
    made = api.call("cm", "POST", R, body)
    assert made.status_code == 201 and made.json["consent"] is True
    pid = made.json["id"]
    api.join(pid, "doc", "primary_physician", by="cm")
    assert api.call("doc", "GET", f"{R}/{pid}").json["name"] == "佐藤 一"  # shared at once
    consents = api.call("cm", "GET", f"{R}/{pid}/consents").json["items"]
    assert [(c["obtained_on"], c["active"]) for c in consents] == [("2026-11-01", True)]


def test_the_team_picker_finds_people_by_name_and_organisation(api):
    pid = team(api)  # cm, doc, nurse
    api.user("ph", "pharmacist", display_name="伊藤 健")
    api.user("ph2", "pharmacist", display_name="伊藤 100%")

    def found(q, **extra):
        r = api.call("cm", "GET", "/api/v1/users?" + "&".join(f"{k}={v}" for k, v in {"q": q, **extra}.items()))
        assert r.status_code == 200, r.json
        return sorted(u["display_name"] for u in r.json["items"])
    assert found("伊藤") == ["伊藤 100%", "伊藤 健"]
    assert found("伊藤 健") == found("伊藤　健") == ["伊藤 健"]  # every word; a full-width space splits too
    assert found("100%25") == ["伊藤 100%"]  # % is a character, not a wildcard
    assert found("テスト診療所 伊藤") == ["伊藤 100%", "伊藤 健"]  # organisation and name
    assert len(found("伊藤", limit=1)) == 1
    assert "login" not in api.call("cm", "GET", "/api/v1/users?q=伊藤").json["items"][0]
    assert api.call("cm", "GET", "/api/v1/users?q=").status_code == 422
    assert pid


# --- in the browser ----------------------------------------------------------------------

@pytest.mark.browser
def test_a_care_manager_registers_a_patient_with_consent_from_the_page(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **TABLET)
    page.locator("a:has-text('利用者を登録')").tap()
    form = page.locator("#register-form")
    form.locator("input[name=name]").fill("渡辺 千代")
    form.locator("input[name=obtained_on]").fill((date.today() + timedelta(days=3)).isoformat())
    form.locator("button[type=submit]").tap()
    # each problem in Japanese on its field; what was typed stays
    page.wait_for_selector("#register-form .field-error")
    errors = {el.evaluate("e => e.previousElementSibling.getAttribute('name') || e.previousElementSibling.dataset.key"):
              el.inner_text() for el in form.locator(".field-error").all()}
    assert errors == {"name_kana": "入力してください", "birth_date": "入力してください", "sex": "選んでください",
                      "obtained_on": "同意日は今日以前の日付にしてください"}, errors
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
    assert page.locator(".patient-list li:has-text('同意未取得のため非表示')").count() == 1
    page.context.close()


@pytest.mark.browser
def test_the_team_picker_searches_and_hides_current_members(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **TABLET)
    page.locator("text=高橋 ハル").tap()
    page.wait_for_selector("#section-adl")
    page.goto(page.url + "/team")
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
    search.fill("小林")  # now a member: no longer offered
    page.wait_for_selector("#people-results li.empty")
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
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD,
                          **(TABLET if layout == "landscape" else PORTRAIT))
    words = {"ja": {"edit": "編集", "save": "保存", "post": "投稿", "register": "利用者を登録"},
             "en": {"edit": "Edit", "save": "Save", "post": "Post", "register": "Register a patient"}}[lang]
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
