"""Issue 13: the physician's morning — the 訪問前サマリー shows what changed since my last
look field by field (deletions included, with who and when), what must not be missed
(DNAR, allergies), every note since then, patients that need me first, and
「すべて確認しました」. Debian Chromium against the demo service."""

import time

import pytest
import requests

from tests.helpers import ROOT, TABLET, R, enrol_second_factor, signed_in_page

DEMO_PASSWORD = "renkei-demo-2026"
SHOTS = ROOT / "test-artifacts" / "screenshots"


def token(base, login):
    return requests.post(base + "/api/v1/auth/tokens", json={"login": login, "password": DEMO_PASSWORD}).json()["token"]


def call(base, login, method, path, body=None, **headers):
    r = requests.request(
        method, base + path, json=body, headers={"Authorization": "Bearer " + token(base, login), **headers}
    )
    assert r.status_code < 300, r.text
    return r


@pytest.mark.browser
def test_the_summary_shows_each_change_since_my_last_look_and_what_must_not_be_missed(browser, demo_server):
    doctor = signed_in_page(browser, demo_server, "dr.sato", DEMO_PASSWORD, **TABLET)
    doctor.locator(".patient-list a:has-text('山田 太郎')").click()
    doctor.wait_for_selector("#section-adl")  # the doctor's last look
    pid = doctor.url.rsplit("/", 1)[1]
    yamada = next(p for p in call(demo_server, "cm.tanaka", "GET", R).json()["items"] if p["id"] == pid)
    assert yamada["name"] == "山田 太郎"

    # after that look: the care manager deletes one ADL item and changes another; notes arrive
    adl = call(demo_server, "cm.tanaka", "GET", f"{R}/{pid}/record/adl").json()
    content = dict(adl["content"])
    del content["bathing"]
    content["eating"] = {"level": "partial_assist", "note": "むせ込み増加"}
    call(
        demo_server,
        "cm.tanaka",
        "PUT",
        f"{R}/{pid}/record/adl",
        {"content": content},
        **{"If-Match": f'"{adl["version"]}"'},
    )
    call(
        demo_server,
        "cm.tanaka",
        "POST",
        f"{R}/{pid}/notes",
        {"body": "デイサービスの曜日が変わりました", "category": "contact"},
    )
    call(
        demo_server,
        "ns.suzuki",
        "POST",
        f"{R}/{pid}/notes",
        {"body": "夜間の息切れ、至急相談", "category": "observation", "urgent": True},
    )

    doctor.goto("/summary")
    first = doctor.locator("article.summary").first
    assert "山田 太郎" in first.locator("h2").inner_text()  # the patient who needs me comes first
    assert "心肺蘇生を希望しない" in first.locator(".dnar").inner_text()
    assert "ペニシリン" in first.locator(".allergies").inner_text()
    change = first.locator('[data-changed="adl"]')
    assert "田中 美咲" in change.locator("h4").inner_text()  # who changed it, and when
    rows = {
        r.locator("td").nth(0).inner_text(): (r.locator(".old").inner_text(), r.locator(".new").inner_text())
        for r in change.locator("tr:has(td)").all()
    }
    assert rows["入浴"] == ("全介助（訪問入浴 週2回）", "（削除）")  # a deletion is shown
    assert rows["食事"] == ("見守り（むせ込みあり、とろみ剤使用）", "一部介助（むせ込み増加）")
    assert "排泄" not in rows  # unchanged fields are not repeated
    notes = first.locator(".notes").inner_text()
    assert "デイサービスの曜日が変わりました" in notes and "夜間の息切れ" in notes  # every note, not only urgent
    SHOTS.mkdir(parents=True, exist_ok=True)
    doctor.screenshot(path=str(SHOTS / "physician-summary-diff.png"), full_page=True)

    # 「すべて確認しました」: both notes acknowledged; the summary is a glance, so the changes stay
    first.locator("[data-ack-all]").click()
    doctor.wait_for_load_state("load")
    doctor.wait_for_timeout(500)
    first = doctor.locator("article.summary", has_text="山田 太郎")
    assert first.locator("[data-ack-all]").count() == 0 and first.locator(".badge.urgent").count() == 0
    assert first.locator('[data-changed="adl"]').count() == 1
    timeline = call(demo_server, "dr.sato", "GET", f"{R}/{pid}/notes").json()["items"]
    new = [n for n in timeline if n["body"] in ("デイサービスの曜日が変わりました", "夜間の息切れ、至急相談")]
    assert len(new) == 2 and all(n["acknowledged_by_me"] for n in new)
    doctor.context.close()


def find_by_name(page, name, birth, otp):
    page.goto("/breakglass")
    page.locator("#breakglass-form label.pill:has-text('氏名と生年月日')").click()
    page.fill("#breakglass-form input[name=name]", name)
    page.fill("#breakglass-form input[name=birth_date]", birth)
    page.fill("#breakglass-form textarea[name=reason]", "夜間の往診依頼、既往歴を確認")
    page.fill("#breakglass-form input[name=otp]", otp)
    page.click("#breakglass-form button[type=submit]")


@pytest.mark.browser
def test_the_on_call_finds_a_patient_by_name_and_birth_date_and_the_team_sees_it(browser, demo_server):
    # finding a patient for break-glass needs a second factor: enrolled below, once signed in
    doctor = signed_in_page(browser, demo_server, "dr.sato", DEMO_PASSWORD, **TABLET)  # not on 中村 翔's team
    nurse = signed_in_page(browser, demo_server, "ns.suzuki", DEMO_PASSWORD, **TABLET)  # nor is she
    team = signed_in_page(browser, demo_server, "sw.kato", DEMO_PASSWORD, **TABLET)
    team.locator(".patient-list a:has-text('中村 翔')").click()
    team.wait_for_selector("#section-adl")
    team.wait_for_timeout(500)  # the socket is connected

    find_by_name(
        doctor, "中村 翔", "1995-07-22", enrol_second_factor(demo_server, "dr.sato", DEMO_PASSWORD).at(time.time() + 30)
    )
    doctor.wait_for_selector(
        "#breakglass-form .status:has-text('該当する利用者が見つかりません')"
    )  # Japanese, not "No such resource"
    doctor.context.close()

    find_by_name(
        nurse,
        "なかむら しょう",
        "1995-07-21",
        enrol_second_factor(demo_server, "ns.suzuki", DEMO_PASSWORD).at(time.time() + 30),
    )
    nurse.wait_for_selector(".banner.breakglass")
    assert "中村 翔" in nurse.locator("h1").inner_text() and nurse.locator("[data-edit]").count() == 0
    nurse.context.close()

    team.wait_for_selector("#breakglass-live:visible", timeout=10000)  # live, on the open page
    entry = team.locator("#timeline li.emergency")
    entry.wait_for()
    assert "鈴木 花子" in entry.inner_text() and "夜間の往診依頼" in entry.inner_text()
    team.goto("/")
    assert team.locator(".patient-list li:has-text('中村 翔') .badge:has-text('緊急時アクセス中')").count() == 1
    team.context.close()
