"""Recommendation quality: hit-rate@10 on a held-out split, labelhub against popularity.

The data is ``bench.recsys_data`` (seeded, planted groups of users sharing action sequences,
plus popular noise). The training events go to a fresh labelhub through ``POST /events``
(batches of 1,000 in time order, ``process_user_actions=true&queue_updates=false``); then for
each test user ``GET /users/{id}/actions?limit=10&allow_repeats=false``. A user *hits* when one
of its held-out actions is among the 10. The baseline ranks actions by their number of training
events (popularity only), without the user's own training actions, and takes 10.

    python -m bench.recommend_quality                      # SQLite, seed 7
    python -m bench.recommend_quality --db postgresql --seed 11
    python -m bench.recommend_quality --quick              # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench import recsys_data
from bench.common import RESULTS, drop_database, fresh_database, save, serve
from labelhub.core import keys

QUICK = recsys_data.Shape(users=300, assets=300, groups=10, popular=15)
PROGRAM = "quality"


def popularity_hits(
    train: list[recsys_data.UserStream], test: dict[str, set[recsys_data.Action]], k: int
) -> int:
    counts = Counter(a for s in train for _, a in s.events)
    ranking = sorted(counts, key=lambda a: (-counts[a], a))
    hits = 0
    for s in train:
        if s.user_id not in test:
            continue
        taken = {a for _, a in s.events}
        top = [a for a in ranking if a not in taken][:k]
        hits += bool(test[s.user_id] & set(top))
    return hits


def labelhub_hits(
    db: str, pg_url: str, train: list[recsys_data.UserStream], test: dict[str, Any], k: int
) -> tuple[int, dict[str, float]]:
    admin = keys.mint_secret()
    with tempfile.TemporaryDirectory() as tmp:
        url, name = fresh_database(db, pg_url, Path(tmp))
        proc, base = serve(url, admin)
        try:
            with httpx.Client(base_url=base, timeout=600) as http:
                http.post(
                    "/admin/programs", json={"program_id": PROGRAM}, headers={"x-api-key": admin}
                ).raise_for_status()
                h = {"actionhub-key": admin, "program-id": PROGRAM}
                bodies = recsys_data.event_bodies(train, 1_000)
                started = time.perf_counter()
                for body in bodies:
                    r = http.post(
                        "/events",
                        params={"process_user_actions": "true", "queue_updates": "false"},
                        json={"events": body},
                        headers=h,
                    )
                    r.raise_for_status()
                ingest = time.perf_counter() - started
                hits = 0
                latencies = []
                for user, held in sorted(test.items()):
                    started = time.perf_counter()
                    r = http.get(
                        f"/users/{user}/actions",
                        params={"limit": k, "allow_repeats": "false"},
                        headers=h,
                    )
                    latencies.append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
                    top = {(a["event_type"], a["asset_id"]) for a in r.json()["actions"]}
                    hits += bool(held & top)
        finally:
            proc.terminate()
            proc.wait()
            drop_database(pg_url, name)
    events = sum(len(b) for b in bodies)
    return hits, {
        "ingest_events": events,
        "ingest_seconds": round(ingest, 2),
        "ingest_events_per_s": round(events / ingest),
        "actions_p50_ms": round(statistics.median(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    shape = QUICK if args.quick else recsys_data.Shape()
    shape = recsys_data.Shape(**{**shape.__dict__, "seed": args.seed})
    train, test = recsys_data.split(recsys_data.generate(shape), shape.held_out)
    k = 10
    baseline = popularity_hits(train, test, k)
    ours, timing = labelhub_hits(args.db, args.pg_url, train, test, k)
    users = len(test)
    figures = {
        "shape": shape.__dict__,
        "test_users": users,
        "hit_rate_at_10_labelhub": round(ours / users, 4),
        "hit_rate_at_10_popularity": round(baseline / users, 4),
        "ratio": round(ours / baseline, 2) if baseline else None,
        **timing,
    }
    print(json.dumps(figures))
    title = "Recommendation quality: hit-rate@10, labelhub vs popularity"
    save(args.out, "recommend-quality", title, args.db, figures)


if __name__ == "__main__":
    main()
