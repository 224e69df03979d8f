"""SQL fragments whose best spelling differs between the two dialects, and reads sent together."""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import (
    JSON,
    Connection,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.elements import ColumnElement

DIALECTS = ("sqlite", "postgresql")


class _JSONList(TypeDecorator[Any]):
    """SQLite: a list bound as one JSON text (``one_of``). Non-ASCII characters as they are:
    ``json_each`` reads them back as written, where an escaped pair of surrogates is not
    decoded as one character by every SQLite."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.dumps(list(value), ensure_ascii=False)


_JSON_LIST = _JSONList()


def one_of(column: Any, name: str, element_type: Any, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the list bound as ``name``: one statement whatever the list's
    length, which an expanding ``IN`` is not (rendered again on every call, and a statement for
    each length).

    PostgreSQL: ``= ANY`` of one array parameter. An expanding ``IN`` is prepared and planned
    once for each length, and its generic plan builds the array from its parameters for every
    row it tests: a write batch of W2 read 32 artifacts' labels in 2.2 ms that way, 0.7 with one
    array (a table without statistics yet, scanned); 0.07 against 0.14 once statistics send both
    to the index. SQLite: ``IN`` the values of one JSON array (``json_each``), which SQLite
    plans as it does an ``IN`` list (each value looked up in the index); W2's batch of 32 read
    its artifacts' labels in 130 -> 105 us.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(element_type)))  # type: ignore[no-any-return]
    values: Any = select(literal_column("value")).select_from(
        func.json_each(bindparam(name, type_=_JSON_LIST))
    )
    return column.in_(values)  # type: ignore[no-any-return]


_BEGIN = "labelhub deferred begin"


def defer_begin(conn: Connection, statements: tuple[str, ...]) -> None:
    """Open the transaction with ``statements`` (BEGIN, the write lock) sent together with its
    first statement, not in a round trip of their own (the PostgreSQL writer, ``make_engine``).
    W2 on PostgreSQL at 16 connections: a write batch 2.8 -> 2.6 ms, p99 8.6 -> 8.0 ms."""
    conn.info[_BEGIN] = statements


def deferred_begin(conn: Connection) -> tuple[str, ...]:
    """The statements ``defer_begin`` left, once: whoever takes them sends them first."""
    return conn.info.pop(_BEGIN, ())  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Read:
    """A read that depends on no other: ``take(rows)`` receives its rows (attribute access)."""

    statement: Executable
    params: dict[str, Any]
    take: Callable[[Sequence[Any]], None]


# Pipeline mode needs libpq 14 or later (the binary wheel brings its own).
_PIPELINES = psycopg.Pipeline.is_supported()
_compiled: dict[tuple[int, str, str], tuple[Executable, Compiled]] = {}


def _compile(statement: Executable, dialect: Dialect) -> Compiled:
    # The statements are module constants: compiled once each (holding the statement keeps its
    # id from being reused).
    key = (id(statement), dialect.name, dialect.paramstyle)
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = (statement, statement.compile(dialect=dialect))  # type: ignore[attr-defined]
    return found[1]


def read_together(conn: Connection, reads: Sequence[Read]) -> None:
    """Run independent reads in the current transaction; on PostgreSQL in one round trip.

    PostgreSQL: psycopg's pipeline mode sends every statement and one Sync, then reads the
    answers, so a write batch's BEGIN, write lock (``defer_begin``), key and program (or
    registry) cost one wait for the server, not one each (each wait is two wake-ups on a loaded
    machine: the backend's, then the writer's, which must also win the GIL back from the event
    loop). SQLAlchemy cannot read a result of a statement sent in pipeline mode, so these go to
    psycopg directly, compiled by SQLAlchemy; a driver error is raised as SQLAlchemy's, as
    ``conn.execute`` would. SQLite: one after the other (a statement there is a function call,
    not a round trip), run by the driver directly (``_named_rows``). Each ``take`` is called once
    every read has answered.
    """
    answers: list[Sequence[Any]]
    if conn.dialect.name == "sqlite":
        answers = [_named_rows(conn, read.statement, read.params) for read in reads]
    elif not _pipelines(conn, len(reads)):
        answers = [conn.execute(read.statement, read.params).all() for read in reads]
    else:
        answers = _pipelined(conn, reads)
    for read, rows in zip(reads, answers, strict=True):
        read.take(rows)


def _pipelines(conn: Connection, statements: int) -> bool:
    """Whether these statements go in one pipeline: on PostgreSQL (libpq able), when there is
    more than one to send, the transaction's deferred opening (``defer_begin``) counted."""
    return (
        conn.dialect.name == "postgresql" and _PIPELINES and (statements > 1 or _BEGIN in conn.info)
    )


