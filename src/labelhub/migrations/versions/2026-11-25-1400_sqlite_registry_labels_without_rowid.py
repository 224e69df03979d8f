"""SQLite: ``registry_labels`` is kept in its key's order, a table ``WITHOUT ROWID``.

A search of a registry's distinct labels (``GET .../artifact/labels?search_term=``) walks the
registry's rows in label order and tests each one's folded label. The rows sat in a rowid table
behind the key's index, so each step of the walk read the index and then the row: 2.8 ms of SQL
for a registry of 10,103 distinct labels (W6 ``labels_search`` at 1,000,000 artifacts,
bench/README.md). Kept in key order, the walk reads the rows themselves: 0.8 ms. Statistics from
``ANALYZE`` got there too (the planner scanned the whole table), but only for a single registry,
and labelhub does not rely on them. The table is rebuilt with the same columns and constraints.

PostgreSQL: nothing changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 14:00:00
"""

import re
from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "registry_labels"
CLAUSE = " WITHOUT ROWID"


def _rebuild(without_rowid: bool) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    (sql,) = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).one()
    body = sql.removesuffix(CLAUSE)
    if sql.endswith(CLAUSE) == without_rowid:
        return
    # The name as written when the table was created, or quoted as a rename leaves it.
    created = re.sub(rf'^CREATE TABLE ("?){TABLE}\1 ', f"CREATE TABLE {TABLE}_new ", body)
    if created == body:
        raise RuntimeError(f"unexpected definition of {TABLE}: {sql}")
    conn.exec_driver_sql(created + (CLAUSE if without_rowid else ""))
    conn.exec_driver_sql(f"INSERT INTO {TABLE}_new SELECT * FROM {TABLE}")
    conn.exec_driver_sql(f"DROP TABLE {TABLE}")
    conn.exec_driver_sql(f"ALTER TABLE {TABLE}_new RENAME TO {TABLE}")


def upgrade() -> None:
    _rebuild(without_rowid=True)


def downgrade() -> None:
    _rebuild(without_rowid=False)
