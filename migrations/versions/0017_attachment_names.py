"""attachments: the file's name as it was chosen, sealed under the patient's key

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("attachments") as batch:
        batch.add_column(sa.Column("name_ct", sa.LargeBinary(), nullable=True))


def downgrade():
    with op.batch_alter_table("attachments") as batch:
        batch.drop_column("name_ct")
