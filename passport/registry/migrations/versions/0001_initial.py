"""Initial registry schema: cells, records, chain heads, actor certificates, log, alerts.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 02:55:41.516120
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actor_cert",
        sa.Column("sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("x5t64", sa.LargeBinary(length=8), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("subject", sa.String(length=400), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    with op.batch_alter_table("actor_cert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_actor_cert_x5t64"), ["x5t64"], unique=False)

    op.create_table(
        "cell",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("passport_id", sa.String(length=36), nullable=False),
        sa.Column("battery_id", sa.String(length=128), nullable=False),
        sa.Column("birth_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("cell_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("birth_digest"),
    )
    with op.batch_alter_table("cell", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cell_battery_id"), ["battery_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cell_cell_key"), ["cell_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_cell_passport_id"), ["passport_id"], unique=False)

    op.create_table(
        "log_checkpoint",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("signed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )
    op.create_table(
        "log_meta",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("private_key_pem", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "log_node",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_id"],
            ["cell.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "fingerprint", name="uq_alert_kind_fingerprint"),
    )
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_cell_id"), ["cell_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_alert_kind"), ["kind"], unique=False)

    op.create_table(
        "chain_head",
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_id"],
            ["cell.id"],
        ),
        sa.PrimaryKeyConstraint("cell_id"),
    )
    op.create_table(
        "record",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("cell_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("prev", sa.LargeBinary(length=32), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("signer", sa.String(length=200), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_id"],
            ["cell.id"],
        ),
        sa.PrimaryKeyConstraint("digest"),
    )
    with op.batch_alter_table("record", schema=None) as batch_op:
        batch_op.create_index("ix_record_cell_seq", ["cell_id", "seq"], unique=False)
        batch_op.create_index("ix_record_prev", ["prev"], unique=False)

    op.create_table(
        "log_leaf",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["digest"],
            ["record.digest"],
        ),
        sa.PrimaryKeyConstraint("idx"),
        sa.UniqueConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("log_leaf")
    with op.batch_alter_table("record", schema=None) as batch_op:
        batch_op.drop_index("ix_record_prev")
        batch_op.drop_index("ix_record_cell_seq")

    op.drop_table("record")
    op.drop_table("chain_head")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_kind"))
        batch_op.drop_index(batch_op.f("ix_alert_cell_id"))

    op.drop_table("alert")
    op.drop_table("log_node")
    op.drop_table("log_meta")
    op.drop_table("log_checkpoint")
    with op.batch_alter_table("cell", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cell_passport_id"))
        batch_op.drop_index(batch_op.f("ix_cell_cell_key"))
        batch_op.drop_index(batch_op.f("ix_cell_battery_id"))

    op.drop_table("cell")
    with op.batch_alter_table("actor_cert", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actor_cert_x5t64"))

    op.drop_table("actor_cert")
