"""Finding 14: who wrote a revision or a note, when, and a note's category and urgency
are bound into the encryption label; a database writer who changes them breaks
decryption instead of re-attributing the text. Existing rows are re-sealed by migration."""

from alembic import command
from sqlalchemy import text

from renkei.common import db
from renkei.migrations import alembic_config
from tests.helpers import R, team


def _sql(api, statement, **params):
    with api.app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


def test_a_revision_reattributed_in_the_database_no_longer_reads(api):
    pid = team(api)
    api.call(
        "doc", "PUT", f"{R}/{pid}/record/condition", {"content": {"summary": "医師の所見"}}, headers={"If-Match": '"0"'}
    )
    _sql(api, "UPDATE section_revisions SET created_by = :u", u=api.users["pharm"]["id"])
    r = api.call("cm", "GET", f"{R}/{pid}/record/condition")
    assert r.status_code == 500 and "could not be decrypted" in r.json["detail"]


def test_a_note_made_urgent_or_recategorised_in_the_database_no_longer_reads(api):
    pid = team(api)
    api.call("doc", "POST", f"{R}/{pid}/notes", {"body": "経過良好", "category": "observation"})
    _sql(api, "UPDATE notes SET urgent = :t", t=True)
    r = api.call("cm", "GET", f"{R}/{pid}/notes")
    assert r.status_code == 500 and "could not be decrypted" in r.json["detail"]


def test_existing_rows_are_resealed_by_the_migration_both_ways(api):
    pid = team(api)
    api.call(
        "doc",
        "PUT",
        f"{R}/{pid}/record/condition",
        {"content": {"summary": "移行前の記録"}},
        headers={"If-Match": '"0"'},
    )
    api.call("doc", "POST", f"{R}/{pid}/notes", {"body": "移行前のメモ", "category": "observation", "urgent": True})
    engine = api.app.extensions["renkei.engine"]
    with api.app.app_context():
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0004")
    # sealed the old way now: today's code cannot read them until the migration runs (500:
    # they do not decrypt; 503: the schema lacks columns added since, e.g. 0009's)
    assert api.call("cm", "GET", f"{R}/{pid}/record/condition").status_code in (500, 503)
    with api.app.app_context():
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
    assert api.call("cm", "GET", f"{R}/{pid}/record/condition").json["content"] == {"summary": "移行前の記録"}
    assert api.call("cm", "GET", f"{R}/{pid}/notes").json["items"][0]["body"] == "移行前のメモ"
