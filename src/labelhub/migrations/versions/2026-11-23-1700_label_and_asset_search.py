"""Label and asset search: folded text, trigram indexes (FTS5 / pg_trgm), per-program counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A later migration that rebuilds program_labels or assets on SQLite (batch mode) must run
# "INSERT INTO <table>_fts(<table>_fts) VALUES ('rebuild')" afterwards: rowids may change.
#
# SQLite: external-content FTS5 tables over the folded text, kept in step by triggers. The update
# triggers fire only when the folded text itself is set, so weight-only upserts leave FTS alone.
SQLITE_FTS = {
    "program_labels": "label_folded",
    "assets": "search_text",
}


def _sqlite_fts_up(table: str, column: str) -> None:
    fts = f"{table}_fts"
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
        "content_rowid='rowid', tokenize='trigram case_sensitive 1')"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, {column}) VALUES (new.rowid, new.{column}); END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); "
        f"INSERT INTO {fts}(rowid, {column}) VALUES (new.rowid, new.{column}); END"
    )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _sqlite_fts_down(table: str) -> None:
    fts = f"{table}_fts"
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {fts}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("programs") as batch:
        batch.add_column(
            sa.Column("label_count", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("asset_count", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.add_column(
        "program_labels", sa.Column("label_folded", sa.Text(), server_default="", nullable=False)
    )
    op.add_column("assets", sa.Column("search_text", sa.Text(), server_default="", nullable=False))

    if sqlite:
        for table, column in SQLITE_FTS.items():
            _sqlite_fts_up(table, column)
    else:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_program_labels_trgm ON program_labels "
            "USING gin (label_folded gin_trgm_ops)"
        )
        op.execute("CREATE INDEX ix_assets_trgm ON assets USING gin (search_text gin_trgm_ops)")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for table in SQLITE_FTS:
            _sqlite_fts_down(table)
    else:
        op.execute("DROP INDEX IF EXISTS ix_assets_trgm")
        op.execute("DROP INDEX IF EXISTS ix_program_labels_trgm")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("search_text")
    with op.batch_alter_table("program_labels") as batch:
        batch.drop_column("label_folded")
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("asset_count")
        batch.drop_column("label_count")
