"""The Alembic chain: up, down, up again on both dialects, and no drift from the models."""

from __future__ import annotations

import random
from dataclasses import replace

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from labelhub.actionhub import fences
from labelhub.actionhub import store as actionhub_store
from labelhub.core import db as dbmod
from labelhub.core.config import Settings
from labelhub.core.models import SEARCH_OBJECTS, Base, is_search_object
from labelhub.har import store
from tests.conftest import DatabaseFactory
from tests.test_actionhub_deep_pages import chunks_hold_their_keys
from tests.test_actionhub_label_order import order_holds
from tests.test_har_listings import _search_labels_hold


def head_revision() -> str:
    head = dbmod.head_revision()
    assert head is not None
    return head


def _tables(db: dbmod.Database) -> set[str]:
    names = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
    return {n for n in names if not is_search_object(n)}


def _search_objects(db: dbmod.Database) -> set[str]:
    """The dialect's search structures that exist: FTS5 tables (and SQLite's index of the
    artifacts' sort keys) or pg_trgm and GIN indexes."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
            )
        else:
            rows = conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            )
        return {name for (name,) in rows if name in SEARCH_OBJECTS}


EXPECTED_SEARCH = {
    "sqlite": {
        "program_labels_fts",
        "assets_fts",
        "artifact_labels_fts",
        "ix_artifacts_id_modified_at",
    },
    "postgresql": {"ix_program_labels_trgm", "ix_assets_trgm", "ix_artifacts_search_labels"},
}


def test_up_down_up_and_no_drift(databases: DatabaseFactory) -> None:
    db = dbmod.Database(Settings(database_url=databases.empty()))
    try:
        expected = set(Base.metadata.tables)
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
            assert dbmod.current_revision(conn) == head_revision()
        assert _tables(db) == expected
        assert _search_objects(db) == EXPECTED_SEARCH[db.dialect]

        with dbmod.migration_lock(db) as conn:
            dbmod.downgrade(conn, "base")
            assert dbmod.current_revision(conn) is None
        assert _tables(db) == set()
        assert _search_objects(db) == set()

        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        assert _tables(db) == expected
        assert _search_objects(db) == EXPECTED_SEARCH[db.dialect]

        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, type_, parent: not is_search_object(name),
                },
            )
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


def test_artifact_label_arrays_are_filled_from_the_label_rows(databases: DatabaseFactory) -> None:
    """Migrations 0006 (PostgreSQL) and 0008 (SQLite) on a database that already holds labelled
    artifacts: each artifact's label set (an array; a text of tokens under FTS5) is filled from
    its label rows; the label filter finds the same artifacts before and after, in name and in
    lastModified order."""
    db = dbmod.Database(Settings(database_url=databases.empty()))
    query = store.ArtifactQuery(["a", "b"], None, None, 0, 50, "name", "ASC")
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn, "0005")

        def fill(conn: Connection) -> None:
            registries = [store.create_registry(conn, "acct", n, "DOCKER", "", []) for n in "xy"]
            for i, labels in enumerate([["a", "b"], ["a"], ["b", "c", "a"], [], ["b"]] * 2):
                store.register_artifact(conn, registries[i % 2], f"n{i}", None, None, labels)

        # The 0005 schema, written by today's store: no label sets yet (nor, on SQLite, their
        # index, which today's store writes to).
        sqlite = databases.dialect == "sqlite"
        with db.engine.begin() as conn:
            kind = "TEXT" if sqlite else "text[]"
            conn.exec_driver_sql(f"ALTER TABLE artifacts ADD COLUMN search_labels {kind}")
            if sqlite:
                conn.exec_driver_sql(
                    "CREATE VIRTUAL TABLE artifact_labels_fts USING fts5(search_labels, "
                    "content='', detail='none')"
                )
        db.run_write(fill)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE artifacts DROP COLUMN search_labels")
            if sqlite:
                conn.exec_driver_sql("DROP TABLE artifact_labels_fts")
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        _search_labels_hold(db)

        def listed(conn: Connection, names: str, q: store.ArtifactQuery) -> list[str]:
            registries = [store.find_registry(conn, "acct", n) for n in names]
            items, total = store.list_artifacts(conn, registries, q)
            assert total == len(items)
            return [item.artifact.name for item in items]

        assert db.run_read(listed, "xy", query) == ["n0", "n2", "n5", "n7"]
        newest = replace(query, sort_field="lastModified", sort_order="DESC")
        assert db.run_read(listed, "x", newest) == ["n2", "n0"]
        assert db.run_read(listed, "y", replace(newest, labels=["b"])) == ["n9", "n7", "n5"]
    finally:
        db.close()


def test_page_fences_are_cut_from_the_existing_keys(databases: DatabaseFactory) -> None:
    """Migration 0007 on a database that already holds labels and assets: each program's keys
    are cut into chunks that count them exactly, deep pages read the same rows as before, and
    later writes keep the chunks."""
    db = dbmod.Database(Settings(database_url=databases.empty()))
    labels = [f"label-{i:05d}" for i in range(10_000)]
    assets = [f"asset-{i:05d}" for i in range(9_000)]
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn, "0006")

        def fill(conn: Connection) -> None:
            for program in ("p", "q"):
                actionhub_store.create_program(conn, program)
                pk = actionhub_store.program_pk(conn, program)
                assert pk is not None
                actionhub_store.upsert_labels(conn, pk, [(n, 1.0) for n in labels])
                patches = [actionhub_store.AssetPatch(a, (None,), ()) for a in assets]
                actionhub_store.upsert_assets(conn, pk, patches)

        # The 0006 schema, written by today's store, which keeps chunks: no chunks yet.
        with db.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE page_fences (program_pk INTEGER, kind SMALLINT, fence TEXT, "
                "key_count BIGINT, PRIMARY KEY (program_pk, kind, fence))"
            )
        db.run_write(fill)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE page_fences")
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        for program in ("p", "q"):
            chunks_hold_their_keys(db, "program_labels", labels, program)
            chunks_hold_their_keys(db, "assets", assets, program)

        def deep(conn: Connection) -> tuple[list[str], list[str]]:
            pk = actionhub_store.program_pk(conn, "q")
            assert pk is not None
            got = actionhub_store.list_labels(conn, pk, None, 90, 100)
            assets_page = actionhub_store.list_assets(conn, pk, None, 86, 100)
            return [label for label, _ in got[0]], [a.asset_id for a in assets_page[0]]

        assert fences.FROM_OFFSET <= 8_500  # both pages come from the chunks
        assert db.run_read(deep) == (labels[8_900:9_000], assets[8_500:8_600])

        def more(conn: Connection) -> None:
            pk = actionhub_store.program_pk(conn, "q")
            assert pk is not None
            actionhub_store.upsert_labels(
                conn, pk, [(f"label-{i:05d}x", 2.0) for i in range(0, 10_000, 2)]
            )

        db.run_write(more)
        grown = sorted([*labels, *(f"label-{i:05d}x" for i in range(0, 10_000, 2))])
        chunks_hold_their_keys(db, "program_labels", grown, "q")
    finally:
        db.close()


def test_label_rowids_are_renumbered_in_label_order(databases: DatabaseFactory) -> None:
    """Migration 0010 on labels written in any order: on SQLite each program's rows come out
    numbered in label order within its band, the FTS5 index follows them, and searches, pages
    and later writes answer as before."""
    db = dbmod.Database(Settings(database_url=databases.empty()))
    rng = random.Random(10)
    names = {
        program: rng.sample(
            [f"{w}-{i:04d}" for w in ("ash", "elm", "oak") for i in range(900)], 2000
        )
        for program in ("p", "q")
    }
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn, "0009")
        with db.engine.begin() as conn:  # as the code before 0010 wrote them: rowids as they came
            for program, labels in names.items():
                conn.execute(
                    text(
                        "INSERT INTO programs (program_id, name, created_at, label_count) "
                        "VALUES (:p, :p, 0, :n)"
                    ),
                    {"p": program, "n": len(labels)},
                )
                pk = conn.execute(
                    text("SELECT id FROM programs WHERE program_id = :p"), {"p": program}
                ).scalar_one()
                conn.execute(
                    text(
                        "INSERT INTO program_labels "
                        "(program_pk, label, label_folded, weight, updated_at) "
                        "VALUES (:pk, :label, :folded, 1.0, 0)"
                    ),
                    [{"pk": pk, "label": label, "folded": label} for label in labels],
                )
            if db.dialect == "sqlite":
                conn.exec_driver_sql(
                    "INSERT INTO program_labels_fts (rowid, label_folded) "
                    "SELECT rowid, label_folded FROM program_labels"
                )
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        order_holds(db)

        def later(conn: Connection) -> None:
            pk = actionhub_store.program_pk(conn, "q")
            assert pk is not None
            actionhub_store.upsert_labels(conn, pk, [("elm-0450x", 1.0), ("aaa", 1.0)])

        db.run_write(later)
        names["q"] += ["elm-0450x", "aaa"]
        order_holds(db)
        for program, labels in names.items():
            pk = db.run_read(actionhub_store.program_pk, program)
            assert pk is not None
            for search in ("elm-", "-04", "ash-0899", "m-0", None):
                want = sorted(n for n in labels if search is None or search in n)
                rows, total = db.run_read(actionhub_store.list_labels, pk, search, 2, 40)
                assert total == len(want)
                assert [label for label, _ in rows] == want[40:80], (program, search)
    finally:
        db.close()


def test_label_updates_keep_the_label_index_across_0011(databases: DatabaseFactory) -> None:
    """Migration 0011, down to 0010 and up again, on labelled artifacts (none, one, a few, more
    than ``PAIRED`` labels): on SQLite a label update moves the artifact's entry in the label-set
    index from labelhub at head and from 0010's trigger below it, and either way the index
    answers as the label rows say and passes FTS5's integrity check."""
    db = dbmod.Database(Settings(database_url=databases.empty()))
    sets = [[], ["a"], ["a", "b"], ["b", "c", "a", "d", "e"], [f"l{i:02d}" for i in range(20)]]
    query = store.ArtifactQuery(["a", "b"], None, None, 0, 50, "name", "ASC")

    def fill(conn: Connection) -> None:
        registry = store.create_registry(conn, "acct", "r", "DOCKER", "", [])
        for i, labels in enumerate(sets):
            store.register_artifact(conn, registry, f"n{i}", None, None, labels)

    def relabel(conn: Connection, shift: int) -> None:
        registry = store.find_registry(conn, "acct", "r")
        for i, labels in enumerate(sets):
            moved = sorted({*labels[shift:], "a", "b"} if i % 2 else set(labels[shift:]))
            store.replace_labels(conn, registry, f"n{i}", None, moved)

    def both(conn: Connection) -> list[str]:
        items, _ = store.list_artifacts(conn, [store.find_registry(conn, "acct", "r")], query)
        return [item.artifact.name for item in items]

    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        db.run_write(fill)
        _search_labels_hold(db)
        assert db.run_read(both) == ["n2", "n3"]
        with dbmod.migration_lock(db) as conn:
            dbmod.downgrade(conn, "0010")
        with db.engine.begin() as conn:  # a label update as the code before 0011 made it
            conn.exec_driver_sql(
                "DELETE FROM artifact_labels WHERE artifact_id = "
                "(SELECT id FROM artifacts WHERE name = 'n3') AND label <> 'a'"
            )
            one = "r1x61" if db.dialect == "sqlite" else "{1:a}"
            conn.exec_driver_sql(f"UPDATE artifacts SET search_labels = '{one}' WHERE name = 'n3'")
        _search_labels_hold(db)
        assert db.run_read(both) == ["n2"]
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        db.run_write(relabel, 1)
        _search_labels_hold(db)
        assert db.run_read(both) == ["n1", "n3"]
    finally:
        db.close()


