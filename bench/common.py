"""What the bench scripts share: fresh databases, free ports, writing results."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(kind: str, pg_url: str, tmp: Path) -> tuple[str, str | None]:
    """A labelhub URL of a new, empty database, and the PostgreSQL name to drop afterwards."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}", None
    name = f"lh_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return pg_url.rsplit("/", 1)[0] + "/" + name, name


def autovacuum(pg_url: str) -> str:
    """The PostgreSQL server's ``autovacuum`` setting ("on" by default; "off" on this machine
    kind's server, which then neither vacuums nor analyzes a table by itself)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return str(conn.execute("SHOW autovacuum").fetchone()[0])  # type: ignore[index]


def vacuum_analyze(pg_url: str) -> None:
    """``VACUUM ANALYZE`` the database: what autovacuum does by itself on a server that has it
    on, between the runs of a workload that changes rows."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def drop_database(pg_url: str, name: str | None) -> None:
    if name:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_report(out: str, kind: str, db: str, report: dict[str, Any]) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dt.date.today().isoformat()}-{kind}-{db}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def save(out: str, kind: str, title: str, db: str, figures: dict[str, Any], **extra: Any) -> Path:
    """Write a script's report: its figures with the exact command line that produced them."""
    module = sys.modules["__main__"].__spec__
    report = {
        "benchmark": title,
        "command": f"python -m {module.name if module else kind} " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "db": db,
        **extra,
        "figures": figures,
    }
    return write_report(out, kind, db, report)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# A request of a workload: (path, query parameters).
Request = tuple[str, dict[str, Any]]


def serve(
    url: str, admin: str, settings: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``labelhub serve`` on ``url`` in a subprocess, with these ``LABELHUB_*`` settings besides
    its defaults; its base URL once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    env.update(LABELHUB_DATABASE_URL=url, LABELHUB_ADMIN_KEY=admin, LABELHUB_LOG_LEVEL="warning")
    env.update(settings or {})
    exe = Path(sys.executable).parent / "labelhub"
    # The server's log goes to a file, named on failure (a 500 is worth reading about).
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
        prefix="labelhub-bench-serve-", suffix=".log", delete=False
    )
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port)], env=env, stderr=log)
    print(f"bench: labelhub serve on port {port}, log {log.name}", flush=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("labelhub did not start")


def measure(
    base: str, requests: list[Request], count: int, headers: dict[str, str]
) -> dict[str, float]:
    """Sequential requests over one keep-alive connection: p50 and p99 in milliseconds."""
    latencies: list[float] = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        for i in range(10):  # warm caches and the connection
            path, params = requests[i % len(requests)]
            http.get(path, params=params)
        for i in range(count):
            path, params = requests[i % len(requests)]
            started = time.perf_counter()
            r = http.get(path, params=params)
            latencies.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99)}


