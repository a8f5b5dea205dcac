"""Issue 11 (4): a creating POST sent again with the same Idempotency-Key creates
nothing new (docs/API.md, "Retrying safely: Idempotency-Key")."""

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update

from models import IdempotentRequest, Note, User
from renkei.common import db, idempotency, work
from renkei.common.problems import Problem
from renkei.notes import notes
from tests.helpers import PASSWORD, R, days_ago, signed_in_page, team

NOTE = {"body": "夜間に発熱 38.2℃", "category": "vital_signs", "urgent": True}


def timeline(api, who, pid):
    return [n["body"] for n in api.call(who, "GET", f"{R}/{pid}/notes").json["items"]]


def test_a_repeated_note_answers_the_first_response_and_posts_once(api):
    pid = team(api)
    first = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k-1"})
    again = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": '"k-1"'})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert timeline(api, "doc", pid) == [NOTE["body"]]
    other = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k-2"})
    assert other.json["id"] != first.json["id"] and len(timeline(api, "doc", pid)) == 2
    # The key is the person's own: a colleague's same key is a request of their own.
    assert (
        api.call("doc", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k-1"}).json["id"]
        != first.json["id"]
    )


def test_every_creating_route_replays_instead_of_creating_twice(api):
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    api.user("er", "physician")
    body = {"name": "連携 花子", "name_kana": "れんけい はなこ", "birth_date": "1940-02-03", "sex": "female"}
    calls = [("cm", "/api/v1/patients", body)]
    for who, path, payload in calls:
        a = api.call(who, "POST", path, payload, headers={"Idempotency-Key": "p"})
        b = api.call(who, "POST", path, payload, headers={"Idempotency-Key": "p"})
        assert a.status_code == b.status_code == 201 and a.json == b.json
    pid = a.json["id"]
    assert len(api.call("cm", "GET", "/api/v1/patients").json["items"]) == 1
    for who, path, payload in [
        ("cm", f"{R}/{pid}/consents", {"obtained_on": str(days_ago(30)), "obtained_by": "cm", "scope": "情報共有"}),
        ("cm", f"{R}/{pid}/team", {"user_id": api.users["doc"]["id"], "role": "primary_physician"}),
        ("er", f"{R}/{pid}/breakglass", {"reason": "夜間の急変で往診", "otp": api.otp("er")}),
        ("admin", "/api/v1/organizations", {"name": "二つ目の事業所", "kind": "clinic"}),
    ]:
        a = api.call(who, "POST", path, payload, headers={"Idempotency-Key": "for-" + path})
        b = api.call(who, "POST", path, payload, headers={"Idempotency-Key": "for-" + path})
        assert a.status_code == 201, (path, a.json)
        assert b.status_code == 201 and b.json == a.json, path
    note = api.call("doc", "POST", f"{R}/{pid}/notes", NOTE).json["id"]
    for _ in range(2):
        assert (
            api.call("cm", "POST", f"{R}/{pid}/notes/{note}/ack", headers={"Idempotency-Key": "ack"}).status_code == 204
        )
    assert [o["name"] for o in api.call("admin", "GET", "/api/v1/organizations").json["items"]].count(
        "二つ目の事業所"
    ) == 1


def test_the_same_key_with_a_different_body_is_422_and_posts_nothing(api):
    pid = team(api)
    api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    r = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE | {"body": "別の内容"}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 422 and "Idempotency-Key" in r.json["errors"]
    assert "別の内容" not in r.get_data(as_text=True) and timeline(api, "cm", pid) == [NOTE["body"]]


def test_a_malformed_key_is_400_naming_the_header(api):
    pid = team(api)
    for bad in ["", "x" * 256, "ключ", 'a"b']:
        r = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": bad})
        assert r.status_code == 400 and "Idempotency-Key" in r.json["errors"], bad
    assert timeline(api, "cm", pid) == []


def test_a_failed_first_request_is_not_kept_so_its_retry_runs(api, monkeypatch):
    pid = team(api)
    r = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE | {"category": "gossip"}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 422
    real = notes.post

    def broken(*a, **kw):
        raise RuntimeError("the worker fell over")

    monkeypatch.setattr(notes, "post", broken)
    assert api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"}).status_code == 500
    monkeypatch.setattr(notes, "post", real)
    r = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    assert timeline(api, "cm", pid) == [NOTE["body"]]


def test_while_the_first_runs_a_repeat_is_409_and_an_abandoned_claim_is_taken_over(api):
    pid = team(api)
    with api.app.app_context():  # a first request that claimed the key and is still running
        idempotency.claim(db.session.get(User, api.users["cm"]["id"]), "k", "POST", f"{R}/{pid}/notes", NOTE)
    r = api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    assert r.status_code == 409 and int(r.headers["Retry-After"]) >= 1
    with api.app.app_context():  # ...and was stuck for 20 s (its process died, say)
        db.session.execute(
            update(IdempotentRequest).values(claimed_at=IdempotentRequest.claimed_at - timedelta(seconds=20))
        )
        db.session.commit()
    assert api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"}).status_code == 201
    assert timeline(api, "cm", pid) == [NOTE["body"]]


def test_a_first_request_that_lost_its_claim_to_a_retry_commits_nothing(api):
    """Were the stuck first request still alive, it must not create a second note."""
    pid = team(api)
    with api.app.test_request_context():
        cm = db.session.get(User, api.users["cm"]["id"])
        first = idempotency.claim(cm, "k", "POST", f"{R}/{pid}/notes", NOTE)
        db.session.execute(update(IdempotentRequest).values(claimed_at=first.claimed_at - timedelta(seconds=20)))
        db.session.commit()
        first.claimed_at -= timedelta(seconds=20)
    assert api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"}).status_code == 201
    with api.app.test_request_context():
        work.begin()
        notes.post(db.session.get(User, api.users["cm"]["id"]), pid, NOTE["body"], "other")
        with pytest.raises(Problem) as stopped:
            idempotency.keep(first, 201, {}, "{}", pid)
        assert stopped.value.status == 409
        db.session.rollback()
    assert timeline(api, "cm", pid) == [NOTE["body"]]


def test_kept_answers_are_sealed_and_replayed_only_to_who_may_still_see_the_patient(api):
    pid = team(api)
    r = api.call("pharm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    with api.app.app_context():
        kept = db.session.execute(select(IdempotentRequest)).scalar_one()
        assert kept.status == 201 and NOTE["body"].encode() not in kept.answer_ct
        assert r.json["id"].encode() not in kept.answer_ct
    assert api.call("cm", "DELETE", f"{R}/{pid}/team/{api.users['pharm']['id']}").status_code == 204
    again = api.call("pharm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    assert again.status_code == 404 and NOTE["body"] not in again.get_data(as_text=True)


def test_kept_answers_go_after_24_hours(api):
    pid = team(api)
    api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "old"})
    with api.app.app_context():
        db.session.execute(
            update(IdempotentRequest).values(claimed_at=IdempotentRequest.claimed_at - timedelta(hours=25))
        )
        db.session.commit()
    api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "new"})
    with api.app.app_context():
        assert db.session.execute(select(IdempotentRequest.status)).scalars().all() == [201]