def _pipelined(conn: Connection, reads: Sequence[Read]) -> list[Sequence[Any]]:
    cursors = []
    params = [read.params for read in reads]
    with _pipeline(conn, [read.statement for read in reads], params) as (raw, compiled):
        for read, statement in zip(reads, compiled, strict=True):
            cursor = raw.cursor(row_factory=namedtuple_row)
            cursor.execute(str(statement), statement.construct_params(read.params))
            cursors.append(cursor)
    with _driver_errors(compiled, params):
        return [cursor.fetchall() for cursor in cursors]


@dataclass(frozen=True)
class Bulk:
    """One statement over many rows: ``executemany`` on SQLite (a statement there is a function
    call); on PostgreSQL one statement over ``unnest``ed arrays, since psycopg's ``executemany``
    still runs a statement per row, each with its own Bind and Execute on the server and its own
    round of psycopg's Python (531,000 of them to fold 5,000 users). W2's label writes this way:
    the writer's CPU 101 -> 50 us a request, the server's 74 -> 51 (bench/README.md).
    ``arrays``: the per-row parameters, as (name, PostgreSQL array type); shared parameters
    are passed as keywords to ``run``. ``json_params``: per-row values sent to PostgreSQL as
    JSON text in a ``text[]`` for the statement to cast (SQLite's statement binds its own)."""

    sqlite: Any
    postgresql: Any
    arrays: tuple[tuple[str, str], ...]
    json_params: tuple[str, ...] = ()

    def columns(self, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
        """PostgreSQL: the rows' parameters as one array each."""
        return {
            name: [json.dumps(r[name]) for r in rows]
            if name in self.json_params
            else [r[name] for r in rows]
            for name, _ in self.arrays
        }

    def run(self, conn: Connection, rows: Sequence[dict[str, Any]], **shared: Any) -> None:
        if not rows:
            return
        if conn.dialect.name == "postgresql":
            conn.execute(self.postgresql, {**self.columns(rows), **shared})
        else:
            conn.execute(self.sqlite, [{**row, **shared} for row in rows])


def bulk(
    sqlite: str, postgresql: str, *arrays: tuple[str, str], json_params: tuple[str, ...] = ()
) -> Bulk:
    """A ``Bulk`` whose PostgreSQL statement reads ``{rows}`` (``unnested``). SQLite's binds
    ``json_params`` as JSON."""
    sqlite_statement = text(sqlite)
    if json_params:
        sqlite_statement = sqlite_statement.bindparams(
            *(bindparam(name, type_=JSON) for name in json_params)
        )
    return Bulk(sqlite_statement, unnested(postgresql, *arrays), arrays, json_params)


def unnested(postgresql: str, *arrays: tuple[str, str]) -> Any:
    """PostgreSQL: the statement with ``{rows}`` read as ``unnest(CAST(:a AS t[]), ...) AS
    v(a, ...)``, a row of the arrays' elements each."""
    unnest = "unnest({}) AS v({})".format(
        ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in arrays),
        ", ".join(f'"{name}"' for name, _ in arrays),
    )
    return text(postgresql.replace("{rows}", unnest))


@dataclass(frozen=True)
class Write:
    """A statement run once for each of ``rows`` (``executemany``), or a ``Bulk`` (on
    PostgreSQL, one statement for all of them); nothing read back."""

    statement: Executable | Bulk
    rows: list[dict[str, Any]]


