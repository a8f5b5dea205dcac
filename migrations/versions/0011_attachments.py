"""attachments: photos and documents, sealed in frames

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "attachments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("note_id", sa.String(length=36), nullable=True),
        sa.Column("section", sa.String(length=40), nullable=True),
        sa.Column("content_type", sa.String(length=40), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("thumb_frames", sa.Integer(), nullable=True),
        sa.Column("caption_ct", sa.LargeBinary(), nullable=True),
        sa.Column("series_ct", sa.LargeBinary(), nullable=True),
        sa.Column("series_index", sa.String(length=64), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["note_id"], ["notes.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_attachments_note_id"), "attachments", ["note_id"], unique=False)
    op.create_index("ix_attachments_patient_created", "attachments", ["patient_id", "created_at"], unique=False)
    op.create_index("ix_attachments_patient_series", "attachments", ["patient_id", "series_index"], unique=False)
    op.create_table(
        "attachment_frames",
        sa.Column("attachment_id", sa.String(length=36), nullable=False),
        sa.Column("part", sa.String(length=8), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["attachment_id"], ["attachments.id"]),
        sa.PrimaryKeyConstraint("attachment_id", "part", "index"),
    )


def downgrade():
    op.drop_table("attachment_frames")
    op.drop_index("ix_attachments_patient_series", table_name="attachments")
    op.drop_index("ix_attachments_patient_created", table_name="attachments")
    op.drop_index(op.f("ix_attachments_note_id"), table_name="attachments")
    op.drop_table("attachments")
