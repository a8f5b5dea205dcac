"""observations (vital signs) and alert thresholds

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "observations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("measured_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("value_ct", sa.LargeBinary(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("error_at", sa.DateTime(), nullable=True),
        sa.Column("error_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_observations_patient_id_patients")),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], name=op.f("fk_observations_recorded_by_users")),
        sa.ForeignKeyConstraint(["error_by"], ["users.id"], name=op.f("fk_observations_error_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observations")),
    )
    op.create_index("ix_observations_series", "observations", ["patient_id", "kind", "measured_at"])
    op.create_index("ix_observations_patient_measured", "observations", ["patient_id", "measured_at"])
    op.create_index("ix_observations_alerts", "observations", ["patient_id", "alert", "recorded_at"])
    op.create_table(
        "threshold_revisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_ct", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_threshold_revisions_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_threshold_revisions_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threshold_revisions")),
        sa.UniqueConstraint("patient_id", "version", name="uq_threshold_revisions_version"),
    )


def downgrade():
    op.drop_table("threshold_revisions")
    op.drop_index("ix_observations_alerts", table_name="observations")
    op.drop_index("ix_observations_patient_measured", table_name="observations")
    op.drop_index("ix_observations_series", table_name="observations")
    op.drop_table("observations")