@pytest.mark.postgres
def test_concurrent_repeats_make_one_note(pg_world):
    """Eight copies of one note with one key, at once, through a real server on PostgreSQL."""
    w = pg_world
    with w.server() as base:
        results, go = [], threading.Barrier(8)

        def send():
            go.wait()
            r = requests.post(
                f"{base}{R}/{w.pid}/notes",
                json=NOTE,
                timeout=30,
                headers={"Authorization": "Bearer " + w.tokens["ns"], "Idempotency-Key": "once"},
            )
            results.append((r.status_code, r.json().get("id")))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert {s for s, _ in results} <= {201, 409} and any(s == 201 for s, _ in results)
    assert len({i for s, i in results if s == 201}) == 1
    with w.app.app_context():
        assert db.session.execute(select(Note.id)).scalars().all() == [results[[s for s, _ in results].index(201)][1]]
        db.session.remove()


def test_the_page_resends_a_note_whose_answer_was_lost_and_it_appears_once(pg_world, browser):
    """The note reached the server but its answer did not reach the tablet: the page
    sends it again with the same key and the timeline shows it once."""
    w = pg_world
    with w.server() as base:
        page = signed_in_page(browser, base, "cm", PASSWORD, otp=w.api.otp("cm"))
        keys = []

        def lose_first_answer(route):
            keys.append(route.request.headers.get("idempotency-key"))
            if len(keys) == 1:
                route.fetch()  # the server creates the note...
                route.abort("connectionreset")  # ...and the answer is lost on the way back
            else:
                route.continue_()

        # The context's route: the service worker may be the one that sends it again.
        page.context.route(f"**/api/v1/patients/{w.pid}/notes", lose_first_answer)
        page.goto(f"/patients/{w.pid}")
        page.fill("#note-form textarea[name=body]", "電波の悪い訪問先から")
        page.click("#note-form button[type=submit]")
        page.wait_for_selector("#note-form .status:has-text('投稿しました')", timeout=15000)
        assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
        assert page.locator("#timeline li", has_text="電波の悪い訪問先から").count() == 1
        page.context.close()
    assert timeline(w.api, "cm", w.pid) == ["電波の悪い訪問先から"]


def test_an_administrators_repeated_appointment_is_replayed_not_refused(api):
    """Administrators never read a record, so the replay's access check must not ask them to.
    (The appointment itself is pending until a second person confirms it: 202, issue 29.)"""
    api.user("ns", "nurse")
    api.user("cm", "care_manager")
    pid = api.patient("ns")  # a team without a care manager or physician
    body = {"user_id": api.users["cm"]["id"], "role": "care_manager"}
    first = api.call("admin", "POST", f"{R}/{pid}/team", body, headers={"Idempotency-Key": "appoint"})
    again = api.call("admin", "POST", f"{R}/{pid}/team", body, headers={"Idempotency-Key": "appoint"})
    assert first.status_code == 202, first.json
    assert again.status_code == 202 and again.json == first.json


def test_deleting_a_patient_forgets_its_kept_answers_and_fingerprints(api):
    pid = team(api)
    api.call("cm", "POST", f"{R}/{pid}/notes", NOTE, headers={"Idempotency-Key": "k"})
    assert api.call("admin", "DELETE", f"{R}/{pid}").status_code == 204
    with api.app.app_context():
        assert db.session.execute(select(IdempotentRequest).where(IdempotentRequest.patient_id == pid)).all() == []


def test_a_lone_surrogate_in_a_body_is_400_not_500(api):
    pid = team(api)
    r = api.client.post(
        f"{R}/{pid}/notes",
        data='{"body": "\\ud800", "category": "other"}',
        headers={
            "Authorization": "Bearer " + api.tokens["cm"],
            "Content-Type": "application/json",
            "Idempotency-Key": "s",
        },
    )
    assert r.status_code == 400 and r.json["status"] == 400
