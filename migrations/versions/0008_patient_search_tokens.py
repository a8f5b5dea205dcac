"""family-name prefix search: keyed hashes per patient

Revision ID: 0008
Revises: 0007

Existing patients get their tokens from `flask --app wsgi init-db`, which can decrypt
their names (renkei/patients/registry.py, index_missing_names); a migration holds no keys.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "patient_search_tokens",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_patient_search_tokens_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("patient_id", "token", name=op.f("pk_patient_search_tokens")),
    )
    op.create_index(op.f("ix_patient_search_tokens_token"), "patient_search_tokens", ["token"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_patient_search_tokens_token"), table_name="patient_search_tokens")
    op.drop_table("patient_search_tokens")
