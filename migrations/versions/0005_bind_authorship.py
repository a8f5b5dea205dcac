"""bind section revisions and notes to who wrote them and when (and a note's category
and urgency) in their encryption label, so a database writer cannot re-attribute them

Existing rows are re-sealed, which needs the master key: run it through
`flask --app wsgi init-db` (an empty database needs nothing).

Revision ID: 0005
Revises: 0004
"""

from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

patients = sa.table(
    "patients", sa.column("id", sa.String), sa.column("kek_id", sa.String), sa.column("wrapped_key", sa.LargeBinary)
)
revisions = sa.table(
    "section_revisions",
    sa.column("id", sa.String),
    sa.column("patient_id", sa.String),
    sa.column("section", sa.String),
    sa.column("version", sa.Integer),
    sa.column("created_by", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("content_ct", sa.LargeBinary),
)
notes = sa.table(
    "notes",
    sa.column("id", sa.String),
    sa.column("patient_id", sa.String),
    sa.column("created_by", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("category", sa.String),
    sa.column("urgent", sa.Boolean),
    sa.column("body_ct", sa.LargeBinary),
)


def _old_revision(r):
    return f"patient={r.patient_id}|section={r.section}|version={r.version}"


def _old_note(n):
    return f"patient={n.patient_id}|note={n.id}"


def _reseal(forward: bool):
    conn = op.get_bind()
    if (
        conn.execute(sa.select(sa.func.count()).select_from(revisions)).scalar() == 0
        and conn.execute(sa.select(sa.func.count()).select_from(notes)).scalar() == 0
    ):
        return
    from flask import has_app_context  # only a database with data needs the app's keys

    if not has_app_context():
        raise RuntimeError("re-sealing existing rows needs the master key: run `flask --app wsgi init-db`")
    from renkei.common import crypto, vault

    for p in conn.execute(sa.select(patients).where(patients.c.wrapped_key.is_not(None))).all():
        key = vault.patient_key(SimpleNamespace(id=p.id, kek_id=p.kek_id, wrapped_key=p.wrapped_key))
        for r in conn.execute(sa.select(revisions).where(revisions.c.patient_id == p.id)).all():
            labels = (_old_revision(r), vault.revision_aad(r))
            old, new = labels if forward else labels[::-1]
            value = crypto.unseal(key, r.content_ct, old)
            conn.execute(
                revisions.update().where(revisions.c.id == r.id).values(content_ct=crypto.seal(key, value, new))
            )
        for n in conn.execute(sa.select(notes).where(notes.c.patient_id == p.id)).all():
            labels = (_old_note(n), vault.note_aad(n))
            old, new = labels if forward else labels[::-1]
            value = crypto.unseal(key, n.body_ct, old)
            conn.execute(notes.update().where(notes.c.id == n.id).values(body_ct=crypto.seal(key, value, new)))


def upgrade():
    _reseal(forward=True)


def downgrade():
    _reseal(forward=False)
