"""Search and deep pages are answered from indexes: EXPLAIN the statements the app really runs.

The statements are captured from the engine while real HTTP requests are answered, then explained
on the same database (``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN`` on PostgreSQL after ANALYZE).
The 1,000,000-label latencies are in ``bench/`` (see bench/README.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from labelhub.actionhub import store
from labelhub.core import db as dbmod
from tests.actionhub_helpers import ActionHub

LABELS = 30_000
TABLES = ("program_labels", "assets")
NAMES = [f"label-{i:06d}-{'red' if i % 97 == 0 else 'blue'}" for i in range(LABELS)]


@contextmanager
def captured(database: dbmod.Database) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if any(f"{table} {alias}t" in statement for table in TABLES for alias in ("", "AS ")):
            seen.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(database.engine, "before_cursor_execute", before)


def plan(database: dbmod.Database, statement: str, parameters: Any) -> str:
    with database.engine.connect() as conn:
        if database.dialect == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        # At this test's 30,000 rows PostgreSQL rightly finds a sequential scan cheaper; forbid it
        # to show the statement can be served by the index. bench/ records the plans at 1,000,000.
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        return "\n".join(row[0] for row in rows)


def seed(database: dbmod.Database) -> None:
    def work(conn):  # type: ignore[no-untyped-def]
        pk = store.program_pk(conn, "shop")
        store.upsert_labels(conn, pk, [(name, i) for i, name in enumerate(NAMES)])
        store.upsert_assets(
            conn,
            pk,
            [
                store.AssetPatch(f"asset-{i:06d}", (f"name {i}",), (f"tag{i % 1000}",))
                for i in range(LABELS)
            ],
        )

    database.run_write(work)
    if database.dialect == "postgresql":
        with database.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


async def test_search_and_deep_pages_use_indexes(ah: ActionHub, database: dbmod.Database) -> None:
    seed(database)
    with captured(database) as statements:
        body = await ah.labels(search="0424", size=100)
        expected = sorted(n for n in NAMES if "0424" in n)
        assert 10 < len(expected) <= 100
        assert [i["label"] for i in body["items"]] == expected and body["total"] == len(expected)
    (text,) = [plan(database, s, p) for s, p in statements]  # the page, counted in passing
    if database.dialect == "sqlite":
        # Page and count from the trigram index alone, within the program's band of rowids
        # (FTS5's plan string: M a MATCH, > and < the rowid range, 64 in rowid order); only
        # the page's rows are read, by rowid.
        scans = [line for line in text.splitlines() if "program_labels_fts" in line]
        assert len(scans) == 2 and all(
            "VIRTUAL TABLE INDEX" in line and "M" in line and "><" in line for line in scans
        ), text
        assert "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)" in text and "SCAN t" not in text, text
    else:
        assert "ix_program_labels_trgm" in text, text

    with captured(database) as statements:
        body = await ah.labels(page=500, size=50)
        assert body["total"] == LABELS
        assert body["items"][0]["label"].startswith("label-024950")
    (deep,) = [plan(database, s, p) for s, p in statements]
    if database.dialect == "sqlite":
        assert (
            "SCAN t" not in deep
            and "SEARCH t USING INDEX sqlite_autoindex_program_labels_1" in deep
        ), deep
        assert (
            "SEARCH program_labels USING COVERING INDEX sqlite_autoindex_program_labels_1" in deep
        ), deep
        # The page's chunk from the chunk counts (actionhub.fences), not a skip of 24,950.
        assert "SEARCH page_fences USING INDEX sqlite_autoindex_page_fences_1" in deep, deep
    else:
        assert "Seq Scan" not in deep, deep
        assert "pk_program_labels" in deep and "Index Only Scan" in deep, deep
        assert "Index Scan using pk_page_fences on page_fences" in deep, deep

    with captured(database) as statements:
        body = await ah.assets(search="tag999", size=100)
        assert body["total"] == 30
    assert len(statements) == 1
    for text in (plan(database, s, p) for s, p in statements):
        if database.dialect == "sqlite":
            assert "SCAN f VIRTUAL TABLE INDEX" in text, text
            assert "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)" in text, text
        else:
            # PostgreSQL over-estimates '%tag999%' (about 9% of rows) and, at 30,000 rows, may
            # walk the program's primary key range instead; either way no table is scanned.
            assert "Seq Scan" not in text and ("ix_assets_trgm" in text or "pk_assets" in text), (
                text
            )
