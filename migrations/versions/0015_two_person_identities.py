"""two people for every identity and seat an administrator sets: invitations instead
of administrator-chosen passwords, confirmations, pending appointments; the access
log's detail kept whole

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_invitations_user_id_users")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_invitations_created_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_invitations_code_hash")),
    )
    op.create_index(op.f("ix_invitations_user_id"), "invitations", ["user_id"])
    op.create_table(
        "appointments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("requested_by", sa.String(length=36), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_by", sa.String(length=36), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_appointments_patient_id_patients")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_appointments_user_id_users")),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"], name=op.f("fk_appointments_requested_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index(op.f("ix_appointments_patient_id"), "appointments", ["patient_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("changed_by", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("made_by", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("confirmed_by", sa.String(length=36), nullable=True))
    # The access log's detail whole (a call list of seven people was cut at 200 characters).
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("detail", type_=sa.Text(), existing_type=sa.String(length=200), existing_nullable=True)
    # People who exist before this revision were made under the old rules, with a password
    # an administrator chose that nothing made them change. Those who enrolled a second
    # factor (so hold the account themselves) and administrators (made on the server, or
    # with a second factor always) stay confirmed; anyone else awaits a second person's
    # confirmation (docs/API.md, "Two people"; platform/DEPLOY.md, upgrading).
    op.execute("UPDATE users SET confirmed_at = created_at WHERE totp_enabled OR is_admin")


def downgrade():
    op.drop_table("appointments")
    op.drop_table("invitations")
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("detail", type_=sa.String(length=200), existing_type=sa.Text(), existing_nullable=True)
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+ too): copying `users`, which every other
    # table refers to, is refused while their rows point at it.
    for column in ("confirmed_by", "confirmed_at", "made_by", "changed_by"):
        op.execute(f"ALTER TABLE users DROP COLUMN {column}")
