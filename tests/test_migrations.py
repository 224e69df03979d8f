"""The Alembic chain: up, down, up again on both dialects, and no drift from the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from labelhub.core import db as dbmod
from labelhub.core.config import Settings
from labelhub.core.models import Base
from tests.conftest import DatabaseFactory


def head_revision() -> str:
    head = dbmod.head_revision()
    assert head is not None
    return head


def _tables(db: dbmod.Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_up_down_up_and_no_drift(databases: DatabaseFactory) -> None:
    db = dbmod.Database(Settings(database_url=databases.empty()))
    try:
        expected = set(Base.metadata.tables)
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
            assert dbmod.current_revision(conn) == head_revision()
        assert _tables(db) == expected

        with dbmod.migration_lock(db) as conn:
            dbmod.downgrade(conn, "base")
            assert dbmod.current_revision(conn) is None
        assert _tables(db) == set()

        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        assert _tables(db) == expected

        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
    finally:
        db.close()


def test_upgrade_is_idempotent(databases: DatabaseFactory) -> None:
    db = dbmod.Database(Settings(database_url=databases.empty()))
    try:
        for _ in range(2):
            with dbmod.migration_lock(db) as conn:
                dbmod.upgrade(conn)
                assert dbmod.current_revision(conn) == head_revision()
    finally:
        db.close()


def test_sqlite_pragmas_hold_on_every_connection(databases: DatabaseFactory) -> None:
    if databases.dialect != "sqlite":
        return
    db = dbmod.Database(Settings(database_url=databases.empty(), db_timeout=3))
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 3000
    finally:
        db.close()
