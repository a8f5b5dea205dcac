"""Issue 13: the auditor's question, "who saw my record?" — paging the whole access log,
a reversed date range refused, Japanese labels, a CSV a spreadsheet opens, and the
app's own page for an unknown address."""

import csv
import io
import re

import pytest
import requests

from renkei.common import work
from tests.helpers import TABLET, R, days_ago, signed_in_page, team

DEMO_PASSWORD = "renkei-demo-2026"


# --- through the API -------------------------------------------------------------------


def test_keyset_paging_walks_the_whole_log_once_newest_first(api):
    pid = team(api)
    for _ in range(12):
        api.call("cm", "GET", f"{R}/{pid}")
    everything = [
        int(line.split(",")[0])
        for line in api.call("admin", "GET", "/api/v1/audit/export.csv").get_data(as_text=True).strip().splitlines()[1:]
    ]
    seen, cursor = [], None
    while True:
        page = api.call("admin", "GET", "/api/v1/audit?limit=7" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # newest first, each entry once; the pages' own reads are appended after the export
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert set(everything) <= set(seen)


def test_a_reversed_date_range_is_a_422_naming_the_field(api):
    later, earlier = days_ago(1), days_ago(30)
    r = api.call("admin", "GET", f"/api/v1/audit?since={later}T00:00:00%2B09:00&until={earlier}T00:00:00%2B09:00")
    assert r.status_code == 422 and "until" in r.json["errors"]
    same = api.call("admin", "GET", f"/api/v1/audit?since={earlier}T00:00:00Z&until={earlier}T00:00:00Z")
    assert same.status_code == 200  # an empty range is not an error
    csv_reversed = api.call(
        "admin", "GET", f"/api/v1/audit/export.csv?since={later}T00:00:00Z&until={earlier}T00:00:00Z"
    )
    assert csv_reversed.status_code == 422


def test_live_connections_can_be_left_out_of_the_log_view(api):
    with api.app.test_request_context():
        unit = work.begin()
        for _ in range(3):
            unit.add_entry("realtime.connect", "ok")
        unit.commit()

    def actions(query=""):
        return {e["action"] for e in api.call("admin", "GET", "/api/v1/audit?limit=1000" + query).json["items"]}

    assert "realtime.connect" in actions()  # the API keeps every entry unless asked
    assert "realtime.connect" not in actions("&connections=false")
    assert actions("&connections=false&action=realtime.connect") == {"realtime.connect"}  # asked for by name


def test_an_auditor_finds_a_patient_by_name_in_a_post_body_and_the_log_keeps_no_name(api):
    pid = team(api)  # 連携 花子 / れんけい はなこ
    api.user("aud", "other", is_auditor=True)
    for typed in ("連携 花子", "レンケイハナコ"):
        found = api.call("aud", "POST", "/api/v1/audit/patients", {"name": typed}).json["items"]
        assert [(p["id"], p["name"], p["birth_date"]) for p in found] == [(pid, "連携 花子", "1940-02-03")]
        assert set(found[0]) == {"id", "name", "name_kana", "birth_date"}  # nothing clinical
    assert api.call("aud", "POST", "/api/v1/audit/patients", {"name": "連携"}).json["items"] == []  # exact only
    assert api.call("cm", "POST", "/api/v1/audit/patients", {"name": "連携 花子"}).status_code == 403
    # administrators never learn who is a patient (a security review: they could, here)
    assert api.call("admin", "POST", "/api/v1/audit/patients", {"name": "連携 花子"}).status_code == 403
    searches = api.call("aud", "GET", "/api/v1/audit?action=audit.patient_search").json["items"]
    assert [e["outcome"] for e in searches] == ["denied", "denied", "ok", "ok", "ok"]  # newest first
    assert all(e["detail"].startswith("name=") for e in searches if e["outcome"] == "ok")
    assert [e["detail"].endswith("found=" + pid) for e in searches if e["outcome"] == "ok"] == [False, True, True]
    assert not any("連携" in (e["detail"] or "") or "レンケイ" in (e["detail"] or "") for e in searches)


# --- in the browser ----------------------------------------------------------------------


@pytest.mark.browser
def test_the_auditor_pages_back_past_100_entries_and_reads_labels_and_a_spreadsheet_csv(browser, demo_server):
    token = requests.post(
        demo_server + "/api/v1/auth/tokens", json={"login": "cm.tanaka", "password": DEMO_PASSWORD}
    ).json()["token"]
    for _ in range(110):  # enough entries for more than one page
        requests.get(demo_server + R, headers={"Authorization": "Bearer " + token})
    yamada = next(
        p["id"]
        for p in requests.get(demo_server + R, headers={"Authorization": "Bearer " + token}).json()["items"]
        if p["name"] == "山田 太郎"
    )
    requests.get(f"{demo_server}{R}/{yamada}/record", headers={"Authorization": "Bearer " + token})  # who saw it
    signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **TABLET).context.close()  # a socket connects
    page = signed_in_page(browser, demo_server, "auditor", DEMO_PASSWORD, viewport={"width": 1366, "height": 900})
    page.goto("/admin/audit")
    rows = page.locator("table.audit tr:has(td)")
    assert rows.count() == 100
    actions = set(page.locator("table.audit td:nth-child(4)").all_inner_texts())
    assert "担当利用者一覧" in actions and "patient.list" not in actions  # labels, not codes
    assert "リアルタイム接続" not in actions  # left out unless asked for
    assert set(page.locator("table.audit td:nth-child(7)").all_inner_texts()) <= {
        "成功",
        "拒否",
        "該当なし",
        "入力エラー",
        "競合",
        "未認証",
        "回数制限",
        "失敗",
    }
    newest = [int(s) for s in page.locator("table.audit td:nth-child(1)").all_inner_texts()]
    page.locator("#older").click()
    page.wait_for_url("**cursor=*")
    older = [int(s) for s in page.locator("table.audit td:nth-child(1)").all_inner_texts()]
    assert older and max(older) < min(newest)
    page.locator("text=最新の記録へ").click()
    page.wait_for_selector("#older")

    # the page's CSV: BOM, Japanese headers, Japan time with its offset, names beside ids
    page.select_option("select[name=actor_id]", label="田中 美咲")
    page.click("#audit-filter button[type=submit]")
    page.wait_for_url("**actor_id=*")
    with page.expect_download() as download:
        page.locator("a:has-text('CSV出力')").click()
    raw = open(download.value.path(), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0][:6] == ["番号", "日時（日本時間）", "操作者", "操作者ID", "所属", "操作"]
    body = table[1:]
    assert len(body) > 100 and {row[2] for row in body} == {"田中 美咲"}
    assert all(row[1].endswith("+09:00") for row in body)
    assert {row[4] for row in body} == {"みどり居宅介護支援事業所"} and "担当利用者一覧" in {row[5] for row in body}

    # "who saw my record?": the auditor types the patient's name; the log shows whose it is
    page.goto("/admin/audit")
    page.fill("#audit-patient input[name=name]", "やまだ たろう")
    page.click("#audit-patient button[type=submit]")
    page.wait_for_url("**patient_id=*")
    assert "山田 太郎" in page.locator("#filter-patient").inner_text()
    assert "やまだ" not in page.url and "%E3%82%84" not in page.url  # the name never travels in a URL
    assert page.url.endswith("patient_id=" + yamada)
    assert set(page.locator("table.audit td:nth-child(5)").all_inner_texts()) == {yamada}
    with page.expect_download() as download:
        page.locator("a:has-text('CSV出力')").click()
    table = list(csv.reader(io.StringIO(open(download.value.path(), "rb").read().decode("utf-8-sig"))))
    column = table[0].index("利用者")
    assert {row[column] for row in table[1:]} == {"山田 太郎"}

    # a reversed range says so in Japanese
    page.goto(f"/admin/audit?since={days_ago(1)}&until={days_ago(30)}")
    assert "期間の終わりが始まりより前です" in page.locator("p.error").inner_text()
    page.context.close()


