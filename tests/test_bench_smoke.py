"""The benchmark suite still runs end to end (``python -m bench --quick``: seconds, tiny sizes).
Its figures are not the suite's business, only proof that `bench/` works: every script writes
its result file with figures in it, and the report and plots are made."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.live


def test_bench_quick_run(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk); the bench needs it")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    reports = {p.stem.split("-", 3)[-1]: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(reports) == {
        "raw-sqlite",
        "throughput-sqlite",
        "bulk-sqlite",
        "search-sqlite",
        "har-sqlite",
        "recommend-quality-sqlite",
        "recommend-speed-sqlite",
    }
    assert reports["raw-sqlite"]["figures"]["bulk_rows_per_s"]["median"] > 0
    for workload in ("W1", "W2", "W3"):
        section = reports["throughput-sqlite"]["workloads"][workload]["c16"]
        assert section["labelhub"]["rps"]["median"] > 0 and section["labelhub"]["errors"] == 0
        for baseline in ("validate", "bare"):  # a baseline answering errors measures nothing
            assert section[baseline]["rps"]["median"] > 0 and section[baseline]["errors"] == 0
    assert reports["bulk-sqlite"]["figures"]["put_labels_insert"]["labels_per_s"]["median"] > 0
    for kind in ("search", "har"):
        figures = reports[f"{kind}-sqlite"]["sizes"]["2000"]
        assert figures["plans"] and all(
            v["p50_ms"] > 0 for v in figures.values() if isinstance(v, dict) and "p50_ms" in v
        )
        assert (tmp_path / f"{kind}-sqlite.png").stat().st_size > 0
    quality = reports["recommend-quality-sqlite"]["figures"]
    assert quality["test_users"] > 0 and quality["hit_rate_at_10_labelhub"] > 0
    speed = reports["recommend-speed-sqlite"]["figures"]
    assert speed["ingest_unprocessed"]["events_per_s"]["median"] > 0
    assert speed["actions_1_connections"]["p99_ms"]["median"] > 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "W1" in text and "Recommendation quality" in text and "at scale" in text


def test_bench_instructions_quick_run(tmp_path: Path) -> None:
    """``bench.instructions`` (valgrind's instruction counts) still runs: a figure per server."""
    for tool in ("wrk", "valgrind"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {tool}); the script needs it")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.instructions", "--quick", "--workloads", "W2"),
            *("--seconds", "1", "--out", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    (path,) = tmp_path.glob("*-instructions-sqlite.json")
    figures = json.loads(path.read_text())["workloads"]["W2"]
    for server in ("validate", "labelhub"):
        assert figures[server]["requests"] > 0 and figures[server]["errors"] == 0
        assert figures[server]["instructions_per_request"] > 0
    assert figures["ratio_labelhub_vs_validate"] > 0
