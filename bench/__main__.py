"""The whole benchmark suite, one command: baselines and workloads in the same run.

    python -m bench                                  # SQLite
    python -m bench --pg-url postgresql://postgres@127.0.0.1:5432/postgres   # SQLite, then PostgreSQL
    python -m bench --quick --out /tmp/bench         # seconds: proves every script still runs

Runs, per database: raw database upserts (``bench.raw_db``); W1-W3 throughput and latency against a
bare ASGI app and a validate-only FastAPI handler (``bench.throughput``); W4 big requests
(``bench.bulk``); W5 and W6 at 10k, 100k and 1M rows (``bench.search_scale``, ``bench.har_scale``;
``--skip-scale`` leaves them out, they take the longest); recommendation quality and events at
scale (``bench.recommend_quality``, ``bench.recommend_speed``). Then ``RESULTS.md`` and the plots.
Each script can also be run alone; see ``bench/README.md``.

wrk comes from Debian (``apt-get install wrk``); run as root without it, this installs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench import plots, report
from bench.common import RESULTS


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        return
    sys.exit("bench: wrk is needed: apt-get install wrk")


def run(module: str, *args: str) -> None:
    command = [sys.executable, "-m", f"bench.{module}", *args]
    print("bench: " + " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg-url", help="also run on PostgreSQL (a server URL; databases are made)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and seconds (smoke)")
    parser.add_argument("--skip-scale", action="store_true", help="leave out W5/W6")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--mlflow",
        default=shutil.which("mlflow"),
        help="the mlflow executable, for W1's set-tag baseline (default: mlflow on PATH)",
    )
    args = parser.parse_args()
    ensure_wrk()
    out = Path(args.out)
    databases = ["sqlite"] + (["postgresql"] if args.pg_url else [])
    runs = "1" if args.quick else str(args.runs)
    for db in databases:
        common = [
            "--db",
            db,
            "--out",
            str(out),
            *(["--pg-url", args.pg_url] if args.pg_url else []),
        ]
        run("raw_db", *common, "--runs", runs, *(["--quick"] if args.quick else []))
        throughput = ["--runs", runs]
        if args.quick:
            throughput += ["--seconds", "1", "--connections", "16", "--quick"]
        if args.mlflow and not args.quick:
            throughput += ["--mlflow", args.mlflow]
        run("throughput", *common, *throughput)
        run("bulk", *common, "--runs", runs, *(["--quick"] if args.quick else []))
        if not args.skip_scale:
            scale = ["--runs", runs]
            if args.quick:
                scale += ["--sizes", "1000,2000", "--requests", "3"]
            run("search_scale", *common, *scale)
            run("har_scale", *common, *scale)
        quick = ["--quick"] if args.quick else []
        run("recommend_quality", *common, *quick)
        run("recommend_speed", *common, "--runs", runs, *quick)
    report.main(out)
    plots.main(out)


if __name__ == "__main__":
    main()
