"""login throttle: counting windows (per login and address, per login, per address)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("login_throttle") as batch:
        batch.add_column(sa.Column("window_start", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("login_digest", sa.String(length=64), nullable=True))
        batch.create_index("ix_login_throttle_login_digest", ["login_digest"])


def downgrade():
    with op.batch_alter_table("login_throttle") as batch:
        batch.drop_index("ix_login_throttle_login_digest")
        batch.drop_column("login_digest")
        batch.drop_column("window_start")
