"""W5: GET /labels search and deep pages on programs of 10k, 100k and 1M labels.

For each size: a fresh database, N labels loaded through labelhub's own store (10,000 per
transaction), ``labelhub serve`` started on it, then sequential requests over one keep-alive
connection (latency, not throughput): a rare search (1 match), a medium one (~100 matches), a
common one (~2% of labels), the first page, the middle page and, where it exists, page 10000.
Each figure is the median over ``--runs`` runs of that run's p50/p99; min and max are kept. The
plans PostgreSQL / SQLite choose at the largest size are recorded with the figures.

    python -m bench.search_scale --db sqlite
    python -m bench.search_scale --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from bench.common import RESULTS, drop_database, free_port, fresh_database, write_report
from labelhub.actionhub import store
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings

HERE = Path(__file__).resolve().parent
WORDS = [
    "amber", "azure", "bold", "brisk", "calm", "coral", "crimson", "dawn", "deep", "eager",
    "ember", "fair", "fern", "frost", "gold", "grand", "green", "hazel", "ivory", "jade",
    "keen", "lemon", "lilac", "lunar", "maple", "mint", "misty", "noble", "ocean", "olive",
    "pearl", "pine", "plum", "quiet", "rapid", "royal", "ruby", "rustic", "sage", "sandy",
    "scarlet", "silver", "sky", "snowy", "solar", "spring", "steel", "stone", "storm", "sunny",
]  # fmt: skip
NOUNS = [
    "falcon", "river", "meadow", "harbor", "summit", "canyon", "forest", "island", "valley", "prairie",
    "glacier", "lagoon", "orchard", "bay", "cliff", "dune", "grove", "marsh", "ridge", "spire",
]  # fmt: skip


def label_name(i: int) -> str:
    rng = random.Random(i)
    return f"{rng.choice(WORDS)}-{rng.choice(NOUNS)}-{i:07d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(url: str, size: int, admin: str) -> float:
    db = dbmod.Database(Settings(database_url=url))
    started = time.perf_counter()
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
            with conn.begin():
                keys.bootstrap(conn, admin)
        db.run_write(store.create_program, "bench")
        pk = db.run_read(store.program_pk, "bench")
        for start in range(0, size, 10_000):
            batch = [(label_name(i), i / 3) for i in range(start, min(size, start + 10_000))]
            db.run_write(store.upsert_labels, pk, batch)
        if db.dialect == "postgresql":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE program_labels"
                )
        else:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
    finally:
        db.close()
    return time.perf_counter() - started


def explain(url: str, requests: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The plans of the statements labelhub runs for each kind of request (captured, explained)."""
    from labelhub.app import create_app

    settings = Settings(database_url=url)
    db = dbmod.Database(settings)
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if "program_labels t" in statement and not statement.startswith("EXPLAIN"):
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", before)
    plans: dict[str, list[str]] = {}
    try:
        import asyncio

        app = create_app(settings, db)

        async def run(name: str, params: dict[str, Any]) -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                await http.get("/labels", params=params, headers=HEADERS)

        for name, params in requests.items():
            seen.clear()
            asyncio.run(run(name, params))
            plans[name] = []
            for statement, parameters in seen:
                with db.engine.connect() as conn:
                    if db.dialect == "sqlite":
                        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                        plans[name].append("\n".join(str(r[-1]) for r in rows))
                    else:
                        rows = conn.exec_driver_sql(
                            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, parameters
                        )
                        plans[name].append("\n".join(r[0] for r in rows))
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        db.close()
    return plans


HEADERS: dict[str, str] = {}


def workloads(size: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(7)
    middle = size // 2 // 50 + 1
    kinds: dict[str, list[dict[str, Any]]] = {
        "search_rare": [{"search": f"{rng.randrange(size):07d}"} for _ in range(50)],
        "search_medium": [
            {"search": f"{rng.choice(WORDS)}-{rng.choice(NOUNS)}-"} for _ in range(50)
        ],
        "search_common": [{"search": f"{rng.choice(WORDS)}-"} for _ in range(50)],
        "page_first": [{"page": 1}],
        "page_middle": [{"page": middle + d} for d in range(-25, 25)],
    }
    if size >= 10_000 * 50:
        kinds["page_10000"] = [{"page": 10_000}]
    return kinds


def measure(base: str, params_list: list[dict[str, Any]], count: int) -> dict[str, float]:
    latencies: list[float] = []
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as http:
        for i in range(10):  # warm up caches and the connection
            http.get("/labels", params=params_list[i % len(params_list)])
        for i in range(count):
            started = time.perf_counter()
            r = http.get("/labels", params=params_list[i % len(params_list)])
            latencies.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


def serve(url: str, admin: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    env.update(LABELHUB_DATABASE_URL=url, LABELHUB_ADMIN_KEY=admin, LABELHUB_LOG_LEVEL="warning")
    exe = Path(sys.executable).parent / "labelhub"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("labelhub did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    admin = keys.mint_secret()
    HEADERS.update({"actionhub-key": admin, "program-id": "bench"})
    report: dict[str, Any] = {
        "benchmark": "W5 label search and deep pages",
        "command": "python -m bench.search_scale " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "db": args.db,
        "sizes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            url, pg_name = fresh_database(args.db, args.pg_url, Path(tmp))
            try:
                seconds = load(url, size, admin)
                print(f"{args.db} {size:>9,} labels loaded in {seconds:.1f}s", flush=True)
                proc, base = serve(url, admin)
                try:
                    figures: dict[str, Any] = {"load_seconds": round(seconds, 2)}
                    for kind, params_list in workloads(size).items():
                        runs = [measure(base, params_list, args.requests) for _ in range(args.runs)]
                        p50s = [r["p50_ms"] for r in runs]
                        p99s = [r["p99_ms"] for r in runs]
                        figures[kind] = {
                            "p50_ms": round(statistics.median(p50s), 2),
                            "p50_min_ms": round(min(p50s), 2),
                            "p50_max_ms": round(max(p50s), 2),
                            "p99_ms": round(statistics.median(p99s), 2),
                            "p99_min_ms": round(min(p99s), 2),
                            "p99_max_ms": round(max(p99s), 2),
                            "requests_per_run": args.requests,
                            "runs": args.runs,
                        }
                        print(
                            f"  {kind:<14} p50 {figures[kind]['p50_ms']:7.2f} ms  "
                            f"p99 {figures[kind]['p99_ms']:7.2f} ms",
                            flush=True,
                        )
                finally:
                    proc.terminate()
                    proc.wait()
                if size == max(sizes):
                    figures["plans"] = explain(url, {k: v[0] for k, v in workloads(size).items()})
                report["sizes"][str(size)] = figures
            finally:
                drop_database(args.pg_url, pg_name)
    write_report(args.out, "search", args.db, report)


if __name__ == "__main__":
    main()
