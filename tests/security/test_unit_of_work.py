"""A security review of the restructuring (issue 30): what the unit of work and the API
door promise when something goes wrong on the way out."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from models import AuditEntry, UserEvent
from renkei.common import db, work
from renkei.outreach import events
from tests.helpers import team

R = "/api/v1/patients"


def test_a_failed_request_sends_nothing_even_when_its_rollback_fails(api, monkeypatch):
    """The connection died under a failing request: ROLLBACK raised. The events it had
    named must not ride on the commit that writes its failure entry."""
    pid = team(api)
    with api.app.test_request_context():
        unit = work.begin()
        events.queue("record.updated", pid, {"section": "adl", "version": 1})
        real = db.session.rollback

        def dying():
            real()
            raise OperationalError("ROLLBACK", {}, Exception("the connection is gone"))

        monkeypatch.setattr(db.session, "rollback", dying)
        unit.finish(409, "record.write", None, "test")
        monkeypatch.undo()
    with api.app.app_context():
        assert db.session.execute(select(func.count()).where(UserEvent.name == "record.updated")).scalar() == 0


def test_a_malformed_if_match_on_a_patient_one_may_not_see_is_404(api):
    pid = team(api)
    api.user("out", "nurse")
    for value in ("*", "garbage", '"１"'):
        for path, body in (
            (f"{R}/{pid}/record/adl", {"content": {}}),
            (f"{R}/{pid}/observations/thresholds", {"thresholds": {}}),
        ):
            r = api.call("out", "PUT", path, body, headers={"If-Match": value})
            assert r.status_code == 404, (value, path, r.json)
    r = api.call("cm", "PUT", f"{R}/{pid}/record/adl", {"content": {}}, headers={"If-Match": "garbage"})
    assert r.status_code == 400  # the team still hears what is wrong with it


class Failing:
    def before_commit(self, unit):
        pass

    def after_commit(self, unit):
        raise RuntimeError("a step after the commit broke")


def test_a_step_failing_after_the_commit_does_not_report_a_committed_change_as_failed(api):
    pid = team(api)
    steps = api.app.extensions[work.STEPS]
    steps.append(Failing())
    try:
        r = api.call("cm", "POST", f"{R}/{pid}/notes", {"body": "夕方に訪問", "category": "contact"})
    finally:
        steps.pop()
    assert r.status_code == 201
    with api.app.app_context():
        outcomes = db.session.execute(select(AuditEntry.outcome).where(AuditEntry.action == "note.create")).all()
    assert [o for (o,) in outcomes] == ["ok"]  # one entry, and it says what happened


@pytest.mark.parametrize("path", ["/api/v1/patients/%00", "/api/v1/patients/a%00b/notes"])
def test_a_nul_in_an_id_is_not_found_on_every_database(api, path):
    api.user("cm", "care_manager")
    assert api.call("cm", "GET", path).status_code == 404


def test_a_nul_in_a_cursor_is_refused_naming_it(api):
    pid = team(api)
    r = api.call("cm", "GET", f"{R}/{pid}/notes?cursor=2026-01-01T00:00:00%00|x")
    assert r.status_code == 422 and "cursor" in r.json["errors"]