def write_together(conn: Connection, writes: Sequence[Write]) -> None:
    """Run writes in order in the current transaction; on PostgreSQL in one round trip.

    As ``read_together``: psycopg's pipeline mode, every statement of every write and one Sync,
    where ``conn.execute`` waits for the server once per write. A write without rows is left
    out. W2 on PostgreSQL, each request replacing an artifact's 5 labels: dropped and added
    labels, the registry's label counts up and down, unused labels, the artifacts' own row, 6
    waits in one, and (``Bulk``) 6 statements, not one per row (bench/README.md). SQLite: the
    rows go to the driver as they are (``_write_directly``). The statements take plain
    parameters (no types that convert them, no expanding lists).
    """
    writes = [write for write in writes if write.rows]
    if conn.dialect.name == "sqlite":
        _write_directly(conn, writes)
        return
    statements = [_postgresql(w.statement) for w in writes]
    params: list[Any] = [
        w.statement.columns(w.rows) if isinstance(w.statement, Bulk) else w.rows for w in writes
    ]
    if not _pipelines(conn, len(writes)):
        for statement, rows in zip(statements, params, strict=True):
            conn.execute(statement, rows)
        return
    with _pipeline(conn, statements, params) as (raw, compiled):
        cursor = raw.cursor()
        for write, rows, sql in zip(writes, params, compiled, strict=True):
            if isinstance(write.statement, Bulk):  # rows: its arrays
                cursor.execute(str(sql), sql.construct_params(rows))
            else:
                cursor.executemany(str(sql), [sql.construct_params(r) for r in rows])


def _postgresql(statement: Executable | Bulk) -> Executable:
    return statement.postgresql if isinstance(statement, Bulk) else statement


def _sqlite(statement: Executable | Bulk) -> Executable:
    return statement.sqlite if isinstance(statement, Bulk) else statement


# SQLite's driver takes ``:name`` parameters from a dict as it is.
_NAMED = sqlite.dialect(paramstyle="named")


_checked: set[int] = set()  # statements _direct has found fit (held by _compile's cache)


def _direct(statement: Executable) -> Any:
    """SQLite: the statement compiled for the driver (``:name`` parameters). Refused when its
    parameters would be expanded or its rows' values converted, which only SQLAlchemy does."""
    compiled: Any = _compile(statement, _NAMED)
    if id(statement) not in _checked:
        converted = [
            name
            for name, _, _, type_ in compiled._result_columns
            if type_._cached_result_processor(_NAMED, None) is not None
        ]
        if compiled.post_compile_params or converted:
            raise TypeError(f"not a statement for the driver directly: {compiled.string}")
        _checked.add(id(statement))
    return compiled


def _direct_sql(statement: Executable) -> str:
    """SQLite: the statement's SQL for the driver with the rows as they are (``:name``)."""
    compiled = _direct(statement)
    if compiled._bind_processors:
        # Neither path of write_together converts parameters (nor does psycopg's).
        raise TypeError(f"write_together takes plain parameters only: {compiled.string}")
    return compiled.string  # type: ignore[no-any-return]


def rows_of(conn: Connection, statement: Executable, params: dict[str, Any]) -> Sequence[Any]:
    """The statement's rows, for reading by position (``row[0]``, unpacking), not by name.

    SQLite: the driver's tuples, the statement run by the driver directly (its parameters
    converted as SQLAlchemy would, its columns needing no conversion). SQLAlchemy's execution
    and rows cost more than SQLite's work for the reads of a W2 write batch: its 32 artifacts
    in 79 -> 52 us, their 160 labels in 105 -> 70 (both with ``one_of``'s JSON list; with an
    expanding ``IN`` through SQLAlchemy, 106 and 130; bench/README.md). A driver error is raised
    as SQLAlchemy's. PostgreSQL: ``conn.execute``.
    """
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, params).all()
    compiled = _direct(statement)
    return _driver_rows(conn, compiled.string, compiled._bind_processors, params)


