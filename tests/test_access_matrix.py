"""Every route × every kind of caller, with the status each must get. The table is
written out by hand from docs/API.md, not computed from the code it checks."""

import io
import itertools

import pytest
from PIL import Image

from tests.helpers import days_ago, grant_breakglass

ROLES = ["cm", "doc", "ns", "ph", "th", "sw", "out", "admin", "aud", "removed", "bg", "anon"]
#             cm   doc  ns   ph   th   sw   out  admin aud rem  bg   anon
READ = dict(zip(ROLES, [200, 200, 200, 200, 200, 200, 404, 404, 404, 404, 200, 401]))
TEAM_READ = dict(zip(ROLES, [200, 200, 200, 200, 200, 200, 404, 200, 404, 404, 200, 401]))
AUDIT = dict(zip(ROLES, [403, 403, 403, 403, 403, 403, 403, 200, 200, 403, 403, 401]))
ADMIN_CREATE = dict(zip(ROLES, [403, 403, 403, 403, 403, 403, 403, 201, 403, 403, 403, 401]))
ANYONE = dict(zip(ROLES, [200] * 11 + [401]))


def writes(*allowed):
    """PUT of a section: the team roles in `allowed` get 200, other members 403."""
    members = {
        "cm": "care_manager",
        "doc": "primary_physician",
        "ns": "nurse",
        "ph": "pharmacist",
        "th": "therapist",
        "sw": "disability_support_worker",
    }
    row = {r: (200 if role in allowed else 403) for r, role in members.items()}
    return row | {"out": 404, "admin": 404, "aud": 404, "removed": 404, "bg": 403, "anon": 401}


