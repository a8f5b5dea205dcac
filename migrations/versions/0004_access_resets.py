"""access resets by two administrators; the reset person's notice and re-enrolment

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "access_resets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("approved_by", sa.String(length=36), nullable=True),
        sa.Column("approved_at", sa.DateTime(), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("code_expires_at", sa.DateTime(), nullable=True),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["approved_by"], ["users.id"], name=op.f("fk_access_resets_approved_by_users")),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"], name=op.f("fk_access_resets_requested_by_users")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_access_resets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_resets")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_access_resets_code_hash")),
    )
    with op.batch_alter_table("access_resets") as batch:
        batch.create_index(batch.f("ix_access_resets_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("reset_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("watch_until", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("reset_by", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("reset_notice", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("totp_reenrol", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("users") as batch:
        for column in ("totp_reenrol", "reset_notice", "reset_by", "watch_until", "reset_at"):
            batch.drop_column(column)
    op.drop_table("access_resets")
