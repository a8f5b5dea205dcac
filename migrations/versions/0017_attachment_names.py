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
    op.add_column("attachments", sa.Column("name_ct", sa.LargeBinary(), nullable=True))


def downgrade():
    # In place (SQLite 3.35+ too): copying `attachments` is refused while its frames point at it.
    op.execute("ALTER TABLE attachments DROP COLUMN name_ct")
