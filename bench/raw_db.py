"""Raw database upserts, no labelhub: the floor the database itself sets, measured in the same run.

SQLite (WAL, synchronous=NORMAL, as labelhub runs it): ``executemany`` upserts of 100,000 rows in
one transaction (rows/s), and single-row upsert transactions (transactions/s).
PostgreSQL: a set-based ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`` of 10,000 rows
per statement (rows/s), and single-row upsert transactions (transactions/s).

    python -m bench.raw_db --db sqlite
    python -m bench.raw_db --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.common import drop_database, figures_main, fresh_database

QUICK = {"rows": 2_000, "singles": 200}
TABLE = (
    "CREATE TABLE labels (program INTEGER, label TEXT, weight REAL, PRIMARY KEY (program, label))"
)


def _sqlite(path: Path, rows: int, singles: int) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(TABLE)
    upsert = (
        "INSERT INTO labels VALUES (1, ?, ?) "
        "ON CONFLICT (program, label) DO UPDATE SET weight = excluded.weight"
    )
    data = [(f"label-{i}", i / 7) for i in range(rows)]
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(upsert, data)
    conn.execute("COMMIT")
    bulk = rows / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(singles):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(upsert, (f"single-{i}", 1.0))
        conn.execute("COMMIT")
    single = singles / (time.perf_counter() - started)
    conn.close()
    return {"bulk_rows_per_s": round(bulk), "single_txn_per_s": round(single)}


def _postgresql(url: str, rows: int, singles: int) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(TABLE.replace("REAL", "DOUBLE PRECISION"))
        names = [f"label-{i}" for i in range(rows)]
        weights = [i / 7 for i in range(rows)]
        upsert = (
            "INSERT INTO labels SELECT 1, l, w FROM unnest(%s::text[], %s::float8[]) AS t(l, w) "
            "ON CONFLICT (program, label) DO UPDATE SET weight = excluded.weight"
        )
        started = time.perf_counter()
        for at in range(0, rows, 10_000):
            with conn.transaction():
                conn.execute(upsert, (names[at : at + 10_000], weights[at : at + 10_000]))
        bulk = rows / (time.perf_counter() - started)
        single_sql = (
            "INSERT INTO labels VALUES (1, %s, 1.0) "
            "ON CONFLICT (program, label) DO UPDATE SET weight = excluded.weight"
        )
        started = time.perf_counter()
        for i in range(singles):
            with conn.transaction():
                conn.execute(single_sql, (f"single-{i}",))
        single = singles / (time.perf_counter() - started)
    return {"bulk_rows_per_s": round(bulk), "single_txn_per_s": round(single)}


def measure(
    db: str, pg_url: str, runs: int, rows: int = 100_000, singles: int = 5_000
) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            if db == "sqlite":
                results.append(_sqlite(Path(tmp) / "raw.db", rows, singles))
            else:
                url, name = fresh_database("postgresql", pg_url, Path(tmp))
                try:
                    results.append(_postgresql(url, rows, singles))
                finally:
                    drop_database(pg_url, name)
    return {
        key: {
            "median": statistics.median(r[key] for r in results),
            "min": min(r[key] for r in results),
            "max": max(r[key] for r in results),
        }
        for key in results[0]
    }


def main() -> None:
    figures_main("raw", "raw database upserts", measure, QUICK)


if __name__ == "__main__":
    main()