CASES = {
    "GET patient": ("GET", "/api/v1/patients/{pid}", None, READ),
    "GET record": ("GET", "/api/v1/patients/{pid}/record", None, READ),
    "GET section": ("GET", "/api/v1/patients/{pid}/record/adl", None, READ),
    "GET versions": ("GET", "/api/v1/patients/{pid}/record/adl/versions", None, READ),
    "GET notes": ("GET", "/api/v1/patients/{pid}/notes", None, READ),
    "PUT wishes": (
        "PUT",
        "/api/v1/patients/{pid}/record/wishes",
        {"content": {"patient_wishes": "自宅"}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker"),
    ),
    "PUT condition": (
        "PUT",
        "/api/v1/patients/{pid}/record/condition",
        {"content": {"summary": "安定"}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker", "pharmacist", "therapist"),
    ),
    "PUT adl": (
        "PUT",
        "/api/v1/patients/{pid}/record/adl",
        {"content": {"eating": {"level": "independent"}}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker", "therapist"),
    ),
    "PUT home": (
        "PUT",
        "/api/v1/patients/{pid}/record/home",
        {"content": {"bed": "介護ベッド"}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker", "therapist"),
    ),
    "PUT family_care": (
        "PUT",
        "/api/v1/patients/{pid}/record/family_care",
        {"content": {"main_carer": "長女"}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker"),
    ),
    "PUT diseases_medications": (
        "PUT",
        "/api/v1/patients/{pid}/record/diseases_medications",
        {"content": {"allergies": [{"substance": "卵"}]}},
        writes("primary_physician", "nurse", "pharmacist"),
    ),
    "PUT illness_explanation": (
        "PUT",
        "/api/v1/patients/{pid}/record/illness_explanation",
        {"content": {"entries": [{"content": "病状説明"}]}},
        writes("primary_physician", "nurse"),
    ),
    "PUT expected_changes": (
        "PUT",
        "/api/v1/patients/{pid}/record/expected_changes",
        {"content": {"items": [{"change": "発熱"}]}},
        writes("primary_physician", "nurse"),
    ),
    "PUT home_care_cautions": (
        "PUT",
        "/api/v1/patients/{pid}/record/home_care_cautions",
        {"content": {"cautions": "転倒注意"}},
        writes("primary_physician", "nurse", "care_manager"),
    ),
    "PUT care_notes": (
        "PUT",
        "/api/v1/patients/{pid}/record/care_notes",
        {"content": {"notes": "午後訪問"}},
        writes("primary_physician", "nurse", "care_manager", "disability_support_worker", "therapist"),
    ),
    "POST note": (
        "POST",
        "/api/v1/patients/{pid}/notes",
        {"body": "訪問しました", "category": "observation"},
        dict(zip(ROLES, [201, 201, 201, 201, 201, 201, 404, 404, 404, 404, 403, 401])),
    ),
    "POST ack": (
        "POST",
        "/api/v1/patients/{pid}/notes/{note}/ack",
        None,
        dict(zip(ROLES, [204, 204, 204, 204, 204, 204, 404, 404, 404, 404, 403, 401])),
    ),
    "POST note search": (
        "POST",
        "/api/v1/patients/{pid}/notes/search",
        {"text": "確認"},
        dict(zip(ROLES, [200, 200, 200, 200, 200, 200, 404, 404, 404, 404, 200, 401])),
    ),
    "POST note seen": (
        "POST",
        "/api/v1/patients/{pid}/notes/{note}/seen",
        None,
        dict(zip(ROLES, [204, 204, 204, 204, 204, 204, 404, 404, 404, 404, 204, 401])),
    ),
    "POST observation": (
        "POST",
        "/api/v1/patients/{pid}/observations",
        {"kind": "body_temperature", "value": 36.8, "unit": "Cel"},
        dict(zip(ROLES, [201, 201, 201, 201, 201, 201, 404, 404, 404, 404, 403, 401])),
    ),
    "GET observations": ("GET", "/api/v1/patients/{pid}/observations", None, READ),
    "POST import preview": (
        "POST",
        "/api/v1/patients/{pid}/observations/import/preview",
        {"csv": f"measured_at,kind,value,unit\n{days_ago(1)} 07:30,spo2,97,%\n"},
        dict(zip(ROLES, [200, 200, 200, 200, 200, 200, 404, 404, 404, 404, 403, 401])),
    ),
    "POST entered-in-error": (
        "POST",
        "/api/v1/patients/{pid}/observations/{observation}/entered-in-error",
        None,
        # the pharmacist's reading: its author, physicians and nurses
        dict(zip(ROLES, [403, 200, 200, 200, 403, 403, 404, 404, 404, 404, 403, 401])),
    ),
    "GET thresholds": ("GET", "/api/v1/patients/{pid}/observations/thresholds", None, READ),
    "PUT thresholds": (
        "PUT",
        "/api/v1/patients/{pid}/observations/thresholds",
        {"thresholds": {"spo2": {"min": 90}}},
        dict(zip(ROLES, [403, 200, 200, 403, 403, 403, 404, 404, 404, 404, 403, 401])),
    ),
    "GET attachments": ("GET", "/api/v1/patients/{pid}/attachments", None, READ),
    "GET attachment": ("GET", "/api/v1/patients/{pid}/attachments/{attachment}", None, READ),
    "GET thumbnail": ("GET", "/api/v1/patients/{pid}/attachments/{attachment}/thumbnail", None, READ),
    "DELETE attachment": (
        "DELETE",
        "/api/v1/patients/{pid}/attachments/{attachment}",
        None,  # doc's: doc or the cm
        dict(zip(ROLES, [204, 204, 403, 403, 403, 403, 404, 404, 404, 404, 403, 401])),
    ),
    "GET team": ("GET", "/api/v1/patients/{pid}/team", None, TEAM_READ),
    "POST team": (
        "POST",
        "/api/v1/patients/{pid}/team",
        {"user_id": "{fresh}", "role": "nurse"},
        dict(zip(ROLES, [201, 201, 403, 403, 403, 403, 404, 403, 404, 404, 403, 401])),
    ),
    "DELETE team": (
        "DELETE",
        "/api/v1/patients/{pid}/team/{member}",
        None,
        dict(zip(ROLES, [204, 204, 403, 403, 403, 403, 404, 403, 404, 404, 403, 401])),
    ),
    "POST consent": (
        "POST",
        "/api/v1/patients/{pid}/consents",
        {"obtained_on": str(days_ago(30)), "obtained_by": "担当", "scope": "共有"},
        dict(zip(ROLES, [201, 201, 403, 403, 403, 403, 404, 404, 404, 404, 403, 401])),
    ),
    "GET consents": ("GET", "/api/v1/patients/{pid}/consents", None, TEAM_READ),
    "GET escalation": ("GET", "/api/v1/patients/{pid}/escalation", None, TEAM_READ),
    "PUT escalation": (
        "PUT",
        "/api/v1/patients/{pid}/escalation",
        {"after_minutes": 20},
        dict(zip(ROLES, [200, 200, 403, 403, 403, 403, 404, 403, 404, 404, 403, 401])),
    ),
    "POST breakglass": (
        "POST",
        "/api/v1/patients/{pid}/breakglass",
        {"reason": "救急外来で確認"},
        # bg's grant is open already: one open grant per person and patient
        dict(zip(ROLES, [403, 409, 409, 403, 403, 403, 201, 403, 403, 201, 409, 401])),
    ),
    "DELETE patient": (
        "DELETE",
        "/api/v1/patients/{pid}",
        None,
        dict(zip(ROLES, [403, 403, 403, 403, 403, 403, 404, 204, 404, 404, 403, 401])),
    ),
    "GET patients": ("GET", "/api/v1/patients", None, ANYONE),
    "POST patient": (
        "POST",
        "/api/v1/patients",
        {"name": "新規 患者", "name_kana": "しんき かんじゃ", "birth_date": "1950-01-01", "sex": "male"},
        dict(zip(ROLES, [201, 201, 201, 201, 201, 201, 201, 403, 403, 201, 201, 401])),
    ),
    "GET me": ("GET", "/api/v1/users/me", None, ANYONE),
    "GET vapid key": ("GET", "/api/v1/push/vapid-public-key", None, dict(zip(ROLES, [200] * 12))),
    "GET my devices": ("GET", "/api/v1/push/subscriptions", None, ANYONE),
    "DELETE device": (
        "DELETE",
        "/api/v1/push/subscriptions/{device}",
        None,  # doc's device: doc alone
        dict(zip(ROLES, [404, 204, 404, 404, 404, 404, 404, 404, 404, 404, 404, 401])),
    ),
    "GET my notifications": ("GET", "/api/v1/users/me/notifications", None, ANYONE),
    "PUT my notifications": ("PUT", "/api/v1/users/me/notifications", {"push": {"changes": True}}, ANYONE),
    "GET audit": ("GET", "/api/v1/audit", None, AUDIT),
    "GET audit verify": ("GET", "/api/v1/audit/verify", None, AUDIT),
    "GET audit csv": ("GET", "/api/v1/audit/export.csv", None, AUDIT),
    "POST user": (
        "POST",
        "/api/v1/users",
        {"login": "{fresh_login}", "display_name": "新人", "organization_id": "{org}", "profession": "nurse"},
        ADMIN_CREATE,
    ),
    "POST organization": ("POST", "/api/v1/organizations", {"name": "新しい薬局", "kind": "pharmacy"}, ADMIN_CREATE),
}


@pytest.fixture(scope="module")
def world(module_api):
    api = module_api
    for name, profession in [
        ("cm", "care_manager"),
        ("doc", "physician"),
        ("ns", "nurse"),
        ("ph", "pharmacist"),
        ("th", "therapist"),
        ("sw", "disability_support_worker"),
        ("out", "physician"),
        ("removed", "nurse"),
        ("bg", "physician"),
    ]:
        api.user(name, profession)
    api.user("aud", "other", is_auditor=True)
    api.counter = itertools.count()
    return api


def fresh_patient(api) -> dict:
    """A patient registered by cm with consent, the team, a removed member, an active
    break-glass, one note and one extra member that a DELETE may remove."""
    pid = api.patient("cm")
    for name, role in [
        ("doc", "primary_physician"),
        ("ns", "nurse"),
        ("ph", "pharmacist"),
        ("th", "therapist"),
        ("sw", "disability_support_worker"),
        ("removed", "nurse"),
    ]:
        api.join(pid, name, role, by="cm")
    assert api.call("cm", "DELETE", f"/api/v1/patients/{pid}/team/{api.users['removed']['id']}").status_code == 204
    grant_breakglass(api, "bg", pid)
    note = api.call("doc", "POST", f"/api/v1/patients/{pid}/notes", {"body": "確認", "category": "other"}).json["id"]
    photo = io.BytesIO()
    Image.new("RGB", (8, 8)).save(photo, "PNG")
    attachment = api.client.post(
        f"/api/v1/patients/{pid}/attachments",
        content_type="multipart/form-data",
        headers={"Authorization": "Bearer " + api.tokens["doc"]},
        data={"file": (io.BytesIO(photo.getvalue()), "p.png", "image/png")},
    ).json["id"]
    observation = api.call(
        "ph", "POST", f"/api/v1/patients/{pid}/observations", {"kind": "heart_rate", "value": 72}
    ).json["id"]
    n = next(api.counter)
    for old in api.call("doc", "GET", "/api/v1/push/subscriptions").json["items"]:  # at most 10 each
        api.call("doc", "DELETE", f"/api/v1/push/subscriptions/{old['id']}")
    device = api.call(
        "doc",
        "POST",
        "/api/v1/push/subscriptions",
        {
            "endpoint": f"https://8.8.8.8/push/{n}",
            "keys": {
                "p256dh": "BH-RbJ2kYKl9OcH5kqT-MCIGqoVFLGwgzojnw0GLg1pIl632NnEhpWX3D2TN8frIp1bQJ21wnNJeJrr1iXIIFf4",
                "auth": "8eDyX_uCN0XRhSbY5hs7Hg",
            },
        },
    ).json["id"]
    api.user(f"extra{n}", "therapist")
    api.join(pid, f"extra{n}", "therapist", by="cm")
    api.user(f"fresh{n}", "nurse")
    return {
        "pid": pid,
        "note": note,
        "attachment": attachment,
        "observation": observation,
        "member": api.users[f"extra{n}"]["id"],
        "fresh": api.users[f"fresh{n}"]["id"],
        "device": device,
        "fresh_login": f"new{n}",
        "org": api.org,
    }


def fill(value, names):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    return value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", list(CASES))
def test_route_by_role(world, case, role):
    method, path, body, expected = CASES[case]
    names = fresh_patient(world)
    headers = {}
    if method == "PUT" and ("/record/" in path or path.endswith("/thresholds")):
        current = world.call("cm", "GET", fill(path, names))
        headers["If-Match"] = current.headers["ETag"]
    body = fill(body, names)
    if path.endswith("/breakglass") and role in world.totps:  # a second factor, always
        body["otp"] = world.otp(role)
    r = world.call(None if role == "anon" else role, method, fill(path, names), body, headers)
    assert r.status_code == expected[role], r.get_data(as_text=True)[:300]
    if r.status_code >= 400:
        assert r.mimetype == "application/problem+json"
