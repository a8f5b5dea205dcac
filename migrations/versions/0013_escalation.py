"""escalation of unacknowledged urgent notes

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "escalation_rules",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("after_minutes", sa.Integer(), nullable=False),
        sa.Column("repeat_minutes", sa.Integer(), nullable=False),
        sa.Column("call_list", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_table(
        "escalations",
        sa.Column("note_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"]),
        sa.PrimaryKeyConstraint("note_id"),
    )
    op.create_index(op.f("ix_escalations_due_at"), "escalations", ["due_at"], unique=False)
    op.create_index(op.f("ix_escalations_patient_id"), "escalations", ["patient_id"], unique=False)
    op.create_table(
        "escalation_rounds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("note_id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("told", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_escalation_rounds_note_id"), "escalation_rounds", ["note_id"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_escalation_rounds_note_id"), table_name="escalation_rounds")
    op.drop_table("escalation_rounds")
    op.drop_index(op.f("ix_escalations_patient_id"), table_name="escalations")
    op.drop_index(op.f("ix_escalations_due_at"), table_name="escalations")
    op.drop_table("escalations")
    op.drop_table("escalation_rules")
