"""``labelhub serve`` as a real process: zero configuration, bootstrap key, replicas starting together."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from tests.conftest import DatabaseFactory
from tests.live import Server, clean_env

pytestmark = pytest.mark.live

KEY_LINE = re.compile(
    r"labelhub: created the bootstrap admin key \(shown only this once\): (lh_[A-Za-z0-9_-]{43})"
)


def test_zero_configuration_start_prints_key_once(tmp_path: Path) -> None:
    server = Server(tmp_path, clean_env())
    try:
        server.wait_healthy()
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        found = KEY_LINE.findall(server.stderr)
        assert len(found) == 1
        key = found[0]
        r = httpx.get(server.url + "/admin/programs", headers={"x-api-key": key})
        assert r.status_code == 200 and r.json() == []
        assert (tmp_path / "labelhub.db").exists()  # the default: ./labelhub.db
    finally:
        assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown

    again = Server(tmp_path, clean_env())
    try:
        again.wait_healthy()
        assert KEY_LINE.findall(again.stderr) == []  # never printed again
        r = httpx.get(again.url + "/admin/programs", headers={"x-api-key": key})
        assert r.status_code == 200
    finally:
        again.stop()
    assert key not in again.stderr


def test_admin_key_from_environment(tmp_path: Path) -> None:
    key = keys.mint_secret()
    server = Server(tmp_path, clean_env(LABELHUB_ADMIN_KEY=key))
    try:
        server.wait_healthy()
        assert KEY_LINE.findall(server.stderr) == []
        r = httpx.get(server.url + "/admin/keys", headers={"x-api-key": key})
        assert r.status_code == 200
        assert [k["grants"] for k in r.json()] == [[{"scope": "admin", "role": "admin"}]]
    finally:
        server.stop()
    assert key not in server.stderr


def test_malformed_admin_key_stops_the_start(tmp_path: Path) -> None:
    server = Server(tmp_path, clean_env(LABELHUB_ADMIN_KEY="swordfish"))
    assert server.proc.wait(timeout=30) == 2
    err = server.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("labelhub: error: LABELHUB_ADMIN_KEY")
    assert "swordfish" not in err
    server.stop()


def test_unknown_database_scheme_stops_the_start(tmp_path: Path) -> None:
    server = Server(tmp_path, clean_env(LABELHUB_DATABASE_URL="mysql://root@localhost/x"))
    assert server.proc.wait(timeout=30) == 2
    err = server.stderr.strip()
    assert err.count("\n") == 0 and "unsupported scheme 'mysql'" in err
    server.stop()


def test_three_replicas_start_together_on_an_empty_database(
    databases: DatabaseFactory, tmp_path: Path
) -> None:
    url = databases.empty()
    servers = [Server(tmp_path, clean_env(LABELHUB_DATABASE_URL=url)) for _ in range(3)]
    try:
        for server in servers:
            server.wait_healthy(timeout=60)
        printed = [k for s in servers for k in KEY_LINE.findall(s.stderr)]
        assert len(printed) == 1, [s.stderr for s in servers]
        for server in servers:
            r = httpx.get(server.url + "/admin/programs", headers={"x-api-key": printed[0]})
            assert r.status_code == 200
            assert httpx.get(server.url + "/readyz").status_code == 200
    finally:
        for server in servers:
            server.stop()
    db = dbmod.Database(Settings(database_url=url))
    try:
        assert len(db.run_read(keys.list_keys)) == 1
        with db.engine.connect() as conn:
            assert dbmod.current_revision(conn) == dbmod.head_revision()
    finally:
        db.close()
