"""answers kept for Idempotency-Key retries

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "idempotent_requests",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("answer_ct", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_idempotent_requests_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "key_digest", name=op.f("pk_idempotent_requests")),
    )
    op.create_index(op.f("ix_idempotent_requests_claimed_at"), "idempotent_requests", ["claimed_at"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_idempotent_requests_claimed_at"), table_name="idempotent_requests")
    op.drop_table("idempotent_requests")
