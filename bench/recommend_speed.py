"""Events and recommendations at scale: ingest, synchronous processing, and answers.

On a fresh database behind ``labelhub serve`` (one process), with ``bench.recsys_data`` at
``--users`` users and ``--assets`` assets (default 100,000 and 10,000):

1. **ingest**: every event, ``POST /events`` batches of 1,000 in time order with
   ``process_user_actions=false``, from ``--clients`` concurrent clients (bodies encoded
   beforehand). The batches are cut in ``--runs`` equal runs: events/s per run (median, min,
   max) and request latency p50/p99.
2. **fold**: ``labelhub events process`` folds all of them and computes every user's pool (the
   bulk path after a backfill); users/s.
3. **processed ingest**: more batches of 1,000 new events of existing users with
   ``process_user_actions=true&queue_updates=false``, one client: events/s and p99 per run.
4. **actions**: ``GET /users/{id}/actions`` (limit 10, half with ``allow_repeats=false``) for
   random users, sequentially on one connection: p50/p99 per run; and the same at 16
   connections (``--clients`` threads... see ``concurrent_actions``) for reference.

    python -m bench.recommend_speed                       # SQLite, 100k users, 10k assets
    python -m bench.recommend_speed --db postgresql
    python -m bench.recommend_speed --quick               # seconds: proves it runs
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import recsys_data
from bench.common import (
    RESULTS,
    drop_database,
    fresh_database,
    percentile,
    save,
    serve,
    spread,
)
from labelhub.core import keys

PROGRAM = "speed"


def _post_all(
    base: str, headers: dict[str, str], bodies: list[bytes], params: dict[str, str], clients: int
) -> tuple[float, list[float]]:
    """Send every body (``clients`` at a time); wall seconds and per-request latencies (ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    local = threading.local()

    def send(body: bytes) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, headers=headers, timeout=600)
        started = time.perf_counter()
        r = local.http.post("/events", content=body, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"POST /events answered {r.status_code}: {r.text[:300]}")
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - started, latencies


def _follow_up_events(streams: list[recsys_data.UserStream], count: int, seed: int) -> list[bytes]:
    """``count`` batches of 1,000 new events of existing users, after all the others."""
    rng = random.Random(seed)
    last = max(t for s in streams for t, _ in s.events)
    pool = [a for s in streams for _, a in s.events]
    bodies = []
    for b in range(count):
        events = []
        for i in range(1000):
            user = rng.choice(streams).user_id
            kind, asset = rng.choice(pool)
            t = last + (b * 1000 + i + 1) * 1000
            events.append(
                {
                    "user_id": user,
                    "event_timestamp": dt.datetime.fromtimestamp(t / 1000, dt.UTC).isoformat(),
                    "event_type": kind,
                    "asset_id": asset,
                }
            )
        bodies.append(json.dumps({"events": events}).encode())
    return bodies


def _actions_latencies(
    base: str, headers: dict[str, str], users: list[str], connections: int
) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    per = len(users) // connections

    def worker(part: list[str]) -> None:
        found = []
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            for i, user in enumerate(part):
                params = {"limit": "10", "allow_repeats": "false" if i % 2 else "true"}
                started = time.perf_counter()
                r = http.get(f"/users/{user}/actions", params=params)
                found.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"GET actions answered {r.status_code}: {r.text[:300]}")
        with lock:
            latencies.extend(found)

    threads = [
        threading.Thread(target=worker, args=(users[i * per : (i + 1) * per],))
        for i in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shape = recsys_data.Shape(
        users=args.users,
        assets=args.assets,
        groups=max(10, args.users // 50),
        popular=100,
        seed=args.seed,
    )
    streams = recsys_data.generate(shape)
    batches = [
        json.dumps({"events": body}).encode() for body in recsys_data.event_bodies(streams, 1_000)
    ]
    follow_up = _follow_up_events(streams, args.processed_batches * args.runs, args.seed)
    events = sum(len(s.events) for s in streams)
    admin = keys.mint_secret()
    figures: dict[str, Any] = {
        "users": args.users,
        "assets": args.assets,
        "events": events,
        "distinct_actions": len({a for s in streams for _, a in s.events}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        url, name = fresh_database(args.db, args.pg_url, Path(tmp))
        proc, base = serve(url, admin)
        try:
            httpx.post(
                base + "/admin/programs",
                json={"program_id": PROGRAM},
                headers={"x-api-key": admin},
            ).raise_for_status()
            headers = {
                "actionhub-key": admin,
                "program-id": PROGRAM,
                "content-type": "application/json",
            }
            # 1. ingest without processing
            rates, latencies = [], []
            per_run = -(-len(batches) // args.runs)
            for run in range(args.runs):
                part = batches[run * per_run : (run + 1) * per_run]
                seconds, lat = _post_all(
                    base, headers, part, {"process_user_actions": "false"}, args.clients
                )
                rates.append(sum(b.count(b'"user_id"') for b in part) / seconds)
                latencies += lat
            figures["ingest_unprocessed"] = {
                "events_per_s": spread(rates, 0),
                "clients": args.clients,
                "p50_ms": round(percentile(latencies, 0.5), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
            }
            # 2. fold everything with the CLI (the server stays up, idle)
            env = {k: v for k, v in os.environ.items() if not k.startswith("LABELHUB_")}
            env["LABELHUB_DATABASE_URL"] = url
            exe = Path(sys.executable).parent / "labelhub"
            started = time.perf_counter()
            subprocess.run(
                [str(exe), "events", "process", "--program", PROGRAM], env=env, check=True
            )
            seconds = time.perf_counter() - started
            figures["fold_all"] = {
                "seconds": round(seconds, 1),
                "users_per_s": round(args.users / seconds),
                "events_per_s": round(events / seconds),
            }
            # 3. ingest with synchronous processing
            rates, latencies = [], []
            for run in range(args.runs):
                part = follow_up[run * args.processed_batches : (run + 1) * args.processed_batches]
                seconds, lat = _post_all(
                    base,
                    headers,
                    part,
                    {"process_user_actions": "true", "queue_updates": "false"},
                    1,
                )
                rates.append(1000 * len(part) / seconds)
                latencies += lat
            figures["ingest_processed"] = {
                "events_per_s": spread(rates, 0),
                "batches": len(follow_up),
                "p50_ms": round(percentile(latencies, 0.5), 1),
                "p99_ms": round(percentile(latencies, 0.99), 1),
            }
            # 4. answers
            rng = random.Random(args.seed)
            ids = [s.user_id for s in streams]
            for connections in (1, 16):
                p50s, p99s = [], []
                for _ in range(args.runs):
                    lat = _actions_latencies(
                        base, headers, rng.sample(ids, args.requests), connections
                    )
                    p50s.append(percentile(lat, 0.5))
                    p99s.append(percentile(lat, 0.99))
                figures[f"actions_{connections}_connections"] = {
                    "requests_per_run": args.requests,
                    "p50_ms": spread(p50s, 2),
                    "p99_ms": spread(p99s, 2),
                }
        finally:
            proc.terminate()
            proc.wait()
            drop_database(args.pg_url, name)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--processed-batches", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.quick:
        args.users, args.assets, args.processed_batches, args.requests = 2_000, 500, 2, 160
    figures = measure(args)
    print(json.dumps(figures))
    title = "Events and recommendations at scale"
    save(args.out, "recommend-speed", title, args.db, figures, runs=args.runs)


if __name__ == "__main__":
    main()
