"""16 clients upsert overlapping label sets into one program of a live server at once.

The final state must be that of some serial order of the answered requests: every label written
is present, holds the weight one of its writers sent, and the "who wrote last" choices of all
labels fit one order (no request half-applied over another).
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from labelhub.core import keys
from tests.conftest import DatabaseFactory
from tests.live import Server, clean_env

pytestmark = pytest.mark.live

CLIENTS = 16
SECONDS = 4.0
POOL = [f"label-{i:02d}" for i in range(40)]


def has_cycle(edges: dict[int, set[int]], nodes: set[int]) -> bool:
    indegree = dict.fromkeys(nodes, 0)
    for source in edges:
        for target in edges[source]:
            indegree[target] += 1
    ready = [n for n, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for target in edges.get(node, ()):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return seen != len(nodes)


def test_has_cycle_finds_a_torn_write() -> None:
    assert has_cycle({1: {2}, 2: {1}}, {1, 2})
    assert not has_cycle({1: {2}, 2: {3}}, {1, 2, 3})


def test_concurrent_upserts_serialize(databases: DatabaseFactory, tmp_path: Path) -> None:
    admin = keys.mint_secret()
    server = Server(
        tmp_path,
        clean_env(LABELHUB_DATABASE_URL=databases.empty(), LABELHUB_ADMIN_KEY=admin),
    )
    try:
        server.wait_healthy()
        r = httpx.post(
            server.url + "/admin/programs", json={"program_id": "p"}, headers={"x-api-key": admin}
        )
        assert r.status_code == 201
        headers = {"actionhub-key": admin, "program-id": "p"}

        lock = threading.Lock()
        written: dict[int, dict[str, float]] = {}  # request number -> the labels it set
        statuses: dict[int, int] = defaultdict(int)
        deadline = time.monotonic() + SECONDS

        def client(n: int) -> None:
            rng = random.Random(n)
            seq = 0
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
                while time.monotonic() < deadline:
                    seq += 1
                    request_id = n * 1_000_000 + seq
                    chosen = rng.sample(POOL, rng.randint(1, 12))
                    labels = {name: request_id + i / 100 for i, name in enumerate(chosen)}
                    r = http.put(
                        "/labels",
                        json={"labels": [{"label": k, "weight": v} for k, v in labels.items()]},
                    )
                    with lock:
                        statuses[r.status_code] += 1
                        if r.status_code == 200:
                            written[request_id] = labels

        threads = [threading.Thread(target=client, args=(n,)) for n in range(1, CLIENTS + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert set(statuses) == {200}, dict(statuses)
        print(f"{len(written)} requests answered 200 in {SECONDS}s")
        assert len(written) > CLIENTS * 5
        final = {
            item["label"]: item["weight"]
            for page in (1, 2)
            for item in httpx.get(
                server.url + "/labels", params={"page": page, "size": 50}, headers=headers
            ).json()["items"]
        }
        writers: dict[str, dict[float, int]] = defaultdict(dict)
        for request_id, labels in written.items():
            for name, weight in labels.items():
                writers[name][weight] = request_id
        assert set(final) == set(writers)  # every label written is present
        edges: dict[int, set[int]] = defaultdict(set)
        for name, weight in final.items():
            assert weight in writers[name], (name, weight)  # one of its writers' weights
            last = writers[name][weight]
            for other in writers[name].values():
                if other != last:
                    edges[other].add(last)
        assert not has_cycle(edges, set(written)), "the final state fits no serial order"
    finally:
        server.stop()
