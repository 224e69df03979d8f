"""W1-W3 at saturation and at moderate load, each against its baselines, in the same run.

    W1  PUT /labels, 10 labels per request, rotating 8 programs and 5,000 label names
    W2  HAR PUT .../artifact/{artifact}/labels, 5 labels, rotating 1,000 artifacts; each visit
        to an artifact replaces its 5 labels with 5 others (until 2026-11-25 every visit sent
        the labels it already had, so after the first round no label row was written)
    W3  GET /labels, a page of 50, rotating programs and pages (5,000 labels per program)

Servers, all under the same uvicorn (one worker, uvloop, httptools), all given the same requests:

    bare      a bare ASGI app: reads the body, answers a fixed JSON
    validate  a FastAPI handler that validates the same body (W1 ``LabelList``, W2 ``LabelsBody``)
              or the same query (W3) with labelhub's own models, and answers without a database
    labelhub  ``labelhub serve`` on a fresh database

Load: wrk (a separate process), 64 connections for throughput and 16 for latency, ``--runs``
times each, servers alternating. Each figure: median with min and max of the runs, p50 and p99,
error count; labelhub's peak RSS (VmHWM) after the run.

PostgreSQL with ``autovacuum`` off (this machine kind's server has it off): the bench database
is vacuumed and analyzed before each of labelhub's runs, as a server with the default
``autovacuum = on`` does by itself; otherwise each run would start on the dead rows of all runs
before it (a W2 run leaves about 10 a request) and on plans made for empty tables
(``bench/README.md``). The results record the setting and whether the bench vacuumed.

    python -m bench.throughput --db sqlite
    python -m bench.throughput --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
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
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    RESULTS,
    autovacuum,
    drop_database,
    free_port,
    fresh_database,
    spread,
    vacuum_analyze,
    write_report,
)
from labelhub.core import keys

PROGRAMS = 8
ARTIFACTS = 1_000
LABELS_PER_PROGRAM = 5_000
WORKLOADS = ("W1", "W2", "W3")

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"result":"ok"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

VALIDATE_APP = """
from typing import Annotated
from fastapi import FastAPI, Header, Query
from labelhub.actionhub.schemas import LabelList, LabelPage, SuccessMessage
from labelhub.har.schemas import LabelsBody

app = FastAPI()

@app.put("/labels")
async def put_labels(body: LabelList, program_id: str = Header(alias="program-id")) -> SuccessMessage:
    return SuccessMessage(result=f"{len(body.labels)} labels validated")

@app.get("/labels")
async def get_labels(
    program_id: str = Header(alias="program-id"),
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 50,
) -> LabelPage:
    return LabelPage(items=[], total=0, page=page, size=size)

@app.put("/har/api/v1/registry/{registry_ref:path}/artifact/{artifact}/labels")
async def put_har_labels(registry_ref: str, artifact: str, body: LabelsBody) -> dict:
    return {"status": "SUCCESS", "data": {"labels": body.labels}}
"""

LUA_COMMON = """
local counter = 0
local key = os.getenv("BENCH_KEY")
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\\n")
  end
end
"""

LUA = {
    "W1": """
