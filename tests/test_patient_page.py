"""Issue 31, the smaller items of a patient's page: a jump to each section, a clear
「保存しました」, dates and lengths refused with the limit named, charts that fit the
readings and answer a tap, the record on paper, and the next patient one tap away.
Debian Chromium on a tablet."""

import re

import pytest

from tests.helpers import TABLET, days_ago, signed_in_page, team

DEMO_PASSWORD = "renkei-demo-2026"
PORTRAIT = {"viewport": {"width": 800, "height": 1280}, "has_touch": True, "device_scale_factor": 1}


def test_a_record_date_more_than_a_year_ahead_is_refused_naming_the_range(api):
    pid = team(api)
    path = f"/api/v1/patients/{pid}/record/wishes"
    typo = api.call("cm", "PUT", path, {"content": {"discussed_on": "2099-01-01"}}, headers={"If-Match": '"0"'})
    assert typo.status_code == 422
    message = typo.json["errors"]["content"]["discussed_on"][0]
    assert message.startswith("Date out of range: from 1900-01-01 to "), message
    soon = days_ago(-30).isoformat()  # a meeting planned next month
    assert (
        api.call("cm", "PUT", path, {"content": {"discussed_on": soon}}, headers={"If-Match": '"0"'}).status_code == 200
    )


def open_yamada(browser, base, **shape):
    page = signed_in_page(browser, base, "cm.tanaka", DEMO_PASSWORD, **(shape or TABLET))
    page.click("text=山田 太郎")
    page.wait_for_selector("#section-adl")
    return page


@pytest.mark.browser
def test_a_section_is_one_tap_away_and_a_save_says_so_marking_what_changed(browser, demo_server):
    page = open_yamada(browser, demo_server, **PORTRAIT)
    page.locator("nav.jump a", has_text="ADL").tap()
    page.wait_for_timeout(400)
    box = page.locator("#section-adl").bounding_box()
    assert 0 <= box["y"] < 200, box  # at the top of the screen
    page.locator("#section-home [data-edit]").tap()
    page.locator('#section-home textarea[data-key="bed"]').fill("電動ベッド（3モーター）")
    page.locator("#section-home button[type=submit]").tap()
    notice = page.locator("#section-home .notice.saved")
    notice.wait_for()
    assert notice.inner_text() == "保存しました"
    changed = page.locator("#section-home dd.changed")
    assert changed.count() == 1 and changed.inner_text() == "電動ベッド（3モーター）"
    page.context.close()


@pytest.mark.browser
def test_a_refused_date_or_length_names_the_limit(browser, demo_server):
    page = open_yamada(browser, demo_server)
    form = page.locator("#section-wishes form")
    page.locator("#section-wishes [data-edit]").click()
    form.locator('input[data-key="discussed_on"]').fill("2099-01-01")
    form.locator('textarea[data-key="acp_notes"]').fill("あ" * 4001)
    form.locator("button[type=submit]").click()
    errors = form.locator(".field-error")
    errors.first.wait_for()
    text = " ".join(errors.all_inner_texts())
    assert re.search(r"1900-01-01から\d{4}-\d{2}-\d{2}までの日付にしてください", text), text
    assert "長すぎます（4000文字まで）" in text
    assert form.locator('input[data-key="discussed_on"]').get_attribute("max")  # the date picker stops there too
    page.context.close()


@pytest.mark.browser
def test_a_90_day_chart_fits_two_weeks_of_readings_with_readable_labels_and_answers_a_tap(browser, demo_server):
    page = open_yamada(browser, demo_server)
    page.goto(page.url + "/vitals?days=90")
    chart = page.locator('figure[data-chart="body_temperature"]')
    chart.wait_for()
    # The demo's two weeks of readings span the chart, not its last sixth.
    first = chart.locator("circle.tip").first
    width = chart.locator("svg.trend").evaluate("s => s.viewBox.baseVal.width")
    assert float(first.get_attribute("cx")) < width * 0.25
    smallest = chart.locator("svg.trend text").evaluate_all(
        "ts => Math.min(...ts.map(t => t.getBoundingClientRect().height))"
    )
    assert smallest >= 12, smallest  # on screen, at the tablet's width
    box = first.bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tapped = chart.locator(".tapped")
    tapped.wait_for()
    assert re.match(r"3\d\.\d ℃ · \d{4}-\d{2}-\d{2} \d{2}:\d{2} · 鈴木 花子$", tapped.inner_text()), tapped.inner_text()
    page.context.close()


@pytest.mark.browser
def test_the_record_prints_without_buttons_on_few_pages(browser, demo_server):
    page = open_yamada(browser, demo_server)
    page.click("text=記録を印刷")
    page.wait_for_selector("article.record-print")
    assert "慢性心不全" in page.inner_text("article.record-print")
    page.emulate_media(media="print")
    assert [b for b in page.locator("button, a.button").all() if b.is_visible()] == []
    pdf = page.pdf(format="A4")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= pages <= 3, pages
    page.context.close()


@pytest.mark.browser
def test_the_next_and_previous_patient_follow_the_care_list(browser, demo_server):
    page = open_yamada(browser, demo_server)
    page.goto("/")
    order = page.locator(".patient-list li[data-patient]").evaluate_all("ls => ls.map(l => l.dataset.patient)")
    assert len(order) >= 2
    page.goto(f"/patients/{order[0]}")
    here = 0
    for step, move in (("次の利用者", 1), ("次の利用者", 1), ("前の利用者", -1)):
        page.locator("nav.neighbours a", has_text=step).tap()
        here = (here + move) % len(order)
        page.wait_for_url(f"**/patients/{order[here]}")
        page.wait_for_selector("#section-adl")
    page.context.close()
