"""The benchmark scripts still run (a few seconds, tiny sizes): they are not part of the suite's
figures, only proof that `bench/` works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.live


@pytest.mark.parametrize("script,kind", [("search_scale", "search"), ("har_scale", "har")])
def test_scale_benchmark_runs(tmp_path: Path, script: str, kind: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            f"bench.{script}",
            "--sizes",
            "1000,2000",
            "--runs",
            "1",
            "--requests",
            "3",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (result,) = tmp_path.glob(f"*-{kind}-sqlite.json")
    report = json.loads(result.read_text())
    assert set(report["sizes"]) == {"1000", "2000"}
    figures = report["sizes"]["2000"]
    assert figures["plans"] and all(
        v["p50_ms"] > 0 for v in figures.values() if isinstance(v, dict) and "p50_ms" in v
    )
