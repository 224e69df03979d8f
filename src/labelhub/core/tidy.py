"""SQLite: each FTS5 index merged into one segment while the writer has nothing to do.

FTS5 keeps an index as segments: each write transaction adds one, and segments of a size are
merged as they pile up (``automerge``), so an index built by many transactions holds several,
and every lookup of a trigram looks in each of them. The bench's program of 1M labels, loaded
100 transactions at a time, had five; merged into one (SQL alone, medians of 30 of the bench's
searches): a search with one match 1.6 -> 0.9 ms, one with 1,000 matches 1.5 -> 0.5 ms
(bench/README.md, W5).

The writer (``db.Writer``) tidies when it has been idle for ``LABELHUB_SQLITE_TIDY_IDLE``
seconds after a write (and once after it starts): an index whose segments besides its largest
add up to ``GROWTH`` of the largest is merged into one, ``STEP_PAGES`` pages per transaction
(at 1M labels a median of 6 ms each, 147 steps in 1.1 s), and a write that arrives meanwhile
goes first. So an index is rewritten whole only after it has grown by a fifth of itself: the
cost is bounded by what was written, not by how often the server goes idle.

The segments are read from FTS5's shadow tables (part of its file format): ``<table>_idx``
names every segment, and a segment's leaf pages are rows ``segid << 37 | pgno`` of
``<table>_data``. Were that layout ever to change, only when the merge runs would change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Connection

# Pages one merge step writes: a write queued meanwhile waits for one step at most.
STEP_PAGES = 128
# Merge when the segments besides the largest hold this share of the largest's pages.
GROWTH = 0.2
# FTS5's data rowids: a segment's leaf pages are ``segid << 37 | pgno`` (height 0).
_SEGMENT_SHIFT = 37
_PAGE_LIMIT = 1 << 31


def fts5_tables(conn: Connection) -> list[str]:
    """The FTS5 tables of the database."""
    return list(
        conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND sql LIKE 'CREATE VIRTUAL TABLE % USING fts5%' ORDER BY name"
        ).scalars()
    )


def segment_pages(conn: Connection, table: str) -> list[int]:
    """The leaf pages of each segment of ``table``'s index."""
    pages: list[int] = []
    for segid in conn.exec_driver_sql(f"SELECT DISTINCT segid FROM {table}_idx").scalars():
        first = segid << _SEGMENT_SHIFT
        low, high = conn.exec_driver_sql(
            f"SELECT min(id), max(id) FROM {table}_data WHERE id BETWEEN ? AND ?",
            (first, first + _PAGE_LIMIT - 1),
        ).one()
        if low is not None:
            pages.append(high - low + 1)
    return pages


def untidy(conn: Connection, table: str) -> bool:
    """``table``'s index has more than one segment, and those besides the largest add up to
    ``GROWTH`` of it."""
    pages = segment_pages(conn, table)
    return len(pages) > 1 and sum(pages) - max(pages) >= GROWTH * max(pages)


def merge_step(conn: Connection, table: str) -> bool:
    """Merge ``table``'s segments, all of them towards one, for about ``STEP_PAGES`` pages;
    False when there was nothing left to merge (FTS5 changed fewer than two rows)."""
    raw = conn.connection.dbapi_connection
    before = raw.total_changes  # type: ignore[union-attr]
    conn.exec_driver_sql(f"INSERT INTO {table}({table}, rank) VALUES ('merge', ?)", (-STEP_PAGES,))
    return bool(raw.total_changes - before >= 2)  # type: ignore[union-attr]


def merge_steps(conn: Connection, stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """Merge each index that ``untidy`` finds into one segment, one ``merge_step`` per
    transaction, until done or until ``stop()`` says so before a step; yields the table after
    each step."""
    with conn.begin():
        tables = [table for table in fts5_tables(conn) if untidy(conn, table)]
    for table in tables:
        merged = True
        while merged:
            if stop():
                return
            with conn.begin():
                merged = merge_step(conn, table)
            yield table
