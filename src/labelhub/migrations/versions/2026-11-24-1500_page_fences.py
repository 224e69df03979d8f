"""Deep pages of labels and assets from chunk counts: ``page_fences``.

A page at offset N walked N entries of the key index: the middle page of a 1,000,000-label
program took 11 ms of SQL on SQLite and 22 ms on PostgreSQL (bench/README.md, W5).
``page_fences`` cuts each program's label names (kind 0) and asset ids (kind 1) into key-ordered
chunks, each row holding its first key (the lowest chunk's is "") and how many keys it holds;
``actionhub.fences`` keeps them on every write and finds deep pages from them. The existing keys
are cut here into chunks of 2,048 (any cut is valid: the writes re-cut chunks that outgrow
4,096).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 2048
TABLES = {"program_labels": ("label", 0), "assets": ("asset_id", 1)}


def upgrade() -> None:
    op.create_table(
        "page_fences",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "fence",
            sa.String(length=64).with_variant(sa.String(length=64, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("key_count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_pk"],
            ["programs.id"],
            name=op.f("fk_page_fences_program_pk_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_pk", "kind", "fence", name=op.f("pk_page_fences")),
    )
    for table, (key, kind) in TABLES.items():
        op.execute(
            "INSERT INTO page_fences (program_pk, kind, fence, key_count) "
            f"SELECT program_pk, {kind}, CASE WHEN chunk = 0 THEN '' ELSE min({key}) END, "
            f"count(*) FROM (SELECT program_pk, {key}, (row_number() OVER (PARTITION BY "
            f"program_pk ORDER BY {key}) - 1) / {CHUNK} AS chunk FROM {table}) AS numbered "
            "GROUP BY program_pk, chunk"
        )


def downgrade() -> None:
    op.drop_table("page_fences")
