"""The write path: batched transactions that stay independent, committed before the answer."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Connection,
    Integer,
    bindparam,
    insert,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError

from labelhub.actionhub import store as actionhub_store
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from labelhub.core.errors import Conflict, Invalid, Unavailable
from labelhub.core.keys import now_ms
from labelhub.core.models import Program
from labelhub.core.sql import Bulk, Read, Write, bulk, read_together, unnested, write_together
from tests.conftest import table_rows


def _insert_then_fail(conn: Connection, program_id: str) -> None:
    conn.execute(insert(Program).values(program_id=program_id, name="x", created_at=now_ms()))
    raise Invalid("refused after writing")


def _insert_then_crash(conn: Connection, program_id: str) -> None:
    conn.execute(insert(Program).values(program_id=program_id, name="x", created_at=now_ms()))
    raise ZeroDivisionError("a bug")


def _program_ids(url: str) -> set[str]:
    fresh = dbmod.Database(Settings(database_url=url))
    try:
        with fresh.transaction() as conn:
            return set(conn.execute(select(Program.program_id)).scalars())
    finally:
        fresh.close()


async def test_concurrent_writes_are_batched_yet_independent(
    database: dbmod.Database, db_url: str
) -> None:
    await database.write(actionhub_store.create_program, "dup")

    async def one(i: int) -> str:
        if i % 5 == 1:
            await database.write(_insert_then_fail, f"bad-{i}")
        elif i % 5 == 2:
            await database.write(_insert_then_crash, f"crash-{i}")
        elif i % 5 == 3:
            await database.write(actionhub_store.create_program, "dup")
        else:
            await database.write(actionhub_store.create_program, f"p-{i}")
        return "ok"

    results = await asyncio.gather(*(one(i) for i in range(300)), return_exceptions=True)
    kinds: dict[str, int] = {}
    for result in results:
        name = result if isinstance(result, str) else type(result).__name__
        kinds[name] = kinds.get(name, 0) + 1
    assert kinds == {"ok": 120, "Invalid": 60, "ZeroDivisionError": 60, "Conflict": 60}

    # Visible to a fresh connection the moment write() returned: committed before answering.
    expected = {f"p-{i}" for i in range(300) if i % 5 in (0, 4)} | {"dup"}
    assert _program_ids(db_url) == expected
    assert database.writer.jobs >= 300 and database.writer.batches < database.writer.jobs


def _create_programs(conn: Connection, program_ids: list[str]) -> list[tuple[bool, object]]:
    """A shared writer function: one insert for all; "refuse-*" items are refused alone, and a
    "crash-*" item makes the whole call fail (the writer must then run the jobs one by one)."""
    if any(p.startswith("crash-") for p in program_ids):
        raise ZeroDivisionError("a bug")
    outcomes: list[tuple[bool, object]] = []
    kept = []
    for program_id in program_ids:
        if program_id.startswith("refuse-"):
            outcomes.append((False, Invalid(f"refused {program_id}")))
        else:
            kept.append(program_id)
            outcomes.append((True, len(program_ids)))
    if kept:
        conn.execute(
            insert(Program),
            [{"program_id": p, "name": "x", "created_at": now_ms()} for p in kept],
        )
    return outcomes


async def test_shared_jobs_run_as_one_call_and_fail_alone(
    database: dbmod.Database, db_url: str
) -> None:
    async def round_of(names: list[str]) -> dict[str, object]:
        results = await asyncio.gather(
            *(database.write_shared(_create_programs, n) for n in names), return_exceptions=True
        )
        return dict(zip(names, results, strict=True))

    # Neighbouring jobs are answered by shared calls (a call's answer here is its item count);
    # an item the call refuses fails alone and writes nothing.
    first = await round_of([f"refuse-{i}" if i % 10 == 3 else f"p-{i}" for i in range(100)])
    assert max(r for r in first.values() if isinstance(r, int)) > 1
    assert {n for n, r in first.items() if isinstance(r, Invalid)} == {
        f"refuse-{i}" for i in range(100) if i % 10 == 3
    }
    # A call that raises is replaced by one call per job, each in its own savepoint.
    second = await round_of([f"crash-{i}" if i % 10 == 7 else f"q-{i}" for i in range(100)])
    assert {n for n, r in second.items() if isinstance(r, ZeroDivisionError)} == {
        f"crash-{i}" for i in range(100) if i % 10 == 7
    }
    assert all(isinstance(r, int) for n, r in second.items() if n.startswith("q-"))
    assert _program_ids(db_url) == {f"p-{i}" for i in range(100) if i % 10 != 3} | {
        f"q-{i}" for i in range(100) if i % 10 != 7
    }


async def test_a_lone_failing_write_leaves_nothing(database: dbmod.Database, db_url: str) -> None:
    with pytest.raises(Invalid):
        await database.write(_insert_then_fail, "lonely")
    assert _program_ids(db_url) == set()
    await database.write(actionhub_store.create_program, "after")
    with pytest.raises(Conflict):
        await database.write(actionhub_store.create_program, "after")
    assert _program_ids(db_url) == {"after"}


async def test_unreachable_postgresql_is_unavailable_not_a_crash() -> None:
    db = dbmod.Database(
        Settings(database_url="postgresql://postgres@127.0.0.1:1/none", db_timeout=1)
    )
    try:
        with pytest.raises(Unavailable):
            await db.write(actionhub_store.create_program, "x")
        with pytest.raises(Unavailable):
            await db.read(actionhub_store.list_programs)
    finally:
        db.close()


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux /proc/locks")
def test_the_migration_lock_leaves_sqlites_own_locks_alone(tmp_path: Path) -> None:
    """After a migration, a WAL connection of this process still holds its POSIX lock on the
    database file. (The lock was an flock on the database file itself; closing that descriptor
    dropped SQLite's locks unseen, and a backfill CLI running beside the server ended in
    "database disk image is malformed".)"""
    path = tmp_path / "locks.db"
    db = dbmod.Database(Settings(database_url=f"sqlite:///{path}"))
    try:
        with dbmod.migration_lock(db) as conn:
            dbmod.upgrade(conn)
        inode = path.stat().st_ino
        with db.transaction() as conn:
            conn.execute(select(Program.id)).all()
            held = [
                line
                for line in Path("/proc/locks").read_text().splitlines()
                if f":{inode} " in line and f" {os.getpid()} " in line
            ]
        assert held, "this process holds no lock on the database file during a read"
    finally:
        db.close()


@pytest.mark.parametrize(("setting", "expected"), [(None, 1024 << 20), (0, 0), (64, 64 << 20)])
def test_sqlite_connections_map_the_database_as_configured(
    tmp_path: Path, setting: int | None, expected: int
) -> None:
    """Every pooled SQLite connection reads through a memory map of LABELHUB_SQLITE_MMAP_MB (1 GiB
    by default, 0: off)."""
    extra = {} if setting is None else {"sqlite_mmap_mb": setting}
    db = dbmod.Database(Settings(database_url=f"sqlite:///{tmp_path / 'mmap.db'}", **extra))
    try:
        with db.transaction() as first, db.transaction() as second:
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA mmap_size").scalar_one() == expected
    finally:
        db.close()


async def test_a_long_write_that_keeps_working_is_waited_for(db_url: str) -> None:
    """A batch longer than the timeout is not cut while its statements keep completing
    (a POST /events refreshing 1,000 users' pools on PostgreSQL takes ~4.5 s)."""
    import time

    from sqlalchemy import text

    db = dbmod.Database(Settings(database_url=db_url, db_timeout=0.5))
    try:

        def long_write(conn: Connection) -> int:
            for _ in range(15):  # 1.5 s, three timeouts, a statement every 0.1 s
                conn.execute(text("SELECT 1"))
                time.sleep(0.1)
            return 42

        assert await db.write(long_write) == 42
    finally:
        db.close()


async def test_writes_behind_a_writer_without_progress_are_withdrawn(db_url: str) -> None:
    import time

    db = dbmod.Database(Settings(database_url=db_url, db_timeout=0.5))
    try:
        stuck = asyncio.ensure_future(db.write(lambda conn: time.sleep(1.6)))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not take the write"):
            await db.write(lambda conn: None)
        assert time.monotonic() - started < 1.2
        with pytest.raises(Unavailable):
            await stuck
    finally:
        db.close()


async def test_quick_reads_run_on_the_loop_on_sqlite_only(
    database: dbmod.Database, dialect: str
) -> None:
    """A quick read (a page without a search) runs on the event loop's own thread on SQLite,
    where the hop to a read thread cost more than the read; any other read, and every read on
    PostgreSQL (it waits on the network), runs on a read thread. Errors come out alike."""

    def where(conn: Connection) -> int:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
        return threading.get_ident()

    loop_thread = threading.get_ident()
    assert await database.read(where) != loop_thread
    assert (await database.read(where, quick=True) == loop_thread) == (dialect == "sqlite")

    def fails(conn: Connection) -> None:
        raise Invalid("refused")

    for quick in (False, True):
        with pytest.raises(Invalid):
            await database.read(fails, quick=quick)


def test_a_read_holds_a_transaction_only_where_it_buys_something(
    database: dbmod.Database, dialect: str
) -> None:
    """SQLite: a read's statements share one snapshot (a write committed between them is not
    seen). PostgreSQL, READ COMMITTED, where each statement reads its own snapshot either way: a
    read sends no BEGIN or COMMIT, so between its statements its session is idle, not idle in a
    transaction (which would hold back vacuum), and the next statement sees the write."""
    database.run_write(actionhub_store.create_program, "p1")
    with database.transaction() as conn:

        def programs() -> int:
            return int(conn.execute(text("SELECT count(*) FROM programs")).scalar_one())

        assert programs() == 1
        database.run_write(actionhub_store.create_program, "p2")
        if dialect == "sqlite":
            assert programs() == 1
            return
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with database.transaction() as other:
            state = other.execute(
                text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one()
        assert state == "idle"
        assert programs() == 2


def test_reads_sent_together_answer_as_they_would_one_by_one(
    database: dbmod.Database, make_key: Callable[..., str]
) -> None:
    """``read_together`` (one pipeline on PostgreSQL) hands each read what ``conn.execute`` finds,
    only once all have answered, and a driver error comes out as SQLAlchemy's, as from
    ``conn.execute``."""
    secret = make_key("program:p1=write")
    database.run_write(actionhub_store.create_program, "p1")
    database.run_write(actionhub_store.create_program, "p2")
    with database.transaction() as conn:
        reads = keys.key_reads(conn, [secret, None, "not a key"])
        reads += actionhub_store.program_reads(conn, ["p2", "p1", "missing"])
        assert len(reads) == 2
        read_together(conn, reads)
        principal = keys.authenticate(conn, secret)
        assert principal is not None and principal.may_write_program("p1")
        assert not principal.may_read_program("p2")
        pks = {p: actionhub_store.program_pk(conn, p) for p in ("p1", "p2", "missing")}
    with database.transaction() as conn:
        by_one = {p: actionhub_store.program_pk(conn, p) for p in ("p1", "p2", "missing")}
        assert keys.authenticate(conn, secret) == principal
    assert pks == by_one and pks["missing"] is None and pks["p1"] != pks["p2"]

    seen: list[Any] = []
    with pytest.raises(DBAPIError), database.transaction() as conn:
        read_together(
            conn,
            [
                Read(text("SELECT 1 AS one"), {}, seen.append),
                Read(text("SELECT 1 FROM no_such_table"), {}, seen.append),
            ],
        )
    assert seen == []
    assert _program_ids(database.settings.database_url) == {"p1", "p2"}


def test_sqlite_reads_sent_together_give_rows_by_name_and_position_converted(
    tmp_path: Path,
) -> None:
    """SQLite: ``read_together`` runs its reads on the driver directly, and its rows are still
    ``conn.execute``'s: by position and by name, each value converted by its column's type (a
    JSON column decoded), its parameters by theirs; a plain ``text()``, whose columns SQLAlchemy
    does not know, through SQLAlchemy. (PostgreSQL's pipeline: the test above.)"""
    database = dbmod.Database(Settings(database_url=f"sqlite:///{tmp_path}/reads.db"))
    statement = select(
        type_coerce(bindparam("doc", type_=JSON), JSON).label("doc"),
        bindparam("n", type_=Integer).label("n"),
        literal_column("'plain'").label("word"),
    )
    params = {"doc": {"labels": ["a", "é"], "k": None}, "n": 3}
    found: list[Any] = []
    with database.transaction() as conn:
        read_together(
            conn,
            [
                Read(statement, params, found.append),
                Read(text("SELECT 2 AS two"), {}, found.append),
                Read(statement, params, found.append),
            ],
        )
        expected = conn.execute(statement, params).all()
    database.close()
    rows, plain, again = found
    assert rows == expected == again
    (row,) = rows
    assert row.doc == {"labels": ["a", "é"], "k": None} == row[0]
    assert (row.n, row.word) == (3, "plain")
    assert [tuple(r) for r in plain] == [(2,)]


async def test_sqlite_commits_reach_the_database_file_off_the_writers_commit(
    tmp_path: Path,
) -> None:
    """The writer's commits leave the WAL to the checkpointer, which copies them into the
    database file on its own thread; the writer itself checkpoints only past
    WRITER_AUTOCHECKPOINT pages. A copy of the database file without its WAL holds what was
    written once the checkpointer has run (with SQLite's own checkpoints, a small write stays in
    the WAL until 1,000 pages have gathered)."""
    import shutil
    import sqlite3
    import time

    path = tmp_path / "checkpoint.db"
    db = dbmod.Database(Settings(database_url=f"sqlite:///{path}"))
    try:

        def write(conn: Connection) -> None:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (v TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('written')"))

        await db.write(write)
        writer_conn = db.writer._conn
        assert writer_conn is not None
        dbapi = writer_conn.connection.dbapi_connection
        assert dbapi is not None
        (autocheckpoint,) = dbapi.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert autocheckpoint == dbmod.WRITER_AUTOCHECKPOINT
        checkpointer = db.writer.checkpointer
        assert checkpointer is not None
        copy = tmp_path / "copy.db"
        deadline = time.monotonic() + 10
        while True:
            shutil.copyfile(path, copy)  # the file alone: no -wal beside it
            reader = sqlite3.connect(copy)
            try:
                tables = reader.execute("SELECT name FROM sqlite_master").fetchall()
                rows = reader.execute("SELECT v FROM t").fetchall() if ("t",) in tables else []
            finally:
                reader.close()
            if rows == [("written",)]:
                break
            assert time.monotonic() < deadline, "the write never reached the database file"
            await asyncio.sleep(0.05)
        assert checkpointer.checkpoints >= 1
        thread = checkpointer._thread
        assert thread is not None and thread.is_alive()
    finally:
        db.close()
    assert not thread.is_alive()


async def test_a_write_takes_the_write_lock_before_it_reads(db_url: str, dialect: str) -> None:
    """Every write transaction holds the database's write lock (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: an advisory lock, so replicas take turns) before its first statement, its key
    and program reads included, which on PostgreSQL go with BEGIN and the lock in one round trip.
    Held elsewhere, the write waits for it; held past the timeout, the write is a 503 that wrote
    nothing."""
    import sqlite3

    import httpx
    import psycopg

    from labelhub.app import create_app

    db = dbmod.Database(Settings(database_url=db_url, db_timeout=0.5))
    try:
        db.run_write(actionhub_store.create_program, "shop")
        grant = keys.parse_grant("program:shop", "write")
        secret = db.run_write(keys.create_key, "w", [grant]).secret
        transport = httpx.ASGITransport(app=create_app(db.settings, db))
        http = httpx.AsyncClient(transport=transport, base_url="http://labelhub.test")
        headers = {"actionhub-key": secret, "program-id": "shop"}

        def put(label: str) -> Any:
            body = {"labels": [{"label": label, "weight": 1}]}
            return http.put("/labels", json=body, headers=headers)

        holder: Any
        if dialect == "sqlite":
            holder = sqlite3.connect(dbmod.sqlite_path(db_url), isolation_level=None)
            take, free = "BEGIN IMMEDIATE", "ROLLBACK"
        else:
            holder = psycopg.connect(db_url, autocommit=True)
            take = f"SELECT pg_advisory_lock({dbmod.WRITE_LOCK_ID})"
            free = f"SELECT pg_advisory_unlock({dbmod.WRITE_LOCK_ID})"
        try:
            holder.execute(take)
            refused = await put("refused")
            assert refused.status_code == 503, refused.text
            assert set(refused.json()) == {"detail"}

            waiting = asyncio.ensure_future(put("waited"))
            await asyncio.sleep(0.25)
            assert not waiting.done()
            if dialect == "postgresql":  # the writer's session waits on the lock itself
                waits = holder.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'labelhub' "
                    "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                ).fetchone()
                assert waits == (1,)
            holder.execute(free)
            assert (await waiting).status_code == 200
        finally:
            holder.close()
        found = await http.get("/labels", headers=headers)
        assert [x["label"] for x in found.json()["items"]] == ["waited"]
        await http.aclose()
    finally:
        db.close()


def test_writes_sent_together_leave_what_they_would_one_by_one(
    database: dbmod.Database,
) -> None:
    """``write_together`` (one pipeline on PostgreSQL) runs its writes in order, each over all
    its rows (a ``Bulk``'s too: on PostgreSQL one statement over the rows' arrays, JSON
    parameters sent as JSON), a later one seeing the earlier ones' rows; one without rows is
    left out; a driver error comes out as SQLAlchemy's, and its transaction leaves nothing."""
    add = text("INSERT INTO programs (program_id, name, created_at) VALUES (:p, :p, 0)")
    rename = text("UPDATE programs SET name = name || :suffix WHERE program_id = :p")
    # On PostgreSQL one statement over the rows' arrays; the JSON one read as JSON there.
    add_all = bulk(
        "INSERT INTO programs (program_id, name, created_at) VALUES (:p, :p, :at)",
        "INSERT INTO programs (program_id, name, created_at) SELECT v.p, v.p, v.at FROM {rows}",
        ("p", "text"),
        ("at", "bigint"),
    )
    renamed = Bulk(
        text("UPDATE programs SET name = name || coalesce(:suffix, '!') WHERE program_id = :p"),
        unnested(
            "UPDATE programs AS g SET name = g.name || coalesce(CAST(v.suffix AS json) #>> '{}', '!') "
            "FROM {rows} WHERE g.program_id = v.p",
            ("p", "text"),
            ("suffix", "text"),
        ),
        (("p", "text"), ("suffix", "text")),
        json_params=("suffix",),
    )
    with database.transaction(write=True) as conn:
        write_together(
            conn,
            [
                Write(add, [{"p": "p1"}, {"p": "p2"}]),
                Write(rename, []),
                Write(rename, [{"p": "p1", "suffix": "-a"}, {"p": "p1", "suffix": "-b"}]),
                Write(add_all, [{"p": "p3", "at": 1}, {"p": "p4", "at": 2}]),
                Write(
                    renamed,
                    [
                        {"p": "p2", "suffix": "-c"},
                        {"p": "p3", "suffix": None},
                    ],
                ),
                Write(renamed, []),
            ],
        )
    rows = table_rows(
        database, "SELECT program_id, name, created_at FROM programs ORDER BY program_id"
    )
    assert rows == [("p1", "p1-a-b", 0), ("p2", "p2-c", 0), ("p3", "p3!", 1), ("p4", "p4", 2)]

    with pytest.raises(DBAPIError), database.transaction(write=True) as conn:
        write_together(
            conn,
            [
                Write(add_all, [{"p": "p5", "at": 3}]),
                Write(text("UPDATE no_such_table SET x = 1"), [{}]),
            ],
        )
    assert _program_ids(database.settings.database_url) == {"p1", "p2", "p3", "p4"}


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)  # a backend to terminate
def test_a_shared_write_that_loses_its_connection_is_an_outage(
    database: dbmod.Database, admin_key: str
) -> None:
    """A shared write whose connection is lost mid-run (its PostgreSQL backend terminated) is an
    outage (503), not the error of touching the lost connection's state afterwards (the run
    empties what was read ahead for it: a PendingRollbackError, a 500, until this test)."""
    from labelhub.core.access import _guarded
    from labelhub.har.deps import SpaceAccess

    def lose(conn: Connection, items: list[Any]) -> list[Any]:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with database.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            other.commit()
        conn.exec_driver_sql("SELECT 1")
        return [None] * len(items)

    with pytest.raises(Unavailable), database.transaction(write=True) as conn:
        _guarded(lose)(conn, [(SpaceAccess(database, admin_key, "acct", True), None)])
