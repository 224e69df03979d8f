"""SQLite: new labels and assets enter their FTS5 index in bulk, not row by row from a trigger.

An FTS5 insert made by a trigger runs as its own statement inside the trigger program, and FTS5
writes its pending index data out at each one: 10,000 new labels took 162 ms through the insert
trigger and 23 ms as one ``INSERT INTO program_labels_fts ... SELECT`` (bench/README.md, W4). So
the insert triggers go; ``actionhub.store`` indexes what it inserted, in the same transaction,
with one statement per write. The delete and update triggers stay. PostgreSQL: nothing changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 00:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_FTS = {"program_labels": "label_folded", "assets": "search_text"}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in SQLITE_FTS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_ai")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, column in SQLITE_FTS.items():
        fts = f"{table}_fts"
        op.execute(
            f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts}(rowid, {column}) VALUES (new.rowid, new.{column}); END"
        )
