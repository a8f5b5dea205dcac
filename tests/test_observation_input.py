"""What an observation or a threshold may not be: each refused with a 422 naming the
field (in Japanese, for the form that shows it), and nothing saved. One team serves
them all (nothing here is ever saved); tests/test_observations.py is the rest."""

import pytest

from tests.test_observations import R, post, with_nurse


@pytest.fixture(scope="module")
def shared(module_api):
    return with_nurse(module_api)


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({"kind": "body_temperature", "value": 29.9}, ["value"], "体温は30〜45"),
        ({"kind": "body_temperature", "value": 46}, ["value"], "体温は30〜45"),
        ({"kind": "spo2", "value": 101}, ["value"], "SpO2は50〜100"),
        ({"kind": "heart_rate", "value": 72.5}, ["value"], "整数"),
        ({"kind": "body_temperature", "value": "熱っぽい"}, ["value"], "数値"),
        ({"kind": "body_temperature", "value": True}, ["value"], "数値"),
        ({"kind": "body_temperature"}, ["value"], "入力してください"),
        (
            {"kind": "blood_pressure", "components": {"systolic": 301, "diastolic": 90}},
            ["components", "systolic"],
            "50〜300",
        ),
        (
            {"kind": "blood_pressure", "components": {"systolic": 120, "diastolic": 130}},
            ["components", "diastolic"],
            "低い値",
        ),
        ({"kind": "blood_pressure", "value": 120}, ["components"], "components"),
        ({"kind": "body_temperature", "value": 36.5, "unit": "[degF]"}, ["unit"], "Cel"),
        ({"kind": "body_temperature", "value": 36.5, "measured_at": "2099-01-01T00:00:00Z"}, ["measured_at"], "未来"),
        ({"kind": "body_temperature", "value": 36.5, "measured_at": "昨日"}, ["measured_at"], "ISO 8601"),
        ({"kind": "pain_score", "value": 11}, ["value"], "0〜10"),
        ({"kind": "heart_rate", "value": 70, "bristol": 3}, ["bristol"], "排便"),
        ({"kind": "temperature", "value": 36.5}, ["kind"], "one of"),
    ],
)
def test_an_impossible_value_is_refused_naming_its_field_and_nothing_is_saved(shared, body, field, words):
    world = shared
    r = post(world, "ns", body)
    assert r.status_code == 422 and r.mimetype == "application/problem+json", r.json
    found = r.json["errors"]
    for key in field:
        found = found[key]
    assert any(words in message for message in found), found
    assert world.call("ns", "GET", f"{R}/{world.pid}/observations").json["items"] == []


@pytest.mark.parametrize(
    "thresholds, field",
    [
        ({"spo2": {"min": 40}}, ["spo2", "min"]),
        ({"spo2": {"min": 95, "max": 90}}, ["spo2", "max"]),
        ({"body_weight": {"rise": 2}}, ["body_weight", "within_days"]),
        ({"body_weight": {"rise": 2, "within_days": 0}}, ["body_weight", "within_days"]),
        ({"body_weight": {"rise": -1, "within_days": 3}}, ["body_weight", "rise"]),
        ({"blood_pressure": {"max": 160}}, ["blood_pressure", "max"]),
        ({"blood_pressure": {"systolic": {"max": 400}}}, ["blood_pressure", "systolic", "max"]),
        ({"mood": {"max": 3}}, ["mood"]),
        ({"spo2": 90}, ["spo2"]),
    ],
)
def test_impossible_thresholds_are_refused_naming_the_field(shared, thresholds, field):
    world = shared
    r = world.call(
        "doc",
        "PUT",
        f"{R}/{world.pid}/observations/thresholds",
        {"thresholds": thresholds},
        headers={"If-Match": '"0"'},
    )
    assert r.status_code == 422, r.json
    found = r.json["errors"]["thresholds"]
    for key in field:
        found = found[key]
    assert found


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B01:00", "cursor=0001-01-01T00:00:00%2B01:00|x"])
def test_a_time_that_is_no_time_in_utc_is_refused_not_an_error(shared, query):
    r = shared.call("ns", "GET", f"{R}/{shared.pid}/observations?{query}")
    assert r.status_code == 422, r.json


def test_a_reading_at_a_time_before_utc_begins_is_refused_naming_measured_at(shared):
    r = post(shared, "ns", {"kind": "spo2", "value": 96, "measured_at": "0001-01-01T00:00:00+01:00"})
    assert r.status_code == 422 and "measured_at" in r.json["errors"]


@pytest.mark.parametrize("version", ['"²"', '"' + "9" * 5000 + '"'])
def test_an_if_match_that_is_no_version_number_is_400(shared, version):
    r = shared.call(
        "doc",
        "PUT",
        f"{R}/{shared.pid}/observations/thresholds",
        {"thresholds": {"spo2": {"min": 90}}},
        headers={"If-Match": version},
    )
    assert r.status_code == 400
