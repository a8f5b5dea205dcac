"""phone numbers of people and organisations; the emergency sheet's code

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN and an index (no batch table copies): on SQLite, recreating
# `patients` would trip the foreign keys that point at it.
def upgrade():
    op.add_column("organizations", sa.Column("phone", sa.String(length=40), nullable=True))
    op.add_column("users", sa.Column("phone", sa.String(length=40), nullable=True))
    op.add_column("patients", sa.Column("sheet_code_index", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_patients_sheet_code_index"), "patients", ["sheet_code_index"], unique=True)


def downgrade():
    op.drop_index(op.f("ix_patients_sheet_code_index"), table_name="patients")
    op.drop_column("patients", "sheet_code_index")
    op.drop_column("users", "phone")
    op.drop_column("organizations", "phone")