def profiled(
    proc: subprocess.Popen[bytes],
    base: str,
    requests: list[Request],
    count: int,
    headers: dict[str, str],
) -> dict[str, Any]:
    """Where the server spends its time on ``requests``: py-spy samples the ``labelhub serve``
    process (sampling from outside, without pausing it) while ``measure`` sends them. The share
    of the samples in the database (SQLAlchemy's ``do_execute``, and on PostgreSQL any psycopg
    call: commits, the pool's pings): SQLite's own work, or the wait for PostgreSQL's, whose
    work is in its own processes (the plans show it); in fetching rows; and elsewhere (FastAPI,
    pydantic, JSON, the event loop). And the ten busiest innermost frames."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        command = ["py-spy", "record", "--pid", str(proc.pid), "--format", "raw"]
        command += ["--rate", "500", "--nonblocking", "--output", str(out)]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches
        latency = measure(base, requests, count, headers)
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
        _, err = spy.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')}")
        shares: Counter[str] = Counter()
        inner: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not stack:
                continue
            frames, n = stack.split(";"), int(samples)
            inner[frames[-1]] += n
            if any("do_execute" in f or "psycopg/" in f for f in frames):
                shares["database"] += n
            elif any("engine/cursor.py" in f for f in frames):
                shares["fetching rows"] += n
            else:
                shares["elsewhere"] += n
    total = sum(shares.values()) or 1
    return {
        "command": shlex.join([*command[:-1], "<file>"]),
        "latency_while_sampled_ms": {k: round(v, 2) for k, v in latency.items()},
        "samples": total,
        "shares": {k: round(v / total, 3) for k, v in shares.most_common()},
        "innermost": [[frame, round(n / total, 3)] for frame, n in inner.most_common(10)],
    }


def explain(
    url: str, requests: dict[str, Request], headers: dict[str, str], marker: str
) -> dict[str, list[str]]:
    """The plans of the statements (those holding ``marker``) labelhub runs for each request:
    captured from the engine while the real app answers, then explained on the same database."""
    from sqlalchemy import event

    from labelhub.app import create_app
    from labelhub.core import db as dbmod
    from labelhub.core.config import Settings

    settings = Settings(database_url=url)
    db = dbmod.Database(settings)
    seen: list[tuple[str, Any]] = []

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if marker in statement and not statement.startswith("EXPLAIN"):
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", before)
    plans: dict[str, list[str]] = {}
    app = create_app(settings, db)

    async def run(path: str, params: dict[str, Any]) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            await http.get(path, params=params, headers=headers)

    try:
        for name, (path, params) in requests.items():
            seen.clear()
            asyncio.run(run(path, params))
            plans[name] = []
            for statement, parameters in list(seen):
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


def spread(values: list[float], digits: int) -> dict[str, float]:
    """The median of ``values``, with the least and the most, rounded to ``digits``."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def summary(runs: list[dict[str, float]], requests: int) -> dict[str, Any]:
    """A figure from its runs (each ``measure``'s p50 and p99): the median of each, with the
    least and the most."""
    figure: dict[str, Any] = {}
    for key in ("p50", "p99"):
        each = spread([run[f"{key}_ms"] for run in runs], 2)
        figure[f"{key}_ms"] = each["median"]
        figure[f"{key}_min_ms"] = each["min"]
        figure[f"{key}_max_ms"] = each["max"]
    return figure | {"requests_per_run": requests, "runs": len(runs)}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server that ``serve`` started (again: a no-op)."""
    if proc.poll() is None:
        proc.terminate()
        proc.wait()


def scale_main(
    doc: str,
    kind: str,
    load: Callable[[str, int, str], float],
    workloads: Callable[[int], dict[str, list[Request]]],
    headers_for: Callable[[str], dict[str, str]],
    marker: str,
) -> None:
    """The command line and main loop shared by the data-size benchmarks (W5, W6)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated figures to profile with py-spy at the largest size (pip install py-spy)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="LABELHUB_NAME=VALUE",
        help="a setting for the server (repeatable), e.g. LABELHUB_SQLITE_MMAP_MB=0",
    )
    args = parser.parse_args()
    if not all(item.startswith("LABELHUB_") and "=" in item for item in args.set):
        parser.error("--set takes LABELHUB_NAME=VALUE")
    settings = dict(item.split("=", 1) for item in args.set)
    sizes = [int(s) for s in args.sizes.split(",")]
    profile = [name for name in args.profile.split(",") if name]
    from labelhub.core import keys

    admin = keys.mint_secret()
    headers = headers_for(admin)
    report: dict[str, Any] = {
        "benchmark": doc.split("\n\n")[0],
        "command": f"python -m bench.{kind.replace('-', '_')}_scale " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "db": args.db,
        "sizes": {},
    }
    # Every size is loaded and served first, then measured in turns (each run: every size, one
    # after the other), so that the ratios between sizes compare figures taken minutes, not tens
    # of minutes, apart: this machine kind's speed drifts by a quarter within minutes.
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as cleanup:
        urls: dict[int, str] = {}
        servers: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        requests_of = {size: workloads(size) for size in sizes}
        figures_of: dict[int, dict[str, Any]] = {}
        for size in sizes:
            urls[size], pg_name = fresh_database(args.db, args.pg_url, Path(tmp))
            cleanup.callback(drop_database, args.pg_url, pg_name)
            seconds = load(urls[size], size, admin)
            print(f"{args.db} {size:>9,} rows loaded in {seconds:.1f}s", flush=True)
            figures_of[size] = {"load_seconds": round(seconds, 2)}
        for size in sizes:
            servers[size] = serve(urls[size], admin, settings)
            cleanup.callback(stop, servers[size][0])
        runs: dict[int, dict[str, list[dict[str, float]]]] = {
            size: {name: [] for name in requests_of[size]} for size in sizes
        }
        for run in range(args.runs):
            for size in sizes:
                _, base = servers[size]
                for name, requests in requests_of[size].items():
                    runs[size][name].append(measure(base, requests, args.requests, headers))
            print(f"run {run + 1} of {args.runs} measured", flush=True)
        for size in sizes:
            figures = figures_of[size]
            for name, measured in runs[size].items():
                figures[name] = summary(measured, args.requests)
                print(
                    f"{args.db} {size:>9,}  {name:<16} p50 {figures[name]['p50_ms']:7.2f} ms  "
                    f"p99 {figures[name]['p99_ms']:7.2f} ms",
                    flush=True,
                )
        largest = max(sizes)
        proc, base = servers[largest]
        if profile:
            figures_of[largest]["profiles"] = {
                name: profiled(proc, base, requests_of[largest][name], args.requests, headers)
                for name in profile
            }
        for size in sizes:
            stop(servers[size][0])
        figures_of[largest]["plans"] = explain(
            urls[largest], {k: v[0] for k, v in requests_of[largest].items()}, headers, marker
        )
        report["sizes"] = {str(size): figures_of[size] for size in sizes}
    write_report(args.out, kind, args.db, report)


def prepared(url: str, admin: str) -> Any:
    """A ``Database`` on ``url``, migrated, with ``admin`` as its admin key."""
    from labelhub.core import db as dbmod
    from labelhub.core import keys
    from labelhub.core.config import Settings

    db = dbmod.Database(Settings(database_url=url))
    with dbmod.migration_lock(db) as conn:
        dbmod.upgrade(conn)
        with conn.begin():
            keys.bootstrap(conn, admin)
    return db


def settle(db: Any) -> None:
    """What the server does by itself, done before it starts rather than under the timed
    requests. PostgreSQL: ``VACUUM ANALYZE`` (autovacuum's work on a server that has it on; this
    machine kind's has it off). SQLite: no ``ANALYZE``, as labelhub keeps no planner statistics
    there; each grown search index merged into one segment, as labelhub's writer does once idle
    (``labelhub.core.tidy``)."""
    from labelhub.core import tidy

    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            return
        for _ in tidy.merge_steps(conn):
            pass


def figures_main(
    kind: str, title: str, measure: Callable[..., dict[str, Any]], quick: dict[str, int]
) -> None:
    """The command line of a script whose figures come from ``measure(db, pg_url, runs, **sizes)``:
    ``--db``, ``--pg-url``, ``--runs``, ``--quick`` (``quick`` sizes), ``--out``; writes the report."""
    module = sys.modules["__main__"].__spec__
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    report = {
        "benchmark": title,
        "command": f"python -m {module.name if module else kind} " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "db": args.db,
        "runs": args.runs,
        "figures": measure(args.db, args.pg_url, args.runs, **(quick if args.quick else {})),
    }
    print(json.dumps(report["figures"]))
    write_report(args.out, kind, args.db, report)
