"""phone numbers of people and organisations; the emergency sheet's code

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organizations') as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=40), nullable=True))
    with op.batch_alter_table('users') as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=40), nullable=True))
    with op.batch_alter_table('patients') as batch_op:
        batch_op.add_column(sa.Column('sheet_code_index', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_patients_sheet_code_index'), ['sheet_code_index'])


def downgrade():
    with op.batch_alter_table('patients') as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_patients_sheet_code_index'), type_='unique')
        batch_op.drop_column('sheet_code_index')
    with op.batch_alter_table('users') as batch_op:
        batch_op.drop_column('phone')
    with op.batch_alter_table('organizations') as batch_op:
        batch_op.drop_column('phone')
