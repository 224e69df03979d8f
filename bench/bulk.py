"""W4: big requests end to end, in labels per second.

    put_labels   one PUT /labels of 10,000 labels (a new program each run: all inserts), then the
                 same 10,000 again with new weights (all updates)
    post_assets  one POST /assets of 1,000 assets with 10 labels each (10,000 asset labels)

Each request is timed from send to answer (JSON encoding of the body included, as a client
would pay it), ``--runs`` times; medians with min and max.

    python -m bench.bulk --db sqlite
    python -m bench.bulk --db postgresql --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import drop_database, figures_main, fresh_database, serve
from labelhub.core import keys

QUICK = {"labels": 500, "assets": 50}


def _timed(http: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    r = http.request(method, path, json=body, headers=headers)
    seconds = time.perf_counter() - started
    r.raise_for_status()
    return seconds


def measure(
    db: str, pg_url: str, runs: int, labels: int = 10_000, assets: int = 1_000
) -> dict[str, Any]:
    admin = keys.mint_secret()
    figures: dict[str, list[float]] = {
        "put_labels_insert": [],
        "put_labels_update": [],
        "post_assets": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        url, name = fresh_database(db, pg_url, Path(tmp))
        proc, base = serve(url, admin)
        try:
            with httpx.Client(base_url=base, timeout=300) as http:
                for run in range(runs):
                    program = f"bulk{run}"
                    http.post(
                        "/admin/programs",
                        json={"program_id": program},
                        headers={"x-api-key": admin},
                    ).raise_for_status()
                    h = {"actionhub-key": admin, "program-id": program}
                    for kind, weight in (("insert", 1.0), ("update", 2.0)):
                        body = {
                            "labels": [
                                {"label": f"label-{i:06d}", "weight": weight + i}
                                for i in range(labels)
                            ]
                        }
                        seconds = _timed(http, "PUT", "/labels", body, h)
                        figures[f"put_labels_{kind}"].append(labels / seconds)
                    body = {
                        "assets": [
                            {
                                "asset_id": f"asset-{a:05d}",
                                "asset_name": f"Asset {a}",
                                "labels": [f"label-{(a * 10 + j) % labels:06d}" for j in range(10)],
                            }
                            for a in range(assets)
                        ]
                    }
                    seconds = _timed(http, "POST", "/assets", body, h)
                    figures["post_assets"].append(assets * 10 / seconds)
        finally:
            proc.terminate()
            proc.wait()
            drop_database(pg_url, name)
    return {
        kind: {
            "labels_per_s": {
                "median": round(statistics.median(values)),
                "min": round(min(values)),
                "max": round(max(values)),
            }
        }
        for kind, values in figures.items()
    }


def main() -> None:
    figures_main("bulk", "W4 big requests end to end", measure, QUICK)


if __name__ == "__main__":
    main()
