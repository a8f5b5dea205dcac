"""api_tokens: a token issued to someone who still has to enrol a second factor opens
only the enrolment, also after it (they sign in again with the new factor)

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    # Tokens issued before stay NULL: renkei/people/auth.py enrolment_only decides for them.
    op.add_column("api_tokens", sa.Column("enrolment_only", sa.Boolean(), nullable=True))


def downgrade():
    op.execute("ALTER TABLE api_tokens DROP COLUMN enrolment_only")
