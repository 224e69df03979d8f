"""A crash (SIGKILL) under concurrent writes of both APIs loses no write that was answered 2xx."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from labelhub.core import keys
from tests import load
from tests.conftest import DatabaseFactory
from tests.live import Server, clean_env

pytestmark = pytest.mark.live


def test_sigkill_loses_no_answered_write(databases: DatabaseFactory, tmp_path: Path) -> None:
    admin = keys.mint_secret()
    env = clean_env(LABELHUB_DATABASE_URL=databases.empty(), LABELHUB_ADMIN_KEY=admin)
    server = Server(tmp_path, env)
    server.wait_healthy()
    load.setup(server.url, admin, har_writers=4)
    writers = load.Load([server.url], admin)
    writers.start()
    time.sleep(2.5)
    server.proc.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
    server.proc.wait(timeout=10)
    writers.stop()
    assert server.stop() == -signal.SIGKILL

    restarted = Server(tmp_path, env)
    try:
        restarted.wait_healthy()
        labels = load.stored_labels(restarted.url, admin)
        lost = {k: v for k, v in writers.acked_labels.items() if labels.get(k) != v}
        behind = {
            artifact: (seq, load.stored_seq(restarted.url, admin, artifact))
            for artifact, seq in writers.acked_seq.items()
            if load.stored_seq(restarted.url, admin, artifact) < seq
        }
        print(
            f"answered 2xx before the kill: {len(writers.acked_labels)} labels "
            f"({writers.statuses('actionhub')[200]} PUT /labels), "
            f"{writers.statuses('har')[200]} HAR label updates on {len(writers.acked_seq)} artifacts; "
            f"found after restart: {len(writers.acked_labels) - len(lost)} labels, "
            f"{len(writers.acked_seq) - len(behind)} artifacts at or past their last answered write"
        )
        assert writers.statuses("actionhub")[200] > 20 and writers.statuses("har")[200] > 20
        assert not lost, f"{len(lost)} answered labels lost, e.g. {list(lost.items())[:3]}"
        assert not behind, f"artifacts behind their last answered write: {behind}"
        unanswered = writers.statuses()[None]
        assert unanswered > 0, "the kill should have cut requests in flight"
    finally:
        restarted.stop()
