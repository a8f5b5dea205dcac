"""Issue 31: the 連絡帳 a team lives in — replies, search, 既読 by being seen, unread
counts on the care list (docs/API.md, "Notes"). Driven through the API as a tablet
would."""

from sqlalchemy import select, text

from models import UserEvent
from renkei.common import db
from tests.helpers import team

R = "/api/v1/patients"


def post(api, who, pid, body, **extra):
    r = api.call(who, "POST", f"{R}/{pid}/notes", {"body": body, "category": "contact", **extra})
    assert r.status_code == 201, r.json
    return r.json


def care_list_row(api, who, pid):
    return next(p for p in api.call(who, "GET", R).json["items"] if p["id"] == pid)


def test_a_reply_threads_under_the_first_note_of_its_thread(api):
    pid = team(api)
    first = post(api, "cm", pid, "明日の訪問時間を変更できますか")
    reply = post(api, "doc", pid, "14時にします", reply_to=first["id"])
    again = post(api, "cm", pid, "了解しました", reply_to=reply["id"])  # a reply to a reply
    assert first["reply_to"] is None
    assert reply["reply_to"] == first["id"] and again["reply_to"] == first["id"]
    listed = {n["id"]: n for n in api.call("pharm", "GET", f"{R}/{pid}/notes").json["items"]}
    assert listed[again["id"]]["reply_to"] == first["id"]


def test_a_reply_to_a_note_that_is_not_this_patients_is_refused_naming_the_field(api):
    pid = team(api)
    other = api.patient("cm")
    elsewhere = post(api, "cm", other, "別の利用者")
    for target in (elsewhere["id"], "00000000-0000-0000-0000-000000000000", "not-an-id"):
        r = api.call("cm", "POST", f"{R}/{pid}/notes", {"body": "返信", "category": "contact", "reply_to": target})
        assert r.status_code == 422 and "reply_to" in r.json["errors"], r.json
    assert api.call("cm", "GET", f"{R}/{pid}/notes").json["items"] == []  # nothing was posted


def test_search_finds_a_note_by_a_word_of_its_body_and_pages_like_the_list(api):
    pid = team(api)
    for i in range(7):
        post(api, "cm", pid, f"定期訪問 {i} 回目。褥瘡なし" if i % 2 else f"定期訪問 {i} 回目")
    post(api, "doc", pid, "ｶﾃｰﾃﾙを交換しました")  # half-width kana, searched as typed in full width
    found = api.call("pharm", "POST", f"{R}/{pid}/notes/search", {"text": "カテーテル"}).json
    assert [n["body"] for n in found["items"]] == ["ｶﾃｰﾃﾙを交換しました"] and found["next_cursor"] is None
    page = api.call("pharm", "POST", f"{R}/{pid}/notes/search", {"text": "褥瘡", "limit": 2}).json
    rest = api.call(
        "pharm", "POST", f"{R}/{pid}/notes/search", {"text": "褥瘡", "limit": 2, "cursor": page["next_cursor"]}
    ).json
    bodies = [n["body"] for n in page["items"] + rest["items"]]
    assert bodies == ["定期訪問 5 回目。褥瘡なし", "定期訪問 3 回目。褥瘡なし", "定期訪問 1 回目。褥瘡なし"]
    assert rest["next_cursor"] is None
    r = api.call("pharm", "POST", f"{R}/{pid}/notes/search", {"text": ""})
    assert r.status_code == 422 and "text" in r.json["errors"]
    # what was searched for is not written down anywhere
    with api.app.app_context():
        logged = db.session.execute(text("SELECT detail FROM audit_log WHERE action = 'note.search'")).scalars().all()
    assert logged and not any("褥瘡" in (d or "") or "カテーテル" in (d or "") for d in logged)


def test_a_note_seen_is_read_and_an_ack_is_seen_too(api):
    pid = team(api)
    note = post(api, "cm", pid, "ご家族より電話あり")
    urgent = post(api, "cm", pid, "発熱あり", urgent=True)
    assert api.call("doc", "POST", f"{R}/{pid}/notes/{note['id']}/seen").status_code == 204
    assert api.call("doc", "POST", f"{R}/{pid}/notes/{note['id']}/seen").status_code == 204  # once is enough
    assert api.call("pharm", "POST", f"{R}/{pid}/notes/{urgent['id']}/ack").status_code == 204
    listed = {n["id"]: n for n in api.call("cm", "GET", f"{R}/{pid}/notes").json["items"]}
    assert [s["user_id"] for s in listed[note["id"]]["seen_by"]] == [api.users["doc"]["id"]]
    assert listed[note["id"]]["acks"] == []  # seen is not 確認
    assert [s["user_id"] for s in listed[urgent["id"]]["seen_by"]] == [api.users["pharm"]["id"]]
    other = api.patient("cm")
    elsewhere = post(api, "cm", other, "別の利用者")
    assert api.call("doc", "POST", f"{R}/{pid}/notes/{elsewhere['id']}/seen").status_code == 404


def test_the_care_list_counts_each_persons_unread_notes_and_a_seen_note_stops_counting(api):
    pid = team(api)
    plain = post(api, "cm", pid, "ご家族より電話あり")
    urgent = post(api, "cm", pid, "発熱あり", urgent=True)
    post(api, "doc", pid, "自分の投稿は数えない")
    row = care_list_row(api, "doc", pid)
    assert (row["unread_notes"], row["unread_urgent"]) == (2, 1)
    assert (care_list_row(api, "cm", pid)["unread_notes"], care_list_row(api, "cm", pid)["unread_urgent"]) == (1, 0)
    api.call("doc", "POST", f"{R}/{pid}/notes/{plain['id']}/seen")
    row = care_list_row(api, "doc", pid)
    assert (row["unread_notes"], row["unread_urgent"]) == (1, 1)
    api.call("doc", "POST", f"{R}/{pid}/notes/{urgent['id']}/seen")  # seen, not yet 確認
    row = care_list_row(api, "doc", pid)
    assert (row["unread_notes"], row["unread_urgent"]) == (0, 0)
    assert row["urgent_unacknowledged"] == 1  # the escalation still waits for 確認
    assert care_list_row(api, "pharm", pid)["unread_notes"] == 3  # another person's count is their own


def test_seeing_a_note_tells_only_the_readers_other_pages(api):
    pid = team(api)
    note = post(api, "cm", pid, "ご家族より電話あり")
    api.call("doc", "POST", f"{R}/{pid}/notes/{note['id']}/seen")
    with api.app.app_context():
        told = db.session.execute(
            select(UserEvent.user_id, UserEvent.payload).where(UserEvent.name == "note.seen")
        ).all()
    assert [user for user, _ in told] == [api.users["doc"]["id"]]
    assert "電話" not in told[0][1] and note["id"] in told[0][1]  # identifiers only


def test_thirty_five_notes_are_all_reachable_page_by_page(api):
    pid = team(api)
    for i in range(35):
        post(api, "cm", pid, f"記録 {i}")
    seen, cursor = [], None
    while True:
        page = api.call("doc", "GET", f"{R}/{pid}/notes?limit=30" + (f"&cursor={cursor}" if cursor else "")).json
        seen += [n["body"] for n in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [f"記録 {i}" for i in reversed(range(35))]
