"""Live server: writers replace labels of the same artifacts while readers list them and one
client deletes an artifact. No 5xx; every read shows one writer's whole label set; the deleted
artifact stays deleted."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from labelhub.core import keys
from tests.conftest import DatabaseFactory
from tests.live import Server, clean_env

pytestmark = pytest.mark.live

P = "/har/api/v1"
ARTIFACTS = [f"app-{i}" for i in range(6)]
VICTIM = "app-5"
SECONDS = 4.0


def label_set(writer: int, seq: int) -> list[str]:
    """A set that names its writing: every label carries the same (writer, seq) tag."""
    size = 1 + (writer + seq) % 5
    return [f"w{writer}-s{seq}-{k}" for k in range(size)]


def whole(labels: list[str]) -> bool:
    if not labels:
        return True  # the set every artifact starts with
    tags = {label.rsplit("-", 1)[0] for label in labels}
    if len(tags) != 1:
        return False
    writer, seq = (int(part[1:]) for part in tags.pop().split("-"))
    return sorted(labels) == sorted(label_set(writer, seq))


def test_whole_detects_a_mix() -> None:
    assert whole(label_set(1, 2)) and whole([])
    assert not whole(label_set(1, 2) + label_set(3, 4)[:1])
    assert not whole(label_set(1, 2)[:-1] if len(label_set(1, 2)) > 1 else ["w1-s2-9"])


def test_concurrent_label_replacement_reads_and_delete(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    admin = keys.mint_secret()
    server = Server(
        tmp_path, clean_env(LABELHUB_DATABASE_URL=databases.empty(), LABELHUB_ADMIN_KEY=admin)
    )
    headers = {"x-api-key": admin}
    try:
        server.wait_healthy()
        with httpx.Client(base_url=server.url + P, headers=headers, timeout=30) as http:
            r = http.post(
                "/registry",
                params={"space_ref": "acct"},
                json={"identifier": "reg", "packageType": "DOCKER", "config": {"type": "VIRTUAL"}},
            )
            assert r.status_code == 201
            for name in ARTIFACTS:
                assert (
                    http.post("/registry/acct%2Freg/artifacts", json={"name": name}).status_code
                    == 201
                )

        statuses: Counter[int] = Counter()
        mixes: list[list[str]] = []
        lock = threading.Lock()
        deadline = time.monotonic() + SECONDS
        deleted_at: list[float] = []

        def writer(n: int) -> None:
            rng = random.Random(n)
            seq = 0
            with httpx.Client(base_url=server.url + P, headers=headers, timeout=30) as http:
                while time.monotonic() < deadline:
                    seq += 1
                    name = rng.choice(ARTIFACTS)
                    r = http.put(
                        f"/registry/acct%2Freg/artifact/{name}/labels",
                        json={"labels": label_set(n, seq)},
                    )
                    with lock:
                        statuses[r.status_code] += 1
                    if r.status_code == 200:
                        assert whole(r.json()["data"]["labels"])
                    else:
                        assert name == VICTIM and r.status_code == 404, r.text

        def reader(n: int) -> None:
            with httpx.Client(base_url=server.url + P, headers=headers, timeout=30) as http:
                while time.monotonic() < deadline:
                    r = http.get("/registry/acct%2Freg/artifacts", params={"size": 100})
                    with lock:
                        statuses[r.status_code] += 1
                    for artifact in r.json()["data"]["artifacts"] if r.status_code == 200 else []:
                        if not whole(artifact["labels"]):
                            mixes.append(artifact["labels"])
                    name = ARTIFACTS[n % len(ARTIFACTS)]
                    r = http.get(f"/registry/acct%2Freg/artifact/{name}/summary")
                    with lock:
                        statuses[r.status_code] += 1
                    if r.status_code == 200 and not whole(r.json()["data"]["labels"]):
                        mixes.append(r.json()["data"]["labels"])

        def deleter() -> None:
            time.sleep(SECONDS / 3)
            with httpx.Client(base_url=server.url + P, headers=headers, timeout=30) as http:
                r = http.delete(f"/registry/acct%2Freg/artifact/{VICTIM}")
                assert r.status_code == 200
                deleted_at.append(time.monotonic())

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        threads += [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        threads.append(threading.Thread(target=deleter))
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert deleted_at, "the delete did not happen"
        assert not [s for s in statuses if s >= 500], statuses
        assert mixes == []
        assert statuses[200] > 100
        with httpx.Client(base_url=server.url + P, headers=headers, timeout=30) as http:
            assert http.get(f"/registry/acct%2Freg/artifact/{VICTIM}/summary").status_code == 404
            listed = {
                a["name"]
                for a in http.get("/registry/acct%2Freg/artifacts", params={"size": 100}).json()[
                    "data"
                ]["artifacts"]
            }
            assert listed == set(ARTIFACTS) - {VICTIM}
            # The distinct-label counts agree with the artifacts' labels.
            labels = http.get("/registry/acct%2Freg/artifact/labels", params={"size": 100}).json()[
                "data"
            ]["labels"]
            carried = set()
            for name in listed:
                carried |= set(
                    http.get(f"/registry/acct%2Freg/artifact/{name}/summary").json()["data"][
                        "labels"
                    ]
                )
            assert set(labels) == carried
    finally:
        server.stop()
