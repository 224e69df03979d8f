"""Two labelhub processes on one PostgreSQL database, written through at once: no lost update, and
a key revoked through one is refused by the other on its next request."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from labelhub.core import keys
from tests import load
from tests.conftest import DatabaseFactory, require_postgresql
from tests.live import Server, clean_env

pytestmark = pytest.mark.live


@pytest.fixture
def replicas(tmp_path: Path) -> object:
    require_postgresql()
    databases = DatabaseFactory("postgresql", tmp_path)
    admin = keys.mint_secret()
    env = clean_env(LABELHUB_DATABASE_URL=databases.empty(), LABELHUB_ADMIN_KEY=admin)
    servers = [Server(tmp_path, env), Server(tmp_path, env)]
    try:
        for server in servers:
            server.wait_healthy()
        yield admin, servers
    finally:
        for server in servers:
            server.stop()
        databases.drop_all()


def test_writes_through_both_replicas_lose_nothing(replicas: tuple[str, list[Server]]) -> None:
    admin, servers = replicas
    urls = [s.url for s in servers]
    load.setup(urls[0], admin, har_writers=4)
    writers = load.Load(urls, admin)  # every writer alternates between the two processes
    writers.start()
    time.sleep(3)
    writers.stop()
    assert set(writers.statuses()) == {200}, writers.statuses()

    for url in urls:  # both replicas see the same, complete state
        labels = load.stored_labels(url, admin)
        lost = {k for k, v in writers.acked_labels.items() if labels.get(k) != v}
        assert not lost, f"{len(lost)} answered labels missing through {url}"
        assert set(labels) == set(writers.acked_labels)
        for artifact, seq in writers.acked_seq.items():
            assert load.stored_seq(url, admin, artifact) == seq  # every write answered
        # Kept counters (label totals, registry label counts) agree with the rows.
        r = httpx.get(
            f"{url}/labels",
            headers={"actionhub-key": admin, "program-id": load.PROGRAM},
            params={"size": 1},
        )
        assert r.json()["total"] == len(writers.acked_labels)
        r = httpx.get(
            f"{url}{load.HAR}/registry/{load.REGISTRY}/artifact/labels",
            headers={"x-api-key": admin},
            params={"size": 100},
        )
        data = r.json()["data"]
        expected = {f"w{n}" for n in range(4)} | {
            f"seq-{seq:08d}" for seq in writers.acked_seq.values()
        }
        assert set(data["labels"]) == expected and data["itemCount"] == len(expected)
    # Regression: batches of the two processes used to deadlock on each other's rows (each
    # deadlock a 1 s stall and a rerun); the write lock makes them take turns.
    for url in urls:
        metrics = httpx.get(url + "/metrics").text
        assert "\nlabelhub_db_writer_retries 0.0\n" in metrics
    print(
        f"two replicas: {writers.statuses()[200]} writes answered 200 "
        f"({len(writers.acked_labels)} labels, {len(writers.acked_seq)} artifacts), none lost"
    )


def test_revocation_through_one_replica_holds_on_the_other(
    replicas: tuple[str, list[Server]],
) -> None:
    admin, (a, b) = replicas
    load.setup(a.url, admin, har_writers=1)
    r = httpx.post(
        a.url + "/admin/keys",
        json={"name": "k", "grants": [{"scope": "program:p", "role": "write"}]},
        headers={"x-api-key": admin},
    )
    assert r.status_code == 201
    key_id, secret = r.json()["id"], r.json()["secret"]
    headers = {"actionhub-key": secret, "program-id": load.PROGRAM}
    assert httpx.get(b.url + "/labels", headers=headers).status_code == 200
    r = httpx.delete(f"{a.url}/admin/keys/{key_id}", headers={"x-api-key": admin})
    assert r.status_code == 200
    r = httpx.get(b.url + "/labels", headers=headers)
    assert r.status_code == 403 and r.json() == {"detail": "Could not validate API KEY"}


def test_queued_recommendation_work_survives_a_killed_replica(
    replicas: tuple[str, list[Server]],
) -> None:
    """Users queued through one process that is then SIGKILLed are processed by the other."""
    import signal

    import psycopg

    admin, (first, second) = replicas
    httpx.post(
        f"{first.url}/admin/programs", json={"program_id": "recs"}, headers={"x-api-key": admin}
    ).raise_for_status()
    headers = {"actionhub-key": admin, "program-id": "recs"}
    for batch in range(3):
        events = [
            {
                "user_id": f"user-{batch}-{i}",
                "event_timestamp": f"2026-01-01T00:{i % 60:02d}:00Z",
                "event_type": "view",
                "asset_id": f"a{i % 7}",
            }
            for i in range(1000)
        ]
        r = httpx.post(
            f"{first.url}/events",
            params={"queue_updates": "true"},
            json={"events": events},
            headers=headers,
            timeout=30,
        )
        assert r.status_code == 200, r.text
    first.stop(signal.SIGKILL)
    url = second.env["LABELHUB_DATABASE_URL"]
    deadline = time.monotonic() + 60
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM ah_user_queue").fetchone()
        conn.commit()
        assert left is not None and left[0] > 0, "the killed process had finished the work"
        while time.monotonic() < deadline:
            queued = conn.execute("SELECT count(*) FROM ah_user_queue").fetchone()
            conn.commit()
            if queued == (0,):
                break
            time.sleep(0.2)
        assert conn.execute("SELECT count(*) FROM ah_user_queue").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM ah_users WHERE pool IS NULL").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM ah_users").fetchone() == (3000,)
    r = httpx.get(f"{second.url}/users/user-2-5/actions", headers=headers)
    assert r.status_code == 200 and r.json()["actions"]