@pytest.mark.browser
def test_an_unknown_address_gets_the_apps_own_page_and_the_site_has_an_icon(browser, demo_server):
    page = signed_in_page(browser, demo_server, "cm.tanaka", DEMO_PASSWORD, **TABLET)
    response = page.goto("/no/such/page")
    assert response.status == 404
    assert "見つかりません" in page.locator("h1").inner_text() and page.locator("header").count() == 1
    assert "Not Found" not in page.content()
    icon = requests.get(demo_server + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")
    assert page.locator("link[rel=icon]").count() == 1
    page.context.close()


def test_the_usage_page_counts_consents_emergency_accesses_and_notes_by_profession_and_exports_them(api):
    pid = team(api)  # with consent; the physician and the pharmacist on the team
    api.patient("cm", consent=False)
    api.user("er", "nurse")
    api.user("aud", "other", is_auditor=True)
    assert (
        api.call(
            "er", "POST", f"{R}/{pid}/breakglass", {"reason": "夜間の急変で確認", "otp": api.otp("er")}
        ).status_code
        == 201
    )
    for who in ("doc", "doc", "pharm"):
        api.call(who, "POST", f"{R}/{pid}/notes", {"body": "訪問しました", "category": "observation"})
    web = api.web("aud")
    page = web.get("/admin/usage").get_data(as_text=True)
    assert "直近30日" in page and "直近8週" in page  # the title no longer promises 30 days for an 8-week chart
    assert re.search(r'id="patients-with-consent">1 / 2<', page) and re.search(r'id="breakglass-count">1<', page)
    by_profession = page.split('id="notes-by-profession"')[1].split("</section>")[0]
    assert re.search(r"医師</td><td>2<", by_profession) and re.search(r"薬剤師</td><td>1<", by_profession)
    sheet = web.get("/admin/usage.csv")
    assert sheet.data.startswith("\ufeff".encode())
    rows = dict(csv.reader(io.StringIO(sheet.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows["同意が記録された利用者"] == "1" and rows["緊急時アクセス（直近30日）"] == "1"
    assert rows["連絡帳の投稿（医師）"] == "2"


def test_an_auditors_name_searches_are_rate_limited(api):
    from renkei.oversight import reading

    api.user("aud", "other", is_auditor=True)
    answers = [
        api.call("aud", "POST", "/api/v1/audit/patients", {"name": f"名前{i}"}).status_code
        for i in range(reading.SEARCHES_PER_WINDOW + 1)
    ]
    assert answers[:-1] == [200] * reading.SEARCHES_PER_WINDOW and answers[-1] == 429
