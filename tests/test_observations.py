"""Vital signs and other observations (docs/API.md, "Observations"): recorded one or
several at a time, read back as a series, refused with the field named when impossible,
and alerting the team exactly once per threshold crossing."""

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from models import Observation, TeamMember, UserEvent
from renkei.common import db
from tests.helpers import days_ago, japan_time_utc, team

R = "/api/v1/patients"


def with_nurse(api):
    api.pid = team(api)
    api.user("ns", "nurse")
    api.join(api.pid, "ns", "nurse", by="cm")
    return api


@pytest.fixture
def world(sqlite_api):
    return with_nurse(sqlite_api)


def post(api, who, body, pid=None):
    return api.call(who, "POST", f"{R}/{pid or api.pid}/observations", body)


def ago(**delta) -> str:
    return (datetime.now(timezone.utc) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alerts_heard_by(api, who) -> list[dict]:
    """The observation.alert events stored for a person (what their sockets are sent)."""
    import json

    with api.app.app_context():
        rows = db.session.execute(
            select(UserEvent.payload)
            .where(UserEvent.user_id == api.users[who]["id"], UserEvent.name == "observation.alert")
            .order_by(UserEvent.seq)
        ).scalars()
        return [json.loads(p) for p in rows]


def set_thresholds(api, thresholds, who="doc"):
    current = api.call(who, "GET", f"{R}/{api.pid}/observations/thresholds")
    r = api.call(
        who,
        "PUT",
        f"{R}/{api.pid}/observations/thresholds",
        {"thresholds": thresholds},
        headers={"If-Match": current.headers["ETag"]},
    )
    assert r.status_code == 200, r.json
    return r


def test_a_nurse_records_one_or_several_readings_and_the_team_reads_them_oldest_first(world):
    r = post(
        world,
        "ns",
        {"kind": "body_temperature", "value": 38.4, "unit": "Cel", "measured_at": ago(hours=1), "note": "悪寒あり"},
    )
    assert r.status_code == 201, r.json
    one = r.json
    assert (one["kind"], one["loinc"], one["value"], one["unit"], one["note"]) == (
        "body_temperature",
        "8310-5",
        38.4,
        "Cel",
        "悪寒あり",
    )
    assert one["recorded_by"] == world.users["ns"]["id"] and one["alert"] is False and one["threshold"] is None
    assert one["measured_at"].endswith("Z") and one["late"] is False and one["entered_in_error"] is False

    r = post(
        world,
        "ns",
        {
            "items": [
                {"kind": "blood_pressure", "components": {"systolic": 150, "diastolic": 90}, "unit": "mm[Hg]"},
                {"kind": "heart_rate", "value": 88},
                {"kind": "bowel_movement", "value": 1, "bristol": 4},
            ]
        },
    )
    assert r.status_code == 201, r.json
    bp, hr, bowel = r.json["items"]
    assert (bp["kind"], bp["loinc"], bp["components"], bp["unit"]) == (
        "blood_pressure",
        "85354-9",
        {"systolic": 150, "diastolic": 90},
        "mm[Hg]",
    )
    assert "value" not in bp and (hr["value"], hr["unit"]) == (88, "/min")
    assert (bowel["unit"], bowel["bristol"]) == ("{count}", 4)

    listed = world.call("pharm", "GET", f"{R}/{world.pid}/observations").json
    assert [o["id"] for o in listed["items"]][0] == one["id"]  # measured an hour ago: first
    assert len(listed["items"]) == 4 and listed["next_cursor"] is None
    temps = world.call("doc", "GET", f"{R}/{world.pid}/observations?kind=body_temperature").json["items"]
    assert [o["value"] for o in temps] == [38.4]
    recent = world.call("doc", "GET", f"{R}/{world.pid}/observations?since={ago(minutes=30)}").json["items"]
    assert {o["kind"] for o in recent} == {"blood_pressure", "heart_rate", "bowel_movement"}
    seen, cursor = [], None
    while True:
        page = world.call(
            "doc", "GET", f"{R}/{world.pid}/observations?limit=3" + (f"&cursor={cursor}" if cursor else "")
        ).json
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [o["id"] for o in listed["items"]]


def test_full_width_digits_and_a_decimal_comma_are_read_as_typed(world):
    r = post(
        world,
        "ns",
        {
            "items": [
                {"kind": "body_temperature", "value": "３６，８"},
                {"kind": "blood_pressure", "components": {"systolic": "１３２", "diastolic": "７８"}},
                {"kind": "fluid_intake", "value": "1,200"},
                {"kind": "body_weight", "value": "４８．５"},
            ]
        },
    )
    assert r.status_code == 201, r.json
    assert [o.get("value", o.get("components")) for o in r.json["items"]] == [
        36.8,
        {"systolic": 132, "diastolic": 78},
        1200,
        48.5,
    ]


def test_one_refused_reading_of_several_refuses_them_all(world):
    r = post(world, "ns", {"items": [{"kind": "heart_rate", "value": 70}, {"kind": "spo2", "value": 40}]})
    assert r.status_code == 422
    assert list(r.json["errors"]) == ["items"] and list(r.json["errors"]["items"]) == ["1"]
    assert "value" in r.json["errors"]["items"]["1"]
    assert world.call("ns", "GET", f"{R}/{world.pid}/observations").json["items"] == []


def test_outsiders_get_404_and_break_glass_reads_but_cannot_record(world):
    world.user("out", "physician")
    post(world, "ns", {"kind": "spo2", "value": 96})
    assert post(world, "out", {"kind": "spo2", "value": 96}).status_code == 404
    assert world.call("out", "GET", f"{R}/{world.pid}/observations").status_code == 404
    assert world.call("out", "GET", f"{R}/{world.pid}/observations/thresholds").status_code == 404
    assert (
        world.call(
            "out", "POST", f"{R}/{world.pid}/breakglass", {"reason": "救急搬送時の確認", "otp": world.otp("out")}
        ).status_code
        == 201
    )
    r = post(world, "out", {"kind": "spo2", "value": 90})
    assert r.status_code == 403 and r.json["type"] == "/problems/breakglass-read-only"
    assert [o["value"] for o in world.call("out", "GET", f"{R}/{world.pid}/observations").json["items"]] == [96]


def test_thresholds_are_versioned_like_a_section_and_only_physicians_and_nurses_set_them(world):
    path = f"{R}/{world.pid}/observations/thresholds"
    empty = world.call("pharm", "GET", path)
    assert (empty.json["thresholds"], empty.json["version"], empty.headers["ETag"]) == ({}, 0, '"0"')
    assert empty.json["writable"] is False
    wanted = {
        "spo2": {"min": 90},
        "body_temperature": {"max": 37.9},
        "body_weight": {"rise": 2, "within_days": 3},
        "blood_pressure": {"systolic": {"max": 160}, "diastolic": {"max": 100}},
    }
    assert world.call("doc", "PUT", path, {"thresholds": wanted}).status_code == 428
    for who in ("pharm", "cm"):
        r = world.call(who, "PUT", path, {"thresholds": wanted}, headers={"If-Match": '"0"'})
        assert r.status_code == 403, who
    r = world.call("ns", "PUT", path, {"thresholds": wanted}, headers={"If-Match": '"0"'})
    assert r.status_code == 200 and r.headers["ETag"] == '"1"' and r.json["thresholds"] == wanted
    stale = world.call("doc", "PUT", path, {"thresholds": {"spo2": {"min": 92}}}, headers={"If-Match": '"0"'})
    assert stale.status_code == 412 and stale.json["current"]["thresholds"] == wanted
    again = world.call("doc", "PUT", path, {"thresholds": wanted}, headers={"If-Match": '"0"'})
    assert again.status_code == 200 and again.json["version"] == 1  # the same thresholds: nothing written
    got = world.call("pharm", "GET", path)
    assert got.json["thresholds"] == wanted and got.headers["ETag"] == '"1"'


def test_a_threshold_alerts_the_team_once_per_crossing(world):
    set_thresholds(world, {"body_temperature": {"max": 37.9}})
    got = [post(world, "ns", {"kind": "body_temperature", "value": v}).json for v in (37.5, 38.4, 38.6, 37.0, 38.1)]
    assert [o["alert"] for o in got] == [False, True, False, False, True]
    assert [o["threshold"] for o in got] == [None, {"max": 37.9}, {"max": 37.9}, None, {"max": 37.9}]
    for who in ("doc", "pharm", "cm"):
        heard = alerts_heard_by(world, who)
        assert [e["observation_id"] for e in heard] == [got[1]["id"], got[4]["id"]]
        for event in heard:
            assert set(event) == {"patient_id", "observation_id", "kind", "actor_id", "at", "seq"}
            assert (event["kind"], event["actor_id"]) == ("body_temperature", world.users["ns"]["id"])


def test_a_blood_pressure_threshold_names_the_component_crossed(world):
    set_thresholds(world, {"blood_pressure": {"systolic": {"max": 160}, "diastolic": {"max": 100}}})
    r = post(world, "ns", {"kind": "blood_pressure", "components": {"systolic": 150, "diastolic": 104}})
    assert (r.json["alert"], r.json["threshold"]) == (True, {"diastolic": {"max": 100}})


def test_a_weight_rise_over_three_days_alerts_once(world):
    set_thresholds(world, {"body_weight": {"rise": 2, "within_days": 3}})
    for days, kg in ((2.9, 50.0), (2, 50.6), (1, 51.2)):  # older than a day: marked, never alerting
        assert (
            post(world, "ns", {"kind": "body_weight", "value": kg, "measured_at": ago(days=days)}).json["alert"]
            is False
        )
    first = post(world, "ns", {"kind": "body_weight", "value": 52.1}).json
    assert (first["alert"], first["threshold"]) == (True, {"rise": 2, "within_days": 3})
    still = post(world, "ns", {"kind": "body_weight", "value": 52.3}).json
    assert (still["alert"], still["threshold"]) == (False, {"rise": 2, "within_days": 3})
    assert [e["observation_id"] for e in alerts_heard_by(world, "doc")] == [first["id"]]


def test_a_rise_spread_over_more_days_than_the_window_does_not_alert(world):
    set_thresholds(world, {"body_weight": {"rise": 2, "within_days": 3}})
    post(world, "ns", {"kind": "body_weight", "value": 50.0, "measured_at": ago(days=4)})
    r = post(world, "ns", {"kind": "body_weight", "value": 52.5}).json
    assert (r["alert"], r["threshold"]) == (False, None)


def test_a_late_reading_is_marked_but_alerts_nobody(world):
    set_thresholds(world, {"spo2": {"min": 90}})
    r = post(world, "ns", {"kind": "spo2", "value": 85, "measured_at": ago(hours=30)}).json
    assert (r["late"], r["alert"], r["threshold"]) == (True, False, {"min": 90})
    assert alerts_heard_by(world, "doc") == []


def test_a_reading_marked_entered_in_error_is_kept_and_no_longer_counts(world):
    set_thresholds(world, {"spo2": {"min": 90}})
    wrong = post(world, "pharm", {"kind": "spo2", "value": 80}).json
    assert wrong["alert"] is True
    path = f"{R}/{world.pid}/observations/{wrong['id']}/entered-in-error"
    assert world.call("cm", "POST", path).status_code == 403  # neither its author nor a clinician
    marked = world.call("ns", "POST", path)
    assert marked.status_code == 200 and marked.json["entered_in_error"] is True
    assert marked.json["error_by"] == world.users["ns"]["id"]
    listed = world.call("doc", "GET", f"{R}/{world.pid}/observations").json["items"]
    assert [(o["id"], o["entered_in_error"]) for o in listed] == [(wrong["id"], True)]
    # The mistaken low reading no longer counts: the next low one is a new crossing.
    assert post(world, "ns", {"kind": "spo2", "value": 84}).json["alert"] is True
    assert len(alerts_heard_by(world, "doc")) == 2


def test_two_nurses_saving_the_same_crossing_at_once_raise_one_alert(api):
    """Requests side by side (on PostgreSQL they really overlap)."""
    import threading

    with_nurse(api)
    set_thresholds(api, {"heart_rate": {"max": 120}})
    barrier, answers = threading.Barrier(4), []

    def save(who):
        client = api.app.test_client()
        barrier.wait()
        r = client.post(
            f"{R}/{api.pid}/observations",
            json={"kind": "heart_rate", "value": 130},
            headers={"Authorization": "Bearer " + api.tokens[who]},
        )
        answers.append(r)

    threads = [threading.Thread(target=save, args=(w,)) for w in ("ns", "doc", "ns", "doc")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [201] * 4
    assert sorted(r.json["alert"] for r in answers) == [False, False, False, True]
    assert len(alerts_heard_by(api, "pharm")) == 1


def test_two_people_importing_one_file_at_once_save_it_once(api):
    """Requests side by side (on PostgreSQL they really overlap); no thresholds, so only
    the import itself waits for the other."""
    import threading

    with_nurse(api)
    barrier, answers = threading.Barrier(2), []
    text = "measured_at,kind,value,unit\n" + "".join(
        f"{days_ago(d)} 07:30,body_weight,5{d}.0,kg\n" for d in range(1, 9)
    )

    def send(who):
        client = api.app.test_client()
        barrier.wait()
        answers.append(
            client.post(
                f"{R}/{api.pid}/observations/import",
                json={"csv": text},
                headers={"Authorization": "Bearer " + api.tokens[who]},
            )
        )

    threads = [threading.Thread(target=send, args=(w,)) for w in ("ns", "doc")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(len(r.json["saved"]) for r in answers) == [0, 8]
    assert len(api.call("doc", "GET", f"{R}/{api.pid}/observations").json["items"]) == 8


def test_the_database_holds_the_kind_and_time_but_not_the_value_or_note(world):
    post(world, "ns", {"kind": "blood_glucose", "value": 287, "note": "canary-observation-食後二時間"})
    with world.app.app_context():
        row = db.session.execute(select(Observation)).scalar_one()
        assert row.kind == "blood_glucose"
        assert b"287" not in row.value_ct and "食後".encode() not in row.value_ct


def test_a_value_moved_to_another_kind_or_day_does_not_decrypt(world):
    """A database writer cannot make a weight into a temperature, or yesterday's into today's."""
    weight = post(world, "ns", {"kind": "body_weight", "value": 48.2}).json
    fever = post(world, "ns", {"kind": "body_temperature", "value": 38.9}).json
    earlier = post(world, "ns", {"kind": "body_weight", "value": 47.0, "measured_at": ago(days=1)}).json
    with world.app.app_context():
        rows = {o.id: o for o in db.session.execute(select(Observation)).scalars()}
        rows[fever["id"]].value_ct = rows[weight["id"]].value_ct  # same time, other kind
        rows[earlier["id"]].value_ct = rows[weight["id"]].value_ct  # same kind, other day
        db.session.commit()
    for kind in ("body_temperature", "body_weight"):
        r = world.call("doc", "GET", f"{R}/{world.pid}/observations?kind={kind}")
        assert r.status_code == 500 and "48.2" not in r.get_data(as_text=True)


DAY, NEXT_DAY = days_ago(3), days_ago(2)
CSV = f"""measured_at,kind,value,unit,note
{DAY:%Y/%m/%d} 07:30,体温,36.6,℃,
{DAY}T07:31:00+09:00,blood_pressure,１３８/８２,mm[Hg],起床時
{NEXT_DAY} 07:30,body_weight,"51,2",kg,
{NEXT_DAY} 07:30,body_weight,"51,2",kg,
"""


def test_a_device_csv_is_previewed_then_saved_and_duplicates_are_skipped(world):
    path = f"{R}/{world.pid}/observations/import"
    post(world, "ns", {"kind": "body_temperature", "value": 36.6, "measured_at": japan_time_utc(DAY, "07:30")})
    preview = world.call("ns", "POST", path + "/preview", {"csv": CSV})
    assert preview.status_code == 200, preview.json
    assert (preview.json["new"], preview.json["duplicates"], preview.json["refused"]) == (2, 2, 0)
    assert [(r["line"], r["duplicate"]) for r in preview.json["rows"]] == [(2, True), (3, False), (4, False), (5, True)]
    assert preview.json["rows"][1]["components"] == {"systolic": 138, "diastolic": 82}
    assert preview.json["rows"][1]["measured_at"] == japan_time_utc(DAY, "07:31")
    assert len(world.call("ns", "GET", f"{R}/{world.pid}/observations").json["items"]) == 1  # a preview saves nothing

    saved = world.call("ns", "POST", path, {"csv": CSV})
    assert saved.status_code == 201 and len(saved.json["saved"]) == 2
    listed = world.call("doc", "GET", f"{R}/{world.pid}/observations").json["items"]
    assert [(o["kind"], o["source"]) for o in listed] == [
        ("body_temperature", "entry"),
        ("blood_pressure", "import"),
        ("body_weight", "import"),
    ]
    assert listed[1]["note"] == "起床時" and listed[2]["value"] == 51.2
    again = world.call("ns", "POST", path, {"csv": CSV})  # the same file twice: nothing new
    assert again.status_code == 201 and again.json["saved"] == [] and again.json["duplicates"] == 4


def test_an_imported_reading_beyond_a_threshold_is_marked_but_alerts_nobody(world):
    set_thresholds(world, {"spo2": {"min": 90}})
    r = world.call(
        "ns",
        "POST",
        f"{R}/{world.pid}/observations/import",
        {"csv": f"measured_at,kind,value,unit\n{ago(minutes=5)},spo2,86,%\n"},
    )
    assert r.status_code == 201, r.json
    (reading,) = world.call("doc", "GET", f"{R}/{world.pid}/observations").json["items"]
    assert (reading["source"], reading["alert"], reading["threshold"]) == ("import", False, {"min": 90})
    assert alerts_heard_by(world, "doc") == []


def test_a_csv_with_a_refused_row_is_shown_row_by_row_and_saves_nothing(world):
    bad = f"measured_at,kind,value,unit\n{DAY} 07:30,体温,52,℃\n{DAY} 07:30,気分,3,\n{DAY} 07:30,spo2,97,%\n"
    preview = world.call("ns", "POST", f"{R}/{world.pid}/observations/import/preview", {"csv": bad}).json
    assert [(r["line"], bool(r["errors"])) for r in preview["rows"]] == [(2, True), (3, True), (4, False)]
    assert "value" in preview["rows"][0]["errors"] and "kind" in preview["rows"][1]["errors"]
    saved = world.call("ns", "POST", f"{R}/{world.pid}/observations/import", {"csv": bad})
    assert saved.status_code == 422 and set(saved.json["errors"]["csv"]) == {"2", "3"}
    assert world.call("ns", "GET", f"{R}/{world.pid}/observations").json["items"] == []
    headless = world.call("ns", "POST", f"{R}/{world.pid}/observations/import/preview", {"csv": "36.5,体温\n"})
    assert headless.status_code == 422 and "csv" in headless.json["errors"]


def test_a_patient_whose_reading_alerted_me_tops_my_care_list_until_i_look(world):
    first = world.patient("cm", name="安藤 一", name_kana="あんどう はじめ")  # あ: first in kana order
    world.join(first, "doc", "primary_physician", by="cm")
    doc = world.web("doc")
    for pid in (first, world.pid):
        doc.get(f"/patients/{pid}")  # a look at each, two minutes ago (a look is noted once a minute)
    with world.app.app_context():
        db.session.execute(update(TeamMember).values(last_viewed_at=datetime.utcnow() - timedelta(minutes=2)))
        db.session.commit()
    set_thresholds(world, {"spo2": {"min": 90}})
    post(world, "ns", {"kind": "spo2", "value": 86})

    def care_list():
        page = doc.get("/").get_data(as_text=True)
        rows = re.findall(r'<li data-search="[^"]*" data-patient="([^"]+)">(.*?)</li>', page, re.S)
        return [(pid, "バイタル閾値超え" in row) for pid, row in rows]

    assert care_list() == [(world.pid, True), (first, False)]
    page = doc.get(f"/patients/{world.pid}").get_data(as_text=True)
    assert "バイタルの閾値超え 1件（前回確認後）" in page
    assert care_list() == [(first, False), (world.pid, False)]  # looked at: back in kana order


def test_the_charts_draw_the_thresholds_and_mark_a_reading_beyond_them(world):
    set_thresholds(world, {"body_temperature": {"max": 37.9}})
    for hours, value in ((30, 36.6), (20, 37.1), (2, 38.3)):
        post(world, "ns", {"kind": "body_temperature", "value": value, "measured_at": ago(hours=hours)})
    page = world.web("doc").get(f"/patients/{world.pid}/vitals?days=7").get_data(as_text=True)
    chart = re.search(r'<figure class="chart beyond" data-chart="body_temperature">(.*?)</figure>', page, re.S).group(1)
    assert 'class="limit"' in chart and "▲37.9" in chart  # the threshold, with its value written on it
    assert chart.count('class="beyond"') == 1 and chart.count('class="dot first"') == 2
    assert re.search(r'class="latest">38.3', chart) and "閾値超え" in chart
    assert 'aria-label="体温、7日間の推移。最新 38.3 ℃"' in chart


def test_the_table_strikes_through_an_error_and_offers_marking_only_to_who_may(world):
    own = post(world, "pharm", {"kind": "heart_rate", "value": 77}).json
    nurse = post(world, "ns", {"kind": "heart_rate", "value": 140, "measured_at": ago(minutes=30)}).json
    world.call("ns", "POST", f"{R}/{world.pid}/observations/{nurse['id']}/entered-in-error")
    sheet = world.web("pharm").get(f"/patients/{world.pid}/vitals/sheet?days=7").get_data(as_text=True)
    assert re.search(rf'data-reading="{nurse["id"]}" class="error"><s>140</s> <span class="badge">誤入力</span>', sheet)
    assert f'data-reading="{own["id"]}" class="" data-mark="1">77' in sheet  # the pharmacist's own reading
    doc_sheet = world.web("doc").get(f"/patients/{world.pid}/vitals/sheet?days=7").get_data(as_text=True)
    assert f'data-reading="{own["id"]}" class="" data-mark="1">' in doc_sheet  # a physician marks anyone's
    cm_sheet = world.web("cm").get(f"/patients/{world.pid}/vitals/sheet?days=7").get_data(as_text=True)
    assert "data-mark" not in cm_sheet and "PHARM" in cm_sheet  # who recorded it


def test_an_imported_or_late_reading_beyond_does_not_silence_the_next_live_one(world):
    set_thresholds(world, {"body_temperature": {"max": 37.9}, "spo2": {"min": 90}})
    world.call(
        "ns",
        "POST",
        f"{R}/{world.pid}/observations/import",
        {"csv": f"measured_at,kind,value,unit\n{ago(hours=1)},body_temperature,38.6,Cel\n"},
    )
    assert post(world, "ns", {"kind": "body_temperature", "value": 38.7}).json["alert"] is True
    assert post(world, "ns", {"kind": "spo2", "value": 86, "measured_at": ago(hours=25)}).json["alert"] is False
    assert post(world, "ns", {"kind": "spo2", "value": 87}).json["alert"] is True
    assert len(alerts_heard_by(world, "doc")) == 2


def test_a_threshold_set_while_the_patient_is_beyond_it_alerts_at_the_next_reading(world):
    set_thresholds(world, {"body_temperature": {"max": 38.0}})
    assert post(world, "ns", {"kind": "body_temperature", "value": 37.8}).json["alert"] is False
    set_thresholds(world, {"body_temperature": {"max": 37.5}})  # the physician tightens it: a fever is coming
    assert post(world, "ns", {"kind": "body_temperature", "value": 37.9}).json["alert"] is True
    assert post(world, "ns", {"kind": "body_temperature", "value": 38.0}).json["alert"] is False


def test_a_reading_entered_later_inside_a_told_crossing_does_not_alert_again(world):
    set_thresholds(world, {"body_temperature": {"max": 37.9}})
    post(world, "ns", {"kind": "body_temperature", "value": 36.5, "measured_at": ago(hours=3)})
    assert post(world, "ns", {"kind": "body_temperature", "value": 38.5}).json["alert"] is True
    # The evening nurse types in the reading she took an hour ago, between the two.
    assert (
        post(world, "ns", {"kind": "body_temperature", "value": 38.4, "measured_at": ago(hours=1)}).json["alert"]
        is False
    )
    assert len(alerts_heard_by(world, "doc")) == 1


def test_several_readings_are_answered_in_the_order_sent(world):
    r = post(
        world,
        "ns",
        {"items": [{"kind": "spo2", "value": 97}, {"kind": "heart_rate", "value": 70, "measured_at": ago(hours=2)}]},
    )
    assert [o["kind"] for o in r.json["items"]] == ["spo2", "heart_rate"]


def test_a_csv_is_read_as_devices_and_people_write_it(world):
    text = (
        "ｍｅａｓｕｒｅｄ＿ａｔ,kind,value,unit\n"  # a full-width header
        f"{DAY:%Y/%m/%d} 7:05,体温,36.6,℃\n"  # a one-digit hour
        ",体温,36.7,℃\n"
    )  # no time: refused, not "now"
    preview = world.call("ns", "POST", f"{R}/{world.pid}/observations/import/preview", {"csv": text}).json
    assert preview["rows"][0]["measured_at"] == japan_time_utc(DAY, "07:05") and not preview["rows"][0]["errors"]
    assert "measured_at" in preview["rows"][1]["errors"]
    english = world.web("ns")
    english.get("/?lang=en")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', english.get("/").get_data(as_text=True)).group(1)
    r = english.post(
        f"{R}/{world.pid}/observations/import/preview",
        json={"csv": f"measured_at,kind,value\n{DAY} 07:30,体温,36.5\n"},
        headers={"X-CSRFToken": csrf},
    )
    assert r.status_code == 200 and not r.json["rows"][0]["errors"]  # 体温 is a kind in English too
    huge = world.call(
        "ns",
        "POST",
        f"{R}/{world.pid}/observations/import/preview",
        {"csv": f'measured_at,kind,value,unit,note\n{DAY} 07:30,体温,36.5,℃,"' + "x" * 140_000 + '"\n'},
    )
    assert huge.status_code == 422 and "csv" in huge.json["errors"]