def _driver_rows(
    conn: Connection, sql: str, processors: dict[str, Callable[[Any], Any]], params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """SQLite: ``sql``'s rows as the driver gives them, its parameters converted first as
    SQLAlchemy would (``processors``: the compiled statement's); a driver error is raised as
    SQLAlchemy's."""
    if processors:
        params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
    raw: Any = conn.connection.dbapi_connection
    with _driver_errors([sql], params, sqlite3.Error):
        return raw.execute(sql, params).fetchall()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Shape:
    """SQLite: how a statement's rows come back from the driver (``_named_rows``)."""

    sql: str
    binds: dict[str, Callable[[Any], Any]]
    row: Callable[..., Any]  # a named tuple of the columns
    converts: tuple[Callable[[Any], Any] | None, ...] | None  # each column's, if any column's


_shapes: dict[int, _Shape | None] = {}  # held by _compile's cache, as _checked


def _shape(statement: Executable) -> _Shape | None:
    """The statement's ``_Shape``; None for one only SQLAlchemy runs (an expanding parameter,
    columns without a name of their own, or columns it does not know: a plain ``text()``)."""
    if id(statement) in _shapes:
        return _shapes[id(statement)]
    compiled: Any = _compile(statement, _NAMED)
    names = [keyname for keyname, *_ in compiled._result_columns]
    shape = None
    if (
        names
        and not compiled.post_compile_params
        and all(name.isidentifier() and not name.startswith("_") for name in names)
        and len(set(names)) == len(names)
    ):
        converts = tuple(
            type_._cached_result_processor(_NAMED, None)
            for _, _, _, type_ in compiled._result_columns
        )
        shape = _Shape(
            compiled.string,
            dict(compiled._bind_processors),
            namedtuple("Row", names),
            converts if any(converts) else None,
        )
    _shapes[id(statement)] = shape
    return shape


def _named_rows(conn: Connection, statement: Executable, params: dict[str, Any]) -> Sequence[Any]:
    """SQLite: the statement's rows as ``conn.execute(...).all()`` has them (by name and by
    position, values converted as SQLAlchemy converts them), run by the driver directly:
    SQLAlchemy's execution of a write batch's key and registry reads cost W2 0.2 ms a batch of
    32 requests. A driver error is raised as SQLAlchemy's."""
    shape = _shape(statement)
    if shape is None:
        return conn.execute(statement, params).all()
    found = _driver_rows(conn, shape.sql, shape.binds, params)
    row, converts = shape.row, shape.converts
    if converts is None:
        return [row._make(values) for values in found]  # type: ignore[attr-defined]
    return [
        row(*(v if c is None else c(v) for c, v in zip(converts, values, strict=True)))
        for values in found
    ]


def run_directly(conn: Connection, statement: str) -> None:
    """SQLite: a statement without parameters or rows (``BEGIN``) sent to the driver as it is;
    a driver error is raised as SQLAlchemy's, as ``conn.exec_driver_sql`` would."""
    raw: Any = conn.connection.dbapi_connection
    with _driver_errors([statement], None, sqlite3.Error):
        raw.execute(statement)
    # As after statements run through SQLAlchemy: the writer's watch sees progress.
    conn.dispatch.after_cursor_execute(conn, None, statement, None, None, False)


def _write_directly(conn: Connection, writes: Sequence[Write]) -> None:
    """SQLite: each write's rows to the driver's ``executemany`` as they are. Through
    ``conn.execute``, SQLAlchemy rebuilt every row's parameters (a W2 batch of 32 label
    replacements writes about 430 rows): that batch's transaction 3.83 -> 3.0 ms this way
    (bench/README.md). A driver error is raised as SQLAlchemy's, as ``conn.execute`` would."""
    if not writes:
        return
    raw: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        for write in writes:
            sql = _direct_sql(_sqlite(write.statement))
            with _driver_errors([sql], write.rows, sqlite3.Error):
                raw.executemany(sql, write.rows)
    finally:
        raw.close()
    # As after statements run through SQLAlchemy: the writer's watch sees progress (once).
    conn.dispatch.after_cursor_execute(conn, raw, sql, write.rows, None, True)


@contextmanager
def _pipeline(
    conn: Connection, statements: list[Executable], params: list[Any]
) -> Iterator[tuple[Any, list[Compiled]]]:
    """The connection's psycopg connection in pipeline mode, the transaction's deferred opening
    sent first, and the statements compiled; a driver error is raised as SQLAlchemy's."""
    raw: Any = conn.connection.dbapi_connection
    compiled = [_compile(statement, conn.dialect) for statement in statements]
    begin = deferred_begin(conn)
    with _driver_errors(compiled, params), raw.pipeline():
        for opening in begin:
            raw.execute(opening, prepare=False)
        yield raw, compiled


@contextmanager
def _driver_errors(
    statements: Sequence[Any], params: Any, base: type[Exception] = psycopg.Error
) -> Iterator[None]:
    """A driver error (``base``: psycopg's, or sqlite3's on the direct paths) raised as
    SQLAlchemy's, as ``conn.execute`` would; ``statements`` rendered only then."""
    try:
        yield
    except base as error:
        raise DBAPIError.instance(
            "; ".join(str(statement) for statement in statements), params, error, base
        ) from error
