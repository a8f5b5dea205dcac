"""the access log becomes a Merkle tree sealed in batches (issue 14)

The hash-chained log is verified once here; its entries become the first leaves, in
their order: each keeps its number as its insertion id, and the sealer gives them
their places in the tree (the same numbers, when nothing was archived). Archive files
and anchors of the hash chain are not carried over (docs/ARCHITECTURE.md, "The access
log": "Before the tree").

Revision ID: 0010
Revises: 0009
"""

import hashlib
import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
FIELDS = (
    "at",
    "actor_id",
    "actor_org_id",
    "action",
    "patient_id",
    "section",
    "outcome",
    "client_addr",
    "request_id",
    "detail",
)
OLD_LOG = sa.table(
    "audit_log",
    sa.column("seq", sa.Integer),
    sa.column("at", sa.DateTime),
    *(sa.column(f, sa.String) for f in FIELDS[1:]),
    sa.column("prev_hash", sa.String),
    sa.column("hash", sa.String),
)
OLD_ANCHORS = sa.table("audit_anchors", sa.column("seq", sa.Integer), sa.column("hash", sa.String))


def chain_hash(prev: str, seq: int, row) -> str:
    """The hash chain's entry hash (renkei/access_log/entries.py before this revision)."""
    fields = [seq, row.at.isoformat(timespec="microseconds"), *(getattr(row, f) for f in FIELDS[1:]), prev]
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def _new_log():
    op.create_table(
        "audit_log",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("actor_org_id", sa.String(length=36), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("section", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("client_addr", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("mac", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_log_seq")),
    )
    op.create_index("ix_audit_action_id", "audit_log", ["action", "id"])
    op.create_index("ix_audit_actor_id", "audit_log", ["actor_id", "id"])
    op.create_index("ix_audit_patient_id", "audit_log", ["patient_id", "id"])
    op.create_index("ix_audit_at", "audit_log", ["at"])
    op.create_index(
        "ix_audit_unsealed",
        "audit_log",
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )


def upgrade():
    conn = op.get_bind()
    anchor = conn.execute(
        sa.select(OLD_ANCHORS.c.seq, OLD_ANCHORS.c.hash).order_by(OLD_ANCHORS.c.seq.desc()).limit(1)
    ).first()
    expected, prev = (anchor.seq + 1, anchor.hash) if anchor else (1, "0" * 64)
    rows = conn.execute(sa.select(OLD_LOG).order_by(OLD_LOG.c.seq)).all()
    for row in rows:
        if row.seq != expected or row.prev_hash != prev or chain_hash(prev, row.seq, row) != row.hash:
            raise RuntimeError(
                f"the access log's hash chain does not verify at entry {min(row.seq, expected)}: "
                "restore a backup before upgrading (nothing was changed)"
            )
        prev, expected = row.hash, row.seq + 1

    op.drop_table("audit_anchors")
    for name in ("ix_audit_patient_seq", "ix_audit_at", "ix_audit_actor_seq", "ix_audit_action_seq"):
        op.drop_index(name, table_name="audit_log")
    op.drop_table("audit_log")
    _new_log()
    log = sa.table(
        "audit_log", sa.column("id", ID), sa.column("at", sa.DateTime), *(sa.column(f, sa.String) for f in FIELDS[1:])
    )
    if rows:
        conn.execute(log.insert(), [{"id": r.seq, **{f: getattr(r, f) for f in FIELDS}} for r in rows])
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), :n)"), {"n": rows[-1].seq})

    op.create_table(
        "audit_anchors",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("archived_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_anchors")),
    )
    op.create_table(
        "audit_tiles",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_audit_tiles")),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    lease = op.create_table(
        "audit_lease",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=80), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_lease")),
    )
    op.bulk_insert(lease, [{"id": 1, "holder": "", "epoch": 0, "expires_at": datetime(2000, 1, 1)}])


def downgrade():
    """Back to a hash chain over the entries in insertion order (the tree is dropped)."""
    conn = op.get_bind()
    new = sa.table(
        "audit_log", sa.column("id", ID), sa.column("at", sa.DateTime), *(sa.column(f, sa.String) for f in FIELDS[1:])
    )
    rows = conn.execute(sa.select(new).order_by(new.c.id)).all()
    for name in ("audit_lease", "audit_head", "audit_tiles", "audit_anchors"):
        op.drop_table(name)
    for name in ("ix_audit_unsealed", "ix_audit_at", "ix_audit_patient_id", "ix_audit_actor_id", "ix_audit_action_id"):
        op.drop_index(name, table_name="audit_log")
    op.drop_table("audit_log")
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        *(sa.Column(f, sa.String(length=200), nullable=f not in ("action", "outcome")) for f in FIELDS[1:]),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    for name, cols in (
        ("ix_audit_action_seq", ["action", "seq"]),
        ("ix_audit_actor_seq", ["actor_id", "seq"]),
        ("ix_audit_at", ["at"]),
        ("ix_audit_patient_seq", ["patient_id", "seq"]),
    ):
        op.create_index(name, "audit_log", cols)
    op.create_table(
        "audit_anchors",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("archived_at", sa.DateTime(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_anchors")),
    )
    prev, chained = "0" * 64, []
    for seq, r in enumerate(rows, start=1):
        digest = chain_hash(prev, seq, r)
        chained.append({"seq": seq, **{f: getattr(r, f) for f in FIELDS}, "prev_hash": prev, "hash": digest})
        prev = digest
    if chained:
        conn.execute(OLD_LOG.insert(), chained)