def test_label_index_entries_are_what_0009s_sql_built() -> None:
    """``store._indexed`` gives the entry 0009's SQL gave (kept in 0011 for its downgrade): the
    entry the index holds is deleted by naming it exactly. Tokens in text order, as labelhub
    writes them, and in any other order, as 0008's unordered ``group_concat`` may have left them;
    past ``store.PAIRED`` labels, the many-labels token; remembered or (long) not."""
    import importlib.util
    import sqlite3
    from pathlib import Path

    import labelhub.migrations.versions as versions

    path = (
        Path(versions.__file__).parent
        / "2026-11-25-0600_sqlite_label_index_updates_from_labelhub.py"
    )
    spec = importlib.util.spec_from_file_location("migration_0011", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    rng = random.Random(11)
    labels = ["a", "b b", "é", "Z", "prod", "x-y", "0", "~"]
    cases = [store._search_labels("sqlite", 3, labels[:n]) for n in range(1, len(labels) + 1)]
    for _ in range(20):
        tokens = store._search_labels("sqlite", 3, rng.sample(labels, rng.randint(2, 6))).split()
        rng.shuffle(tokens)
        cases.append(" ".join(tokens))
    many = [f"l{i:02d}" for i in range(store.PAIRED + 1)]
    cases.append(store._search_labels("sqlite", 3, many))
    long = store._search_labels("sqlite", 3, [f"{'q' * 100}{i}" for i in range(6)])
    assert len(long) > store._REMEMBERED_TOKENS
    cases.append(long)
    with sqlite3.connect(":memory:") as db:
        for tokens in cases:
            (expected,) = db.execute(f"SELECT {migration.indexed(':t')}", {"t": tokens}).fetchone()
            assert store._indexed(tokens) == expected, tokens
            assert store._indexed(tokens) == expected, tokens  # as remembered


def test_registry_labels_are_rebuilt_in_key_order_by_0012(databases: DatabaseFactory) -> None:
    """Migration 0012, up from 0011, down and up again, on registries with labels: on SQLite the
    table becomes one ``WITHOUT ROWID`` (and a rowid table again below 0012); on either dialect
    every registry's labels, their counts and their searches are what they were, and a label
    write after each step counts as before."""
    db = dbmod.Database(Settings(database_url=databases.empty()))
    sqlite = databases.dialect == "sqlite"

    def fill(conn: Connection) -> None:
        for name in "xy":
            registry = store.create_registry(conn, "acct", name, "DOCKER", "", [])
            for i in range(12):
                labels = [f"{name}-l{j}" for j in range(i % 5)] + (["Shared"] if i % 3 else [])
                store.register_artifact(conn, registry, f"n{i}", None, None, labels)

    def snapshot(conn: Connection) -> list[tuple[str, str, int]]:
        rows = conn.exec_driver_sql(
            "SELECT g.identifier, l.label, l.artifacts FROM registry_labels AS l "
            "JOIN registries AS g ON g.id = l.registry_id ORDER BY 1, 2"
        )
        return [tuple(row) for row in rows]

    def listed(conn: Connection, name: str, search: str | None) -> tuple[list[str], int]:
        return store.list_registry_labels(
            conn, store.find_registry(conn, "acct", name), search, 0, 3
        )

    def without_rowid() -> bool:
        with db.engine.connect() as conn:
            (sql,) = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'registry_labels'"
            ).one()
            return bool(sql.endswith("WITHOUT ROWID"))

    def relabel(conn: Connection, labels: list[str]) -> None:
        store.replace_labels(conn, store.find_registry(conn, "acct", "x"), "n0", None, labels)

    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn, "0011")
        db.run_write(fill)
        before = db.run_read(snapshot)
        searches = [db.run_read(listed, n, s) for n in "xy" for s in (None, "l1", "SHA", "zz")]
        assert searches[0] == (["Shared", "x-l0", "x-l1"], 5)
        assert (sqlite and without_rowid()) is False
        for step in ("head", "0011", "head"):
            with dbmod.migration_lock(db) as conn:
                if step == "head":
                    dbmod.upgrade(conn)
                else:
                    dbmod.downgrade(conn, step)
            if sqlite:
                assert without_rowid() is (step == "head")
            assert db.run_read(snapshot) == before
            assert [db.run_read(listed, n, s) for n in "xy" for s in (None, "l1", "SHA", "zz")] == (
                searches
            )
            db.run_write(relabel, ["Shared", "x-new"])
            assert ("x", "x-new", 1) in db.run_read(snapshot)
            db.run_write(relabel, [])
            assert db.run_read(snapshot) == before
    finally:
        db.close()
