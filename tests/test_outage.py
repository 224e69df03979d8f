"""PostgreSQL goes away under load: 503 in each API's shape within a bounded time, 2xx again after
it returns, without restarting labelhub. Runs on a private PostgreSQL server (tests/pg_cluster.py).

Two outages: ``stop`` (pg_ctl stop -m fast: sessions end, connections are refused - a restart or a
crash) and ``freeze`` (SIGSTOP: connections stay open and nothing answers - a hung server or a cut
network). A stopped server is noticed at once, so answers stay within the timeout (plus slack); a
frozen one is noticed only by waiting, so a write may wait its deadline in the queue and then its
batch's connection attempt: at most about twice LABELHUB_DB_TIMEOUT.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from labelhub.core import keys
from tests import load
from tests.conftest import IN_CI, require_postgresql
from tests.live import Server, clean_env
from tests.pg_cluster import PrivateCluster

pytestmark = pytest.mark.live
TIMEOUT = 2.0  # LABELHUB_DB_TIMEOUT
OUTAGE = 4.0  # seconds PostgreSQL stays down


def ah_shape(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str)


def har_shape(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and body.get("code") == "503"
        and isinstance(body.get("message"), str)
        and set(body) <= {"code", "message", "details"}
    )


@pytest.fixture
def cluster() -> Any:
    require_postgresql()
    try:
        made = PrivateCluster()
    except (RuntimeError, OSError) as error:  # pragma: no cover - depends on the machine
        if IN_CI:
            pytest.fail(f"CI=true needs a private PostgreSQL server: {error}")
        pytest.skip(str(error))
    made.start()
    yield made
    made.destroy()


BOUND = {"stop": TIMEOUT + 2.0, "freeze": 2 * TIMEOUT + 1.0}


@pytest.mark.parametrize("outage", ["stop", "freeze"])
def test_outage_answers_503_and_heals(cluster: PrivateCluster, tmp_path: Path, outage: str) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE labelhub")
    admin = keys.mint_secret()
    server = Server(
        tmp_path,
        clean_env(
            LABELHUB_DATABASE_URL=cluster.database_url("labelhub"),
            LABELHUB_ADMIN_KEY=admin,
            LABELHUB_DB_TIMEOUT=str(TIMEOUT),
        ),
    )
    try:
        server.wait_healthy()
        load.setup(server.url, admin, har_writers=2)
        writers = load.Load([server.url], admin, ah_writers=2, har_writers=2)
        writers.start()
        time.sleep(1.5)
        assert writers.statuses("actionhub")[200] > 0 and writers.statuses("har")[200] > 0

        cluster.stop("fast") if outage == "stop" else cluster.freeze()
        down = time.monotonic()
        reads = []
        while time.monotonic() < down + OUTAGE:
            reads.append(httpx.get(server.url + "/readyz", timeout=30).status_code)
            r = httpx.get(
                server.url + "/labels",
                headers={"actionhub-key": admin, "program-id": load.PROGRAM},
                timeout=30,
            )
            assert r.status_code == 503 and ah_shape(r.json()), r.text
            r = httpx.get(
                f"{server.url}{load.HAR}/registry/{load.REGISTRY}/artifact/art0/summary",
                headers={"x-api-key": admin},
                timeout=30,
            )
            assert r.status_code == 503 and har_shape(r.json()), r.text
            time.sleep(0.2)
        cluster.start() if outage == "stop" else cluster.thaw()
        up = time.monotonic()
        deadline = up + 30
        recovered = writers.first_success_after(up)
        while len(recovered) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            recovered = writers.first_success_after(up)
        writers.stop()
        assert set(reads) == {503}, reads
        assert httpx.get(server.url + "/readyz", timeout=30).status_code == 200

        during = [a for a in writers.answers if down + 0.5 <= a.started <= up - 0.5]
        slowest = max(a.seconds for a in writers.answers)
        print(
            f"{outage}: outage of {up - down:.1f} s: {len(during)} writes answered "
            f"{dict(writers.statuses(since=down + 0.5))} after the stop; slowest answer "
            f"{slowest:.2f} s (timeout {TIMEOUT} s); 2xx again after PostgreSQL was back: "
            + ", ".join(f"{api} {seconds:.2f} s" for api, seconds in sorted(recovered.items()))
        )
        assert during, "no write was sent during the outage"
        for a in during:
            if a.status == 200:  # taken before the outage or committed once it was over
                assert a.started < down or a.started + a.seconds >= up, a
                continue
            assert a.status == 503, (a.api, a.status, a.body)
            assert (ah_shape if a.api == "actionhub" else har_shape)(a.body), a.body
        assert None not in writers.statuses(), "a request went unanswered"
        assert not {s for s in writers.statuses() if s is not None and s >= 500 and s != 503}
        assert slowest <= BOUND[outage], f"an answer took {slowest:.1f} s"
        assert set(recovered) == {"actionhub", "har"}, "labelhub did not heal within 30 s"
        assert server.proc.poll() is None  # the same process all along
    finally:
        server.stop()