request = function()
  counter = counter + 1
  local parts = {}
  for i = 0, 9 do
    parts[#parts + 1] = string.format('{"label": "label-%%d", "weight": %%d.5}', (counter * 10 + i) %% 5000, counter %% 100)
  end
  return wrk.format("PUT", "/labels", {
    ["content-type"] = "application/json", ["actionhub-key"] = key,
    ["program-id"] = "p" .. (counter %% %(programs)d),
  }, '{"labels": [' .. table.concat(parts, ", ") .. ']}')
end
""",
    "W2": """
request = function()
  counter = counter + 1
  local parts = {}
  for i = 0, 4 do
    parts[#parts + 1] = string.format('"label-%%d"', (counter + i * 7 + math.floor(counter / %(artifacts)d)) %% 50)
  end
  return wrk.format("PUT", "/har/api/v1/registry/acct%%2Fbench/artifact/artifact-" .. (counter %% %(artifacts)d) .. "/labels", {
    ["content-type"] = "application/json", ["x-api-key"] = key,
  }, '{"labels": [' .. table.concat(parts, ", ") .. ']}')
end
""",
    "MLFLOW": """
request = function()
  counter = counter + 1
  return wrk.format("POST", "/api/2.0/mlflow/registered-models/set-tag", {
    ["content-type"] = "application/json",
  }, '{"name": "bench", "key": "tag-' .. (counter %% 10) .. '", "value": "value-' .. counter .. '"}')
end
""",
    "W3": """
request = function()
  counter = counter + 1
  return wrk.format("GET", "/labels?size=50&page=" .. (counter %% 100 + 1), {
    ["actionhub-key"] = key, ["program-id"] = "p" .. (counter %% %(programs)d),
  })
end
""",
}


def wait_up(base: str, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        try:
            httpx.get(base + "/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


def run_wrk(base: str, script: Path, connections: int, seconds: int, key: str) -> dict[str, Any]:
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

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    socket_errors = re.search(r"Socket errors: (.*)", out.stdout)
    return {
        "rps": rps,
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "errors": out.stderr.count("status ") + (int(non2xx.group(1)) if non2xx else 0),
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    return spread([r[key] for r in runs], 2)


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return round(kb / 1024, 1)


def seed(base: str, admin: str, workloads: list[str], scale: float = 1.0) -> None:
    h = {"x-api-key": admin}
    with httpx.Client(base_url=base, headers=h, timeout=120) as http:
        for p in range(PROGRAMS):
            http.post("/admin/programs", json={"program_id": f"p{p}"}).raise_for_status()
            if "W3" in workloads:
                labels = [
                    {"label": f"label-{i:05d}", "weight": i % 100}
                    for i in range(int(LABELS_PER_PROGRAM * scale))
                ]
                http.put(
                    "/labels",
                    json={"labels": labels},
                    headers={"actionhub-key": admin, "program-id": f"p{p}"},
                ).raise_for_status()
        if "W2" in workloads:
            body = {"identifier": "bench", "packageType": "GENERIC", "config": {"type": "VIRTUAL"}}
            http.post("/har/api/v1/registry", params={"space_ref": "acct"}, json=body)
            for a in range(int(ARTIFACTS * scale)):
                http.post(
                    "/har/api/v1/registry/acct%2Fbench/artifacts", json={"name": f"artifact-{a}"}
                ).raise_for_status()


def start(
    args: list[str], env: dict[str, str], cwd: str, port: int, wait: float = 30
) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    wait_up(base, wait)
    return proc, base


def start_mlflow(mlflow: str, tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    """MLflow's tracking server (one worker, SQLite store) with a registered model "bench"."""
    port = free_port()
    proc, base = start(
        [
            mlflow,
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")},
        tmp,
        port,
    )
    httpx.post(
        base + "/api/2.0/mlflow/registered-models/create", json={"name": "bench"}, timeout=30
    ).raise_for_status()
    return proc, base


def mlflow_version(mlflow: str) -> str:
    return subprocess.run([mlflow, "--version"], capture_output=True, text=True).stdout.strip()


def mlflow_baseline(
    args: argparse.Namespace,
    procs: dict[str, subprocess.Popen[bytes]],
    tmp: str,
    w1: dict[str, Any],
) -> dict[str, Any]:
    """MLflow's set-tag on a registered model, at 64 connections, against W1 of this run."""
    procs["mlflow"], base = start_mlflow(args.mlflow, tmp)
    script = Path(tmp) / "mlflow.lua"
    script.write_text(LUA_COMMON + LUA["MLFLOW"] % {})
    runs = [run_wrk(base, script, 64, args.seconds, "") for _ in range(args.runs)]
    figures: dict[str, Any] = {
        "version": mlflow_version(args.mlflow),
        "rps": summary(runs, "rps"),
        "p50_ms": summary(runs, "p50_ms"),
        "p99_ms": summary(runs, "p99_ms"),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }
    figures["ratio_w1_vs_mlflow"] = round(w1["rps"]["median"] / figures["rps"]["median"], 1)
    print(
        f"{args.db} MLflow set-tag c64: {figures['rps']['median']:.0f} req/s "
        f"p99 {figures['p99_ms']['median']} ms errors {figures['errors']}; "
        f"W1 / MLflow {figures['ratio_w1_vs_mlflow']}",
        flush=True,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="64,16")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--quick", action="store_true", help="a tenth of the data (smoke)")
    parser.add_argument(
        "--mlflow",
        default=shutil.which("mlflow"),
        help="the mlflow executable, for the set-tag baseline of W1 (default: mlflow on PATH; "
        "'' for none)",
    )
    args = parser.parse_args()
    if args.mlflow and shutil.which(args.mlflow) is None:
        # Found out before the workloads run, not after them with their figures lost.
        parser.error(f"--mlflow {args.mlflow}: no such executable ('' runs without MLflow)")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    workloads = args.workloads.split(",")
    admin = keys.mint_secret()
    exe = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
    report: dict[str, Any] = {
        "benchmark": "W1-W3 throughput and latency against bare-ASGI and validate-only baselines",
        "command": "python -m bench.throughput " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "db": args.db,
        "cpus": os.cpu_count(),
        "workloads": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        url, pg_name = fresh_database(args.db, args.pg_url, Path(tmp))
        vacuum = False
        if args.db == "postgresql":
            report["postgresql_autovacuum"] = autovacuum(args.pg_url)
            vacuum = report["postgresql_autovacuum"] == "off"
            report["vacuum_analyze_before_each_labelhub_run"] = vacuum
        env.update(
            LABELHUB_DATABASE_URL=url, LABELHUB_ADMIN_KEY=admin, LABELHUB_LOG_LEVEL="warning"
        )
        (Path(tmp) / "bare_app.py").write_text(BARE_APP)
        (Path(tmp) / "validate_app.py").write_text(VALIDATE_APP)
        uvicorn = [str(exe / "uvicorn"), "--log-level", "warning", "--no-access-log"]
        ports = {name: free_port() for name in ("bare", "validate", "labelhub")}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        bases: dict[str, str] = {}
        try:
            for name, target in (("bare", "bare_app:app"), ("validate", "validate_app:app")):
                procs[name], bases[name] = start(
                    [*uvicorn, target, "--port", str(ports[name])], env, tmp, ports[name]
                )
            procs["labelhub"], bases["labelhub"] = start(
                [str(exe / "labelhub"), "serve", "--port", str(ports["labelhub"])],
                env,
                tmp,
                ports["labelhub"],
            )
            seed(bases["labelhub"], admin, workloads, 0.1 if args.quick else 1.0)
            for workload in workloads:
                script = Path(tmp) / f"{workload}.lua"
                artifacts = int(ARTIFACTS * (0.1 if args.quick else 1.0))
                script.write_text(
                    LUA_COMMON + LUA[workload] % {"programs": PROGRAMS, "artifacts": artifacts}
                )
                # Every server must answer the workload's requests with 200 before it is timed: a
                # baseline that answers an error (a 404 is much cheaper than validating a body)
                # is no baseline. W2's validate-only baseline did until 2026-11-24 (bench/README).
                for name, base in bases.items():
                    probe = run_wrk(base, script, 2, 1, admin)
                    if probe["errors"] or probe["rps"] == 0:
                        sys.exit(f"bench: {name} does not answer {workload} with 200: {probe}")
                result: dict[str, Any] = {}
                for connections in map(int, args.connections.split(",")):
                    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bases}
                    for _ in range(args.runs):
                        for name, base in bases.items():
                            if name == "labelhub" and vacuum:
                                vacuum_analyze(url)
                            runs[name].append(
                                run_wrk(base, script, connections, args.seconds, admin)
                            )
                    section: dict[str, Any] = {
                        name: {
                            "rps": summary(r, "rps"),
                            "p50_ms": summary(r, "p50_ms"),
                            "p99_ms": summary(r, "p99_ms"),
                            "errors": sum(x["errors"] for x in r),
                            "runs": r,
                        }
                        for name, r in runs.items()
                    }
                    lh = section["labelhub"]
                    for baseline in ("bare", "validate"):
                        section[f"ratio_rps_vs_{baseline}"] = round(
                            lh["rps"]["median"] / section[baseline]["rps"]["median"], 3
                        )
                        section[f"ratio_p99_vs_{baseline}"] = round(
                            lh["p99_ms"]["median"] / section[baseline]["p99_ms"]["median"], 2
                        )
                    result[f"c{connections}"] = section
                    print(
                        f"{args.db} {workload} c{connections}: labelhub {lh['rps']['median']:.0f} req/s "
                        f"p99 {lh['p99_ms']['median']} ms errors {lh['errors']}; "
                        f"validate {section['validate']['rps']['median']:.0f} req/s "
                        f"p99 {section['validate']['p99_ms']['median']} ms; "
                        f"bare {section['bare']['rps']['median']:.0f} req/s; "
                        f"ratio vs validate {section['ratio_rps_vs_validate']}",
                        flush=True,
                    )
                result["labelhub_peak_rss_mb"] = peak_rss_mb(procs["labelhub"].pid)
                report["workloads"][workload] = result
            if args.mlflow and "W1" in workloads:
                report["mlflow_set_tag"] = mlflow_baseline(
                    args, procs, tmp, report["workloads"]["W1"]["c64"]["labelhub"]
                )
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait()
            drop_database(args.pg_url, pg_name)
    write_report(args.out, "throughput", args.db, report)


if __name__ == "__main__":
    main()
