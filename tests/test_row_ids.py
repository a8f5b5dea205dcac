"""Issue 31: the rows of a section's lists keep a stable id (docs/API.md, "The record"),
so merges and the history can follow a row rather than a whole list."""

import uuid

from sqlalchemy import select

from models import Patient, SectionRevision
from renkei.common import crypto, db, vault
from tests.helpers import team

R = "/api/v1/patients"
CONTACTS = {"key_contacts": [{"name": "山田 花子", "relationship": "長女", "phone": "090-5550-2001"}]}


def put(api, who, pid, content, version, section="family_care"):
    return api.call(
        who, "PUT", f"{R}/{pid}/record/{section}", {"content": content}, headers={"If-Match": f'"{version}"'}
    )


def test_each_row_gets_an_id_and_keeps_it_when_the_same_edit_comes_again(api):
    pid = team(api)
    r = put(api, "cm", pid, CONTACTS, 0)
    assert r.status_code == 200, r.json
    (row,) = r.json["content"]["key_contacts"]
    assert uuid.UUID(row["id"]) and r.json["version"] == 1
    again = put(api, "cm", pid, CONTACTS, 1)  # sent again without ids: it equals what is stored
    assert again.json["version"] == 1 and again.json["content"]["key_contacts"][0]["id"] == row["id"]
    # a second person adds a row and corrects the first: the first keeps its id
    added = {
        "key_contacts": [
            {"id": row["id"], "name": "山田 花子", "relationship": "長女", "phone": "090-5550-2002"},
            {"name": "山田 一郎", "relationship": "長男"},
        ]
    }
    r = put(api, "doc", pid, added, 1)
    first, second = r.json["content"]["key_contacts"]
    assert first["id"] == row["id"] and first["phone"] == "090-5550-2002" and second["id"] != row["id"]


def test_a_client_may_name_its_own_row_ids_but_not_one_twice(api):
    pid = team(api)
    mine = str(uuid.uuid4())
    r = put(api, "cm", pid, {"key_contacts": [{"id": mine, "name": "山田 花子"}]}, 0)
    assert r.json["content"]["key_contacts"][0]["id"] == mine
    twice = {"key_contacts": [{"id": mine, "name": "山田 花子"}, {"id": mine, "name": "山田 一郎"}]}
    r = put(api, "cm", pid, twice, 1)
    assert r.status_code == 422 and r.json["errors"]["content"]["key_contacts"]["1"]["id"]
    assert api.call("cm", "GET", f"{R}/{pid}/record/family_care").json["version"] == 1  # nothing written


def test_rows_saved_before_ids_existed_read_with_the_same_id_every_time(api):
    pid = team(api)
    put(
        api,
        "pharm",
        pid,
        {"medications": [{"name": "フロセミド錠20mg"}, {"name": "アムロジピン錠5mg"}]},
        0,
        "diseases_medications",
    )
    with api.app.app_context():  # as a revision written before row ids: the same rows, no ids
        rev = db.session.execute(select(SectionRevision).where(SectionRevision.patient_id == pid)).scalars().one()
        key = vault.patient_key(db.session.get(Patient, pid))
        content = crypto.unseal_json(key, rev.content_ct, vault.revision_aad(rev))
        content["medications"] = [{k: v for k, v in m.items() if k != "id"} for m in content["medications"]]
        rev.content_ct = crypto.seal_json(key, content, vault.revision_aad(rev))
        db.session.commit()
    read = lambda: api.call("doc", "GET", f"{R}/{pid}/record/diseases_medications").json  # noqa: E731
    ids = [m["id"] for m in read()["content"]["medications"]]
    assert len(set(ids)) == 2 and [m["id"] for m in read()["content"]["medications"]] == ids
    # saving them unchanged writes nothing; saving one changed keeps the other's id
    same = {"medications": [{"name": "フロセミド錠20mg"}, {"name": "アムロジピン錠5mg"}]}
    assert put(api, "doc", pid, same, 1, "diseases_medications").json["version"] == 1
    changed = {"medications": [{"name": "フロセミド錠40mg"}, {"name": "アムロジピン錠5mg"}]}
    after = put(api, "doc", pid, changed, 1, "diseases_medications").json["content"]["medications"]
    assert after[1]["id"] == ids[1] and after[0]["id"] not in ids


def test_the_history_follows_a_row_by_its_id_not_its_place(app):
    """A key person added at the top is one added line, not every row changed."""
    from renkei.sections.catalogue import SECTIONS
    from web.forms import diff

    a = {"id": "a", "name": "山田 花子", "relationship": "長女"}
    b = {"id": "b", "name": "山田 一郎", "relationship": "長男"}
    new = {"id": "c", "name": "佐藤 京子", "relationship": "姪"}
    with app.test_request_context():
        changes = diff(SECTIONS["family_care"].layout, {"key_contacts": [a, b]}, {"key_contacts": [new, a, b]})
    assert [(c["old"], c["new"]) for c in changes] == [(None, "氏名: 佐藤 京子 / 続柄: 姪")]
