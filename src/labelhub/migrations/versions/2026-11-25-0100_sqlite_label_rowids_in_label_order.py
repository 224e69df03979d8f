"""SQLite: each label row's rowid follows its label within its program's band.

A search lists its matches by label. FTS5 lists them by rowid, and the rowids were handed out as
the labels came, so a page of a search with 20,000 matches among 1,000,000 labels read and sorted
all 20,000 rows (W5 ``search_common``, bench/README.md). From now on a label's rowid is
``program_pk << 39`` plus a number that grows with the label (``actionhub.order``), and the
index alone counts a search's matches and lists the page's rowids in order.

This renumbers every label row: a program's ``n`` labels get keys ``2**16`` apart (less when the
band is too narrow), centred in the band, so new labels fit between, before and after them. The
FTS5 index is rebuilt over the new rowids. At 1,000,000 labels this took 12.1 s on the bench's
file (``labelhub db upgrade``), under the write lock. Downgrading leaves the rowids as they are:
the code before this reads them as any rowids.

PostgreSQL: nothing changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 01:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BAND_BITS = 24  # actionhub.order.BAND_BITS, as of this revision
ORDER_BITS = 63 - BAND_BITS
SPACING = 1 << 16
FTS = "program_labels_fts"
COLUMNS = "program_pk, label, label_folded, weight, updated_at"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    top = conn.exec_driver_sql("SELECT max(id) FROM programs").scalar()
    if top is not None and top >= 1 << BAND_BITS:
        raise RuntimeError(f"program id {top} is 2**{BAND_BITS} or more: no band for its labels")
    # The index and its triggers go while the rows are written again, and come back as they were.
    kept = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master "
        "WHERE type = 'trigger' AND tbl_name = 'program_labels' ORDER BY name"
    ).all()
    (fts,) = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (FTS,)
    ).one()
    for name, _ in kept:
        conn.exec_driver_sql(f"DROP TRIGGER {name}")
    conn.exec_driver_sql(f"DROP TABLE {FTS}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE relabelled AS "
        f"WITH c AS (SELECT program_pk, count(*) AS n FROM program_labels GROUP BY program_pk), "
        f"s AS (SELECT program_pk, n, min({1 << ORDER_BITS} / (n + 1), {SPACING}) AS step FROM c) "
        f"SELECT (l.program_pk << {ORDER_BITS}) + {1 << (ORDER_BITS - 1)} - s.step * s.n / 2 "
        f"+ (row_number() OVER (PARTITION BY l.program_pk ORDER BY l.label) - 1) * s.step AS k, "
        f"{', '.join('l.' + c for c in COLUMNS.split(', '))} "
        f"FROM program_labels AS l JOIN s ON s.program_pk = l.program_pk"
    )
    conn.exec_driver_sql("DELETE FROM program_labels")
    conn.exec_driver_sql(
        f"INSERT INTO program_labels (rowid, {COLUMNS}) "
        f"SELECT k, {COLUMNS} FROM relabelled ORDER BY k"
    )
    conn.exec_driver_sql("DROP TABLE relabelled")
    conn.exec_driver_sql(fts)
    for _, sql in kept:
        conn.exec_driver_sql(sql)
    conn.exec_driver_sql(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")


def downgrade() -> None:
    pass  # the rowids stay in label order; the code before this takes them as any rowids
