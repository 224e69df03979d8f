"""Shared fixtures: real databases (SQLite and PostgreSQL), the real app over HTTP.

Storage tests take ``db_url`` (or what builds on it) and run once per dialect. PostgreSQL is the
machine's local server (``LABELHUB_TEST_PG_URL``, default ``postgresql://postgres@127.0.0.1:5432/postgres``);
when it cannot be reached the PostgreSQL cases are skipped, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from labelhub.core.models import Base

PG_ADMIN_URL = os.environ.get(
    "LABELHUB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
DIALECTS = ["sqlite", "postgresql"]

_pg_problem: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _pg_problem
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as error:  # pragma: no cover - depends on the machine
        _pg_problem = f"PostgreSQL at {PG_ADMIN_URL} cannot be reached: {error}"


def require_postgresql() -> None:
    if _pg_problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true requires PostgreSQL: {_pg_problem}")
    pytest.skip(_pg_problem)


def pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


class DatabaseFactory:
    """Makes empty databases of one dialect and drops them afterwards."""

    def __init__(self, dialect: str, tmp: Path) -> None:
        self.dialect = dialect
        self.tmp = tmp
        self.made: list[str] = []

    def empty(self) -> str:
        name = f"lh_test_{uuid.uuid4().hex[:12]}"
        if self.dialect == "sqlite":
            return f"sqlite:///{self.tmp / (name + '.db')}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return pg_url(name)

    def drop_all(self) -> None:
        if not self.made:
            return
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            for name in self.made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.clear()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgresql()
    return str(request.param)


@pytest.fixture
def databases(dialect: str, tmp_path: Path) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(dialect, tmp_path)
    yield factory
    factory.drop_all()


def migrate_url(url: str) -> None:
    db = dbmod.Database(Settings(database_url=url))
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
    finally:
        db.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating each time would be slower)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate_url(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> Iterator[str]:
    """One migrated PostgreSQL database for the session; tables are emptied after each test."""
    require_postgresql()
    name = f"lh_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url(name)
    migrate_url(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_postgresql(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty database of the test's dialect."""
    if dialect == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "labelhub.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    url: str = request.getfixturevalue("pg_migrated")
    _truncate_postgresql(url)
    yield url
    _truncate_postgresql(url)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, db_timeout=2.0)


@pytest.fixture
def database(settings: Settings) -> Iterator[dbmod.Database]:
    db = dbmod.Database(settings)
    yield db
    db.close()


@pytest.fixture
def make_key(database: dbmod.Database) -> Callable[..., str]:
    """``make_key("admin")``, ``make_key("program:shop=write", "space:acct=view")``: a secret."""

    def make(*grants: str, name: str = "test") -> str:
        parsed = []
        for grant in grants:
            scope, _, role = grant.rpartition("=")
            if not _:
                scope, role = grant, "admin"
            parsed.append(keys.parse_grant(scope, role))
        return database.run_write(keys.create_key, name, parsed).secret

    return make


@pytest.fixture
def admin_key(make_key: Callable[..., str]) -> str:
    return make_key("admin", name="admin")


@pytest.fixture
async def client(settings: Settings, database: dbmod.Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://labelhub.test") as http:
        yield http


def property_profile(examples: int) -> Any:
    """Hypothesis settings of the property tests: reproducible (derandomized, no example
    database), no deadline (they talk HTTP to a real database), function-scoped fixtures allowed."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def table_rows(database: dbmod.Database, sql: str) -> list[tuple[object, ...]]:
    with database.transaction() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


@pytest.fixture
async def ah(client: httpx.AsyncClient, database: dbmod.Database, make_key: Callable[..., str]):  # type: ignore[no-untyped-def]
    """ActionHub client on program "shop" (created) with a write key for it."""
    from labelhub.actionhub import store as actionhub_store
    from tests.actionhub_helpers import ActionHub

    database.run_write(actionhub_store.create_program, "shop")
    return ActionHub(client, make_key("program:shop=write"), "shop", make_key)
