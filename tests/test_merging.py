"""Issue 31: two people editing one section keep both their changes — list rows are
followed by their id and groups field by field, so only what both changed is asked
(docs/ARCHITECTURE.md, "Merging two people's edits"). Debian Chromium on a tablet."""

import pytest
import requests

from tests.helpers import signed_in_page

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "device_scale_factor": 2}


def token(base, login):
    r = requests.post(base + "/api/v1/auth/tokens", json={"login": login, "password": DEMO_PASSWORD})
    return {"Authorization": "Bearer " + r.json()["token"]}


def yamada_with_support_worker(base):
    """山田 太郎's id, with 加藤 陽子 (相談支援専門員, who may write 家族による介護) on his team."""
    cm = token(base, "cm.tanaka")
    pid = next(
        p["id"] for p in requests.get(base + "/api/v1/patients", headers=cm).json()["items"] if p["name"] == "山田 太郎"
    )
    sw = next(
        u
        for u in requests.get(base + "/api/v1/users?q=加藤", headers=cm).json()["items"]
        if u["display_name"] == "加藤 陽子"
    )
    r = requests.post(
        base + f"/api/v1/patients/{pid}/team",
        json={"user_id": sw["id"], "role": "disability_support_worker"},
        headers=cm,
    )
    assert r.status_code in (201, 409), r.text
    return pid, cm


def edit_family_care(browser, base, login, **ctx):
    page = signed_in_page(browser, base, login, DEMO_PASSWORD, **ctx)
    page.click("text=山田 太郎")
    page.wait_for_selector("#section-family_care")
    page.wait_for_timeout(300)  # the socket is connected
    page.locator("#section-family_care [data-edit]").click()
    return page, page.locator("#section-family_care form")


@pytest.mark.browser
def test_a_row_and_a_group_changed_by_two_people_keep_both_changes(browser, demo_server):
    pid, cm_auth = yamada_with_support_worker(demo_server)
    path = f"{demo_server}/api/v1/patients/{pid}/record/family_care"
    v = requests.get(path, headers=cm_auth).json()["version"]
    cm, cm_form = edit_family_care(
        browser, demo_server, "cm.tanaka", viewport={"width": 1280, "height": 800}, has_touch=True
    )
    sw, sw_form = edit_family_care(browser, demo_server, "sw.kato", **PORTRAIT)

    # The support worker corrects key person 1's phone, writes 夜間 and the main carer.
    first = sw_form.locator('fieldset[data-key="key_contacts"] [data-row]').first
    first.locator('input[data-key="phone"]').fill("090-5550-2999")
    sw_form.locator('fieldset[data-key="availability"] input[data-key="night"]').fill("長女が対応")
    sw_form.locator('input[data-key="main_carer"]').fill("長女（同居）")
    sw_form.locator("button[type=submit]").tap()
    sw.wait_for_selector(f"#section-family_care[data-version='{v + 1}']")

    # While she edits, the care manager is told who changed the section.
    cm.wait_for_selector("#section-family_care .status:has-text('加藤 陽子')", timeout=10000)
    # She adds a key person, writes 朝, a note on key person 1, and her own main carer.
    cm_form.locator('fieldset[data-key="key_contacts"] [data-add-row]').tap()
    added = cm_form.locator('fieldset[data-key="key_contacts"] [data-row]').last
    added.locator('input[data-key="name"]').fill("山田 一郎")
    added.locator('input[data-key="relationship"]').fill("長男")
    added.locator('input[data-key="phone"]').fill("090-5550-2002")
    first = cm_form.locator('fieldset[data-key="key_contacts"] [data-row]').first
    first.locator('input[data-key="note"]').fill("平日の日中は仕事")
    cm_form.locator('fieldset[data-key="availability"] input[data-key="morning"]').fill("長女")
    cm_form.locator('input[data-key="main_carer"]').fill("長女・長男")
    cm_form.locator(".form-actions button[type=submit]").tap()

    # Only the field both changed is asked, by its label; one save button on screen.
    choice = cm_form.locator(".conflict fieldset.merge-choice")
    choice.first.wait_for(state="visible")
    assert choice.count() == 1 and choice.locator("legend").inner_text() == "主介護者"
    assert "長女・長男" in choice.locator(".choice-mine").inner_text()
    assert "長女（同居）" in choice.locator(".choice-theirs").inner_text()
    saves = [b for b in cm_form.locator("button.primary").all() if b.is_visible()]
    assert len(saves) == 1, [b.inner_text() for b in saves]
    choice.locator(".choice-mine").tap()
    cm_form.locator(".conflict button.primary").tap()
    cm.wait_for_selector(f"#section-family_care[data-version='{v + 2}']")

    content = requests.get(path, headers=cm_auth).json()["content"]
    contacts = content["key_contacts"]
    assert [c["name"] for c in contacts] == ["山田 花子", "山田 一郎"]
    assert contacts[0]["phone"] == "090-5550-2999" and contacts[0]["note"] == "平日の日中は仕事"
    assert content["availability"] == {"morning": "長女", "night": "長女が対応"}
    assert content["main_carer"] == "長女・長男"
    # The saved section says so and whose changes it took, and marks what changed.
    section = cm.locator("#section-family_care")
    told = section.locator(".notice.saved").inner_text()
    assert "加藤 陽子" in told and "キーパーソン・連絡先 1 › 電話" in told and "夜間" in told
    assert section.locator("dd.changed").count() >= 3
    sw.wait_for_selector("#section-family_care:has-text('山田 一郎')", timeout=10000)
    cm.context.close()
    sw.context.close()


@pytest.mark.browser
def test_a_row_removed_by_one_and_changed_by_the_other_is_asked(browser, demo_server):
    pid, cm_auth = yamada_with_support_worker(demo_server)
    path = f"{demo_server}/api/v1/patients/{pid}/record/family_care"
    v = requests.get(path, headers=cm_auth).json()["version"]
    cm, cm_form = edit_family_care(browser, demo_server, "cm.tanaka")
    sw, sw_form = edit_family_care(browser, demo_server, "sw.kato")
    sw_form.locator('fieldset[data-key="key_contacts"] [data-row] input[data-key="phone"]').last.fill("03-5550-9999")
    sw_form.locator("button[type=submit]").click()
    sw.wait_for_selector(f"#section-family_care[data-version='{v + 1}']")
    cm_form.locator('fieldset[data-key="key_contacts"] [data-row] [data-remove-row]').last.click()
    cm_form.locator(".form-actions button[type=submit]").click()
    choice = cm_form.locator(".conflict fieldset.merge-choice")
    choice.first.wait_for(state="visible")
    rows = len(requests.get(path, headers=cm_auth).json()["content"]["key_contacts"])
    assert choice.count() == 1 and choice.locator("legend").inner_text() == f"キーパーソン・連絡先 {rows}"
    assert "この行を削除" in choice.locator(".choice-mine").inner_text()
    assert "03-5550-9999" in choice.locator(".choice-theirs").inner_text()
    choice.locator(".choice-theirs").click()  # keep the corrected row
    cm_form.locator(".conflict button.primary").click()
    cm.wait_for_selector(f"#section-family_care[data-version='{v + 1}'] .notice:has-text('変更はありません')")
    after = requests.get(path, headers=cm_auth).json()
    assert after["version"] == v + 1 and after["content"]["key_contacts"][-1]["phone"] == "03-5550-9999"
    cm.context.close()
    sw.context.close()
