"""W1 against its baseline: PUT /labels with 10 labels, labelhub vs a validate-only FastAPI app.

Both run under the same server (uvicorn, one worker) and get the same bodies from wrk (a
separate process), 64 connections for throughput and 16 for latency, ``--runs`` times each,
alternating. labelhub runs on a fresh database with 8 programs; requests rotate programs and
labels. The baseline validates the same ``LabelList`` model and answers without a database.

    python -m bench.write_path --db sqlite
    python -m bench.write_path --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres

Needs wrk (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import RESULTS, drop_database, free_port, fresh_database, write_report
from labelhub.core import keys

HERE = Path(__file__).resolve().parent
PROGRAMS = 8

BASELINE_APP = """
from fastapi import FastAPI, Header
from labelhub.actionhub.schemas import LabelList, SuccessMessage

app = FastAPI()

@app.put("/labels")
async def put_labels(
    body: LabelList, program_id: str = Header(alias="program-id")
) -> SuccessMessage:
    return SuccessMessage(result=f"{len(body.labels)} labels validated")
"""

WRK_SCRIPT = """
local counter = 0
local key = os.getenv("BENCH_KEY")
request = function()
  counter = counter + 1
  local program = "p" .. (counter %% %(programs)d)
  local parts = {}
  for i = 0, 9 do
    parts[#parts + 1] = string.format('{"label": "label-%%d", "weight": %%d.5}', (counter * 10 + i) %% 5000, counter %% 100)
  end
  local body = '{"labels": [' .. table.concat(parts, ", ") .. ']}'
  return wrk.format("PUT", "/labels", {
    ["content-type"] = "application/json",
    ["actionhub-key"] = key,
    ["program-id"] = program,
  }, body)
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\\n")
  end
end
"""


def wait_up(base: str) -> None:
    for _ in range(300):
        try:
            httpx.get(base + "/docs", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


def run_wrk(base: str, script: Path, connections: int, seconds: int, key: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
        env={**os.environ, "BENCH_KEY": key},
        capture_output=True,
        text=True,
        check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out.stdout).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = out.stderr.count("status ")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    socket_errors = re.search(r"Socket errors: (.*)", out.stdout)
    return {
        "rps": rps,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    admin = keys.mint_secret()
    exe = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    with tempfile.TemporaryDirectory() as tmp:
        url, pg_name = fresh_database(args.db, args.pg_url, Path(tmp))
        env.update(
            LABELHUB_DATABASE_URL=url, LABELHUB_ADMIN_KEY=admin, LABELHUB_LOG_LEVEL="warning"
        )
        script = Path(tmp) / "w1.lua"
        script.write_text(WRK_SCRIPT % {"programs": PROGRAMS})
        (Path(tmp) / "baseline_app.py").write_text(BASELINE_APP)
        lh_port, base_port = free_port(), free_port()
        labelhub = subprocess.Popen(
            [str(exe / "labelhub"), "serve", "--port", str(lh_port)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        baseline = subprocess.Popen(
            [
                str(exe / "uvicorn"),
                "baseline_app:app",
                "--port",
                str(base_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=tmp,
            env=env,
        )
        report: dict[str, Any] = {
            "benchmark": "W1 PUT /labels (10 labels) vs validate-only FastAPI",
            "command": "python -m bench.write_path " + shlex.join(sys.argv[1:]),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "db": args.db,
            "cpus": os.cpu_count(),
        }
        try:
            lh, bl = f"http://127.0.0.1:{lh_port}", f"http://127.0.0.1:{base_port}"
            wait_up(lh)
            wait_up(bl)
            for p in range(PROGRAMS):
                httpx.post(
                    lh + "/admin/programs",
                    json={"program_id": f"p{p}"},
                    headers={"x-api-key": admin},
                )
            for connections in (64, 16):
                runs: dict[str, list[dict[str, Any]]] = {"labelhub": [], "baseline": []}
                for _ in range(args.runs):
                    runs["baseline"].append(run_wrk(bl, script, connections, args.seconds, admin))
                    runs["labelhub"].append(run_wrk(lh, script, connections, args.seconds, admin))
                section = {
                    name: {
                        "rps": summary(r, "rps"),
                        "p50_ms": summary(r, "p50_ms"),
                        "p99_ms": summary(r, "p99_ms"),
                        "errors": sum(x["errors"] for x in r),
                        "runs": r,
                    }
                    for name, r in runs.items()
                }
                section["ratio_rps"] = round(
                    section["labelhub"]["rps"]["median"] / section["baseline"]["rps"]["median"], 3
                )
                report[f"c{connections}"] = section
                print(
                    f"{args.db} c{connections}: labelhub {section['labelhub']['rps']['median']:.0f} req/s "
                    f"(p99 {section['labelhub']['p99_ms']['median']} ms, errors {section['labelhub']['errors']}), "
                    f"baseline {section['baseline']['rps']['median']:.0f} req/s "
                    f"(p99 {section['baseline']['p99_ms']['median']} ms); ratio {section['ratio_rps']}",
                    flush=True,
                )
        finally:
            for proc in (labelhub, baseline):
                proc.terminate()
                proc.wait()
            drop_database(args.pg_url, pg_name)
    write_report(args.out, "w1", args.db, report)


if __name__ == "__main__":
    main()
