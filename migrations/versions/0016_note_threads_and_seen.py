"""notes: replies (reply_to) and who has seen each note (note_seen)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "sqlite":
        # In place: copying `notes` (batch mode) is refused while other tables' rows point at it.
        op.execute(
            "ALTER TABLE notes ADD COLUMN reply_to VARCHAR(36) CONSTRAINT fk_notes_reply_to_notes REFERENCES notes (id)"
        )
    else:
        op.add_column("notes", sa.Column("reply_to", sa.String(length=36), nullable=True))
        op.create_foreign_key(op.f("fk_notes_reply_to_notes"), "notes", "notes", ["reply_to"], ["id"])
    op.create_index("ix_notes_reply_to", "notes", ["reply_to"])
    op.create_table(
        "note_seen",
        sa.Column("note_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"], name=op.f("fk_note_seen_note_id_notes")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_note_seen_user_id_users")),
        sa.PrimaryKeyConstraint("note_id", "user_id", name=op.f("pk_note_seen")),
    )
    op.create_index("ix_note_seen_user", "note_seen", ["user_id", "note_id"])
    # A 確認 already given means the note was read.
    op.execute("INSERT INTO note_seen (note_id, user_id, at) SELECT note_id, user_id, at FROM note_acks")


def downgrade():
    op.drop_index("ix_note_seen_user", table_name="note_seen")
    op.drop_table("note_seen")
    op.drop_index("ix_notes_reply_to", table_name="notes")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f("fk_notes_reply_to_notes"), "notes", type_="foreignkey")
    op.execute("ALTER TABLE notes DROP COLUMN reply_to")  # SQLite 3.35+ too, in place
