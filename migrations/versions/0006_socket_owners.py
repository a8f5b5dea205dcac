"""socket rows name their process; processes heartbeat so a killed one's rows go

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "socket_owners",
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_socket_owners")),
    )
    with op.batch_alter_table("socket_sessions") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=80), nullable=True))
        batch.create_index(batch.f("ix_socket_sessions_owner"), ["owner"], unique=False)


def downgrade():
    with op.batch_alter_table("socket_sessions") as batch:
        batch.drop_index(batch.f("ix_socket_sessions_owner"))
        batch.drop_column("owner")
    op.drop_table("socket_owners")
