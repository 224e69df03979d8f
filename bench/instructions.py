"""Instructions per request: labelhub and the validate-only handler under W1 or W2, counted.

bench.throughput's req/s move by a quarter within minutes on this machine kind, so a change
worth 5-10 % cannot be told from the noise there. Instructions counted by valgrind's callgrind
do not move with the machine: the same code under the same load counts the same within about 1 %.

Each server runs under ``valgrind --tool=callgrind --instr-atstart=no`` (its start and the
seed are not counted), is sent the workload for 10 s to warm up, then for ``--seconds`` with
counting on (``callgrind_control -i on``), at 64 connections (wrk, the Lua script of
bench.throughput). The figure is every instruction the server's threads ran in user space (not
the kernel's, nor wrk's), divided by the requests answered. Under valgrind a server runs about
50 times slower, so a batch of the writer still takes the requests of half the connections.

    python -m bench.instructions --workloads W1,W2
    python -m bench.instructions --workloads W2 --also old=/tmp/old/src   # another checkout too
    python -m bench.instructions --quick --workloads W2 --seconds 1 --out /tmp/bench   # smoke

``--also NAME=SRC`` counts labelhub from another source tree as well (``PYTHONPATH=SRC``), for
an A/B of a change: ``git worktree add /tmp/old <rev>`` then ``--also old=/tmp/old/src``.
Needs valgrind (Debian: ``apt-get install valgrind``) and wrk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import RESULTS, free_port, fresh_database, write_report
from bench.throughput import (
    ARTIFACTS,
    LUA,
    LUA_COMMON,
    PROGRAMS,
    VALIDATE_APP,
    seed,
    start,
)
from labelhub.core import keys

WARM_UP_SECONDS = 10


def counted(
    command: list[str],
    env: dict[str, str],
    cwd: str,
    script: Path,
    seconds: int,
    key: str,
    prepare: Any = None,
    warm_up: int = WARM_UP_SECONDS,
) -> dict[str, Any]:
    """Run ``command`` under callgrind, send it the workload, and count."""
    port = free_port()
    out = Path(cwd) / f"callgrind-{port}.out"
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
    ]
    proc, base = start(
        [*valgrind, *command, "--port", str(port)],
        {**env, "PYTHONHASHSEED": "0"},
        cwd,
        port,
        wait=600,  # valgrind starts Python several times slower
    )
    try:
        if prepare is not None:
            prepare(base)
        wrk(base, script, warm_up, key)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True
        )
        answered = wrk(base, script, seconds, key)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True
        )
    finally:
        proc.terminate()
        proc.wait()
    total = sum(
        int(line.split()[1])
        for dump in Path(cwd).glob(out.name + "*")
        for line in dump.read_text(errors="replace").splitlines()
        if line.startswith("totals:")
    )
    return {
        "requests": answered["requests"],
        "errors": answered["errors"],
        "instructions": total,
        "instructions_per_request": round(total / answered["requests"]),
    }


def wrk(base: str, script: Path, seconds: int, key: str) -> dict[str, int]:
    result = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{seconds}s", "-s", str(script), base],
        env={**os.environ, "BENCH_KEY": key},
        capture_output=True,
        text=True,
        check=True,
    )
    requests = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return {"requests": requests, "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--also", action="append", default=[], metavar="NAME=SRC")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--quick", action="store_true", help="a tenth of the data, 1 s (smoke)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    warm_up = 1 if args.quick else WARM_UP_SECONDS
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install valgrind wrk)")
    admin = keys.mint_secret()
    exe = Path(sys.executable)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    base_env.pop("PYTHONPATH", None)
    sources = {"labelhub": None} | dict(a.split("=", 1) for a in args.also)
    report: dict[str, Any] = {
        "benchmark": "instructions per request (callgrind), labelhub and the validate-only "
        "handler, at 64 connections",
        "command": "python -m bench.instructions " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "db": "sqlite",
        "seconds": args.seconds,
        "workloads": {},
    }
    for workload in args.workloads.split(","):
        figures: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / f"{workload}.lua"
            script.write_text(
                LUA_COMMON
                + LUA[workload] % {"programs": PROGRAMS, "artifacts": int(ARTIFACTS * scale)}
            )
            (Path(tmp) / "validate_app.py").write_text(VALIDATE_APP)
            figures["validate"] = counted(
                [
                    str(exe),
                    "-m",
                    "uvicorn",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "validate_app:app",
                ],
                base_env,
                tmp,
                script,
                args.seconds,
                admin,
                warm_up=warm_up,
            )
            for name, src in sources.items():
                url, _ = fresh_database("sqlite", "", Path(tmp))
                env = dict(
                    base_env,
                    LABELHUB_DATABASE_URL=url,
                    LABELHUB_ADMIN_KEY=admin,
                    LABELHUB_LOG_LEVEL="warning",
                )
                if src is not None:
                    env["PYTHONPATH"] = src
                figures[name] = counted(
                    [str(exe), "-m", "labelhub", "serve"],
                    env,
                    tmp,
                    script,
                    args.seconds,
                    admin,
                    prepare=lambda base, w=workload: seed(base, admin, [w], scale),
                    warm_up=warm_up,
                )
        validate = figures["validate"]["instructions_per_request"]
        for name in sources:
            figures[f"ratio_{name}_vs_validate"] = round(
                validate / figures[name]["instructions_per_request"], 3
            )
        report["workloads"][workload] = figures
        print(
            f"{workload}: "
            + "; ".join(
                f"{name} {figures[name]['instructions_per_request']:,} instructions a request"
                for name in ("validate", *sources)
            ),
            flush=True,
        )
    write_report(args.out, "instructions", "sqlite", report)


if __name__ == "__main__":
    main()
