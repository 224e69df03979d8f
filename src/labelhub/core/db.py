"""Engines per dialect, transactions, the batching writer, ping and migrations.

Access path: synchronous SQLAlchemy Core on the stock drivers (``sqlite3``, ``psycopg``), run off
the event loop. Reads run in the threadpool, each in its own short transaction. Writes go to one
writer thread per process that folds the transactions waiting at that moment into one database
transaction (a savepoint each, so one request's failure does not touch the others) and commits
once for all of them before any of their callers is answered. On SQLite that shares the cost of a
commit (the WAL append) among everyone who was waiting; on PostgreSQL it saves round trips.

A unit of work is a plain function ``fn(conn, *args)``; it may raise ``LabelhubError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from labelhub.core import keys, sql, tidy
from labelhub.core.config import Settings, database_dialect
from labelhub.core.errors import LabelhubError, Unavailable
from labelhub.core.memo import committed, forget

log = logging.getLogger("labelhub.db")

P = ParamSpec("P")
T = TypeVar("T")

# Any constant unlikely to collide with another application's advisory locks: "labelhub".
MIGRATION_LOCK_ID = 0x6C6162656C687562
# Taken by every PostgreSQL write transaction: write batches of all processes go one at a time.
WRITE_LOCK_ID = MIGRATION_LOCK_ID + 1
# Attempts at a batch that PostgreSQL aborted for a deadlock or a serialization failure.
TRANSIENT_RETRIES = 5
# Most deadlines a write waits for a writer that keeps making progress (a long batch, a backlog).
PATIENCE = 12
# SQLite: the WAL length (pages) at which the writer checkpoints in its own commit, a backstop for
# when the checkpointer (``Checkpointer``) cannot keep the WAL short; SQLite's default is 1,000.
WRITER_AUTOCHECKPOINT = 10_000
# SQLite: the least time between two of the checkpointer's checkpoints (seconds).
CHECKPOINT_GAP = 0.05


def sqlalchemy_url(url: str) -> str:
    """Translate a labelhub database URL into the SQLAlchemy URL of the driver we use."""
    dialect = database_dialect(url)
    if dialect == "sqlite":
        return "sqlite+pysqlite:///" + url[len("sqlite:///") :]
    rest = url.split(":", 1)[1]
    return "postgresql+psycopg:" + rest


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite:///") :])


def _is_transient(error: BaseException) -> bool:
    """PostgreSQL aborted the transaction to break a deadlock or a serialization conflict."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) in {"40001", "40P01"}


# SQLite reports both outages and schema faults as OperationalError; these are the outages.
SQLITE_OUTAGES = ("locked", "busy", "unable to open", "disk i/o", "readonly", "disk is full")


def _is_outage(error: BaseException) -> bool:
    """The database could not be reached or gave up waiting (not a fault of the request)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError) or _is_transient(error):
        return False
    if type(error.orig).__module__.startswith("sqlite3"):
        text = str(error.orig).lower()
        return any(mark in text for mark in SQLITE_OUTAGES)
    return True


def make_engine(settings: Settings) -> Engine:
    dialect = database_dialect(settings.database_url)
    url = sqlalchemy_url(settings.database_url)
    if dialect == "sqlite":
        path = sqlite_path(settings.database_url)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.db_timeout},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_timeout=settings.db_timeout,
        )
        busy_ms = int(settings.db_timeout * 1000)
        mmap_bytes = settings.sqlite_mmap_mb * 1024 * 1024

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide where transactions begin (savepoints work).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            # A search or filter with thousands of matches reads a row per match, spread over
            # the whole table: through the OS's page cache mapped in place, not copied into a
            # 2 MB cache per connection (end to end at 1M, p50: W5 search_common 31.2 -> 26 ms,
            # W6 filter_common 15.4 -> 12.3 ms; bench/README.md). The cost: docs/reliability.md.
            cur.execute(f"PRAGMA mmap_size={mmap_bytes}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the write lock up front, so they wait (busy_timeout) instead of
            # failing when another writer committed between their read and their write. Sent
            # to the driver directly (``sql.run_directly``): through ``exec_driver_sql`` the
            # statement cost a W2 write batch 80 us of SQLAlchemy's execution machinery.
            write = conn.get_execution_options().get("labelhub_write")
            sql.run_directly(conn, "BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    timeout = max(1, math.ceil(settings.db_timeout))
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_timeout,
        connect_args={"connect_timeout": timeout, "application_name": "labelhub"},
    )
    lock_ms = int(settings.db_timeout * 1000)
    # One round trip for all; set_config(..., true) is SET LOCAL, and a volatile subquery is
    # evaluated before the lock is asked for.
    #
    # A write transaction's prepared statements run on their generic plans (planned once per
    # connection), not on a plan made again for each execution's values: PostgreSQL keeps
    # re-planning a statement whose custom plans cost less than its generic one, which a
    # statement over an array of a few rows always does (the generic plan guesses 10), so W2's
    # batches of 8 at 16 connections re-planned two statements every batch (their named
    # artifacts, their touch): 17 % of the server's CPU. Writes are key lookups and joins on
    # keys; their generic plans are the custom ones' (bench/README.md: those two statements
    # for 8 artifacts 576-636 -> 473-507 us; W1, W4 and the event fold unchanged; W2 end to end
    # gained less than this machine's swings at that load).
    take_lock = (
        f"SELECT pg_advisory_xact_lock({WRITE_LOCK_ID}) FROM "
        f"(SELECT set_config('lock_timeout', '{lock_ms}', true), "
        "set_config('plan_cache_mode', 'force_generic_plan', true)) AS settings"
    )

    @event.listens_for(engine, "begin")
    def _postgresql_begin(conn: Connection) -> None:
        # One write transaction at a time across every labelhub process on this database, as
        # SQLite's BEGIN IMMEDIATE gives: a batch folds many requests, so batches of two replicas
        # would otherwise lock rows (labels, kept counts) in different orders and deadlock, each
        # deadlock costing PostgreSQL's deadlock_timeout (1 s) before a retry. Waiting for the
        # lock is bounded by the database timeout (lock_timeout: 503, not a hang).
        options = conn.get_execution_options()
        if not options.get("labelhub_write"):
            return
        if options.get("isolation_level") == "AUTOCOMMIT":
            # The writer's own connection (``Writer._connection``): psycopg sends no BEGIN of
            # its own in autocommit mode, so the BEGIN and the lock go with the transaction's
            # first statement: in the pipeline of a batch's key and program (or registry)
            # reads (``sql.read_together``), else as one query of two statements just before
            # it (below). Either way the server takes the lock before that statement runs.
            # COMMIT and ROLLBACK still follow the server's transaction: psycopg's commit() and
            # rollback() send them whenever one is open, whatever the autocommit setting.
            sql.defer_begin(conn, ("BEGIN", take_lock))
        else:
            conn.exec_driver_sql(take_lock)

    @event.listens_for(engine, "before_cursor_execute")
    def _postgresql_begun(conn: Connection, cursor: Any, *_: Any) -> None:
        begin = sql.deferred_begin(conn)
        if begin:  # the simple query protocol: several statements, never prepared
            cursor.connection.execute("; ".join(begin))

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def _postgresql_ended(conn: Connection) -> None:
        # A transaction that ran no statement never began on the server: nothing to send.
        if not conn.invalidated:  # (an invalidated connection's info goes with it)
            sql.deferred_begin(conn)

    return engine


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: Any  # the arguments after ``conn``; for a shared job, the one item it adds to the list
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    shared: bool = False
    outcome: tuple[bool, Any] = field(default=(False, None))
    state: str = "queued"  # -> "running" -> done; or "abandoned" by a caller that gave up
    timer: asyncio.TimerHandle | None = None


def _deliver(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in answers:
        if future.done():  # cancelled by its caller, or given up on as an outage
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _groups(batch: list[_Job]) -> Iterator[list[_Job]]:
    """The batch in order, neighbouring shared jobs of the same function taken together."""
    group: list[_Job] = []
    for job in batch:
        if group and not (job.shared and group[0].shared and job.fn is group[0].fn):
            yield group
            group = []
        group.append(job)
    if group:
        yield group


def _run_group(conn: Connection, group: list[_Job]) -> list[tuple[bool, Any]]:
    """Run one job, or a group of shared jobs with one call: one outcome per job.

    A shared function takes the list of its jobs' items and answers one ``(ok, value)`` per
    item; a refusal it reports for one item (``ok`` false) must have written nothing for it.
    """
    first = group[0]
    if not first.shared:
        return [(True, first.fn(conn, *first.args))]
    outcomes: list[tuple[bool, Any]] = first.fn(conn, [job.args for job in group])
    return outcomes


class Checkpointer:
    """SQLite: copies the WAL back into the database file on a thread of its own.

    SQLite checkpoints inside a commit once the WAL holds 1,000 pages: that commit copies them
    and syncs the file before its callers hear back, and every write queued behind it waits too
    (W1 at 16 connections, p99 9.1-9.7 ms with those checkpoints, 5.5 without; bench/README.md).
    Here the writer's commits only nudge this thread, which runs a passive checkpoint (it never
    waits for a lock, and readers and the writer go on meanwhile) at most every
    ``CHECKPOINT_GAP`` seconds. The writer's own connection checkpoints only past
    ``WRITER_AUTOCHECKPOINT`` pages: the WAL starts over from its beginning only when a write
    transaction begins with every page already copied, which a busy writer may not leave time
    for; then that checkpoint has little left to copy.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._due = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        """Start the thread (``Writer._ensure_started``, under the writer's lock)."""
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(
                target=self._run, name="labelhub-checkpointer", daemon=True
            )
            self._thread.start()

    def nudge(self) -> None:
        """Pages were committed: checkpoint soon."""
        self._due.set()

    def _run(self) -> None:
        conn: Any = None
        while True:
            self._due.wait()
            if self._stopping:
                break
            self._due.clear()
            try:
                if conn is None:
                    conn = self._engine.raw_connection()  # autocommit (make_engine)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except Exception as error:  # the next commit asks again; the backstop holds
                log.warning("WAL checkpoint failed: %s", error)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                    conn = None
            time.sleep(CHECKPOINT_GAP)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def stop(self) -> None:
        """Stop the thread (``Writer.stop``, once the writer has stopped)."""
        self._stopping = True
        self._due.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


class Writer:
    """One thread that runs every write of this process, several transactions per commit."""

    def __init__(self, db: Database, batch_max: int, deadline: float, tidy_idle: float = 0) -> None:
        self._db = db
        self._batch_max = batch_max
        self._deadline = deadline
        # SQLite: seconds idle after a write before the search indexes are tidied (``tidy``).
        self._tidy_idle = tidy_idle if db.dialect == "sqlite" else 0
        self._tidy_due = self._tidy_idle > 0
        self.tidy_steps = 0
        self._states = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self.checkpointer = Checkpointer(db.engine) if db.dialect == "sqlite" else None
        self.batches = 0
        self.jobs = 0
        self.retries = 0
        # When the writer last completed a statement or a batch ("it is making progress").
        self.last_progress = time.monotonic()

    def _ensure_started(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="labelhub-writer", daemon=True
                    )
                    self._thread.start()
                    if self.checkpointer is not None:
                        self.checkpointer.start()

    async def submit(self, fn: Callable[..., T], args: Any, *, shared: bool = False) -> T:
        """Queue a write and wait for its commit.

        ``shared``: ``fn(conn, items)`` takes the items of all neighbouring jobs of the batch
        with the same ``fn`` at once (``args`` is this job's item) and answers one
        ``(ok, value)`` each, so a batch of similar requests costs a few statements, not a few
        per request (see ``_run_group``).

        The writer must show progress (complete a statement or a batch) at least once every
        ``deadline`` seconds: a long batch (a ``POST /events`` refreshing 1,000 users' pools) or
        a backlog ahead of the write may take longer than that, and is waited for, up to
        ``PATIENCE`` deadlines. When the writer shows no progress for a whole deadline, the
        database stopped answering: a write still queued is withdrawn (503, nothing written); a
        write in the running batch has the writer's connection cut, so the batch fails at once
        with an outage (503) instead of waiting for TCP to give up.

        The watch is a timer on the event loop, not a task per write: cheap on the hot path.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, args, loop, future, shared)
        self._ensure_started()
        self._queue.put(job)
        job.timer = loop.call_later(self._deadline, self._overdue, job, loop.time())
        try:
            return await future
        finally:
            job.timer.cancel()

    def _overdue(self, job: _Job, started: float) -> None:
        """A write's deadline passed: wait on while the writer progresses, else give up on it."""
        future, loop = job.future, job.loop
        assert future is not None and loop is not None
        if future.done():
            return
        # Cut as soon as the writer has been silent for a whole deadline; not later.
        wait = self._deadline - (time.monotonic() - self.last_progress)
        if wait > 0 and loop.time() - started < PATIENCE * self._deadline:
            job.timer = loop.call_later(wait, self._overdue, job, started)
            return
        with self._states:
            if job.state == "queued":
                job.state = "abandoned"
                future.set_exception(
                    Unavailable(
                        f"The database did not take the write within {self._deadline:g} s; "
                        "nothing was written"
                    )
                )
                return
        self.cut_connection()
        job.timer = loop.call_later(self._deadline, self._stopped, future)

    @staticmethod
    def _stopped(future: asyncio.Future[Any]) -> None:
        if not future.done():
            future.set_exception(Unavailable("The database stopped answering during the write"))

    def cut_connection(self) -> None:
        """Shut the socket of the writer's PostgreSQL connection under a blocked query."""
        conn = self._conn
        if conn is None or self._db.dialect != "postgresql":
            return
        with contextlib.suppress(Exception):
            fd = conn.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
            log.warning("cut the writer's database connection: no answer within the timeout")

    def submit_nowait(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Queue a write nobody waits for (bookkeeping such as a key's last use)."""
        self._ensure_started()
        self._queue.put(_Job(fn, args, None, None))

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def start(self) -> None:
        """Where it tidies (SQLite, ``tidy_idle`` above 0), start the thread now rather than at
        the first write: it tidies the search indexes even if nothing is written."""
        if self._tidy_idle:
            self._ensure_started()

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=self._tidy_idle if self._tidy_due else None)
            except queue.Empty:
                self._tidy()
                continue
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            with self._states:
                batch = [j for j in batch if j.state != "abandoned"]
                for j in batch:
                    j.state = "running"
            if batch:
                self._execute(batch)
                self._tidy_due = self._tidy_idle > 0
            if stop:
                return

    def _tidy(self) -> None:
        """SQLite, idle: merge each grown FTS5 index into one segment (``tidy``), one step per
        transaction, and stop as soon as a write is queued (the next idle spell goes on)."""
        try:
            for _ in tidy.merge_steps(self._connection(), stop=self._writes_queued):
                self.tidy_steps += 1
                self.last_progress = time.monotonic()
                if self.checkpointer is not None:
                    self.checkpointer.nudge()
            if self._writes_queued():
                return  # writes first: the next idle spell goes on
        except Exception as error:  # tidying is an optimisation: the next write asks again
            log.warning("merging the search indexes' segments failed: %s", error)
        self._tidy_due = False

    def _writes_queued(self) -> bool:
        return not self._queue.empty()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            conn = self._db.engine.connect().execution_options(labelhub_write=True)
            if self._db.dialect == "postgresql":  # BEGIN sent with the write lock (make_engine)
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            else:  # checkpoints are the checkpointer's (outside any transaction: autocommit)
                conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT}"
                )
            self._conn = conn
            event.listen(self._conn, "after_cursor_execute", self._progressed)
        return self._conn

    def _progressed(self, *_: Any) -> None:
        self.last_progress = time.monotonic()

    def _execute(self, batch: list[_Job]) -> None:
        try:
            self._attempt_with_retries(batch)
        except BaseException as error:  # the whole transaction failed: tell everyone
            failure = _translate(error)
            for job in batch:
                job.outcome = (False, failure)
            if self._conn is not None and _is_outage(error):
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
        self.batches += 1
        self.jobs += len(batch)
        self.last_progress = time.monotonic()
        if self.checkpointer is not None:
            self.checkpointer.nudge()
        # One wake-up per event loop for the whole batch, not one per job.
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job in batch:
            if job.future is not None and job.loop is not None:
                answers.setdefault(job.loop, []).append((job.future, *job.outcome))
            elif not job.outcome[0]:
                log.warning("background write failed: %s", job.outcome[1])
        for loop, delivered in answers.items():
            if loop.is_closed():
                continue
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_deliver, delivered)

    def _attempt_with_retries(self, batch: list[_Job]) -> None:
        for attempt in range(TRANSIENT_RETRIES):
            try:
                self._attempt(batch)
                return
            except DBAPIError as error:
                if _is_transient(error) and attempt + 1 < TRANSIENT_RETRIES:
                    self.retries += 1
                    continue
                raise

    def _attempt(self, batch: list[_Job]) -> None:
        """Run the batch in one transaction; each job is isolated from the others' failures.

        First optimistically, every job (or group of shared jobs) straight on the transaction
        (no savepoints: most batches have no failure). If one raises, the transaction is rolled
        back and the batch runs again job by job, a savepoint around each, so the failure stays
        its own. A refusal a shared function reports for one item is its answer either way.
        """
        conn = self._connection()
        clean = True
        with conn.begin() as transaction:
            forget(conn)
            for group in _groups(batch):
                try:
                    outcomes = _run_group(conn, group)
                except Exception as error:
                    if _is_fatal(error):
                        raise
                    if len(group) == 1:
                        group[0].outcome = (False, error)
                    transaction.rollback()
                    clean = False
                    break
                for job, outcome in zip(group, outcomes, strict=True):
                    job.outcome = outcome
        if clean:  # committed on leaving the block
            committed(conn)
            return
        if len(batch) == 1:
            return  # a lone job refused: rolled back, and that is its answer
        with conn.begin():
            forget(conn)
            for job in batch:
                savepoint = conn.begin_nested()
                try:
                    (outcome,) = _run_group(conn, [job])
                except Exception as error:
                    if _is_fatal(error):
                        raise
                    outcome = (False, error)
                if outcome[0]:
                    savepoint.commit()
                else:
                    savepoint.rollback()
                    forget(conn)
                job.outcome = outcome
        committed(conn)


def _is_fatal(error: BaseException) -> bool:
    """An error that dooms the whole transaction, not just the job that met it."""
    return isinstance(error, DBAPIError) and (_is_transient(error) or _is_outage(error))


def _translate(error: BaseException) -> BaseException:
    if isinstance(error, LabelhubError):
        return error
    if _is_outage(error):
        return Unavailable("The database is unavailable; try again shortly")
    return error


class Database:
    """The configured database: an engine, a writer, and helpers to run units of work."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dialect = database_dialect(settings.database_url)
        self.engine = make_engine(settings)
        self.writer = Writer(
            self, settings.write_batch_max, settings.db_timeout, settings.sqlite_tidy_idle
        )
        self._key_uses: dict[int, int] = {}
        self._read_limiters: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, anyio.CapacityLimiter
        ] = weakref.WeakKeyDictionary()

    # -- synchronous: CLI, migrations, and the threads the async helpers use ---------------

    @contextlib.contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """One transaction on a pooled connection; commits on success, rolls back on error."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn = conn.execution_options(labelhub_write=True)
                elif self.dialect == "postgresql":
                    # A read needs no BEGIN and COMMIT of its own: in READ COMMITTED (the
                    # default) each statement reads its own snapshot inside a transaction too,
                    # so they were two round trips that changed nothing (W3: 7 -> 5 a request).
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                with conn.begin():
                    forget(conn)
                    yield conn
                committed(conn)
        except DBAPIError as error:
            translated = _translate(error)
            if translated is error:
                raise
            raise translated from error

    def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        with self.transaction() as conn:
            return fn(conn, *args)

    def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """A write outside the server (CLI): its own transaction, retried if PostgreSQL asks."""
        for attempt in range(TRANSIENT_RETRIES):
            try:
                with self.transaction(write=True) as conn:
                    return fn(conn, *args)
            except DBAPIError as error:
                if not (_is_transient(error) and attempt + 1 < TRANSIENT_RETRIES):
                    raise
        raise AssertionError("unreachable")

    # -- asynchronous: request handlers ------------------------------------------------------

    async def read(self, fn: Callable[..., T], *args: Any, quick: bool = False) -> T:
        """Run ``fn(conn, *args)`` in a read transaction on one of ``read_threads`` threads.

        Few threads on purpose: the work is Python holding the GIL, and 40 threads (anyio's
        default) contending with the event loop served W3 at 213 req/s on SQLite where 4 serve
        306 and 2 serve 378 (PostgreSQL: 158 with 40, 203 with 4); see bench/README.md.

        ``quick``: a read bounded by a few index lookups (a page without a search). On SQLite it
        runs on the event loop's own thread. On a read thread it cost more than itself: the hop
        there and back, and the GIL handed to the loop and won back at each of SQLite's calls
        (each row fetched releases it), about 50 context switches a request. W3 on SQLite, with
        the fast route for ``GET /labels``: 685 -> 1,500 req/s (bench/README.md). A read that
        may scan (a search, a filter) keeps its thread, so it never holds the loop up for long;
        on PostgreSQL every read does (it waits on the network).
        """
        if quick and self.dialect == "sqlite":
            # One turn of the loop first, so the sockets are read between two quick reads: run
            # back to back, a burst of them left some connections unserved for many turns (W3 at
            # 64 connections, p99 0.7-1.0 s against a p50 of 45 ms).
            await asyncio.sleep(0)
            return self.run_read(fn, *args)
        loop = asyncio.get_running_loop()
        limiter = self._read_limiters.get(loop)
        if limiter is None:
            limiter = self._read_limiters[loop] = anyio.CapacityLimiter(self.settings.read_threads)
        return await anyio.to_thread.run_sync(self.run_read, fn, *args, limiter=limiter)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the writer; returns once its transaction has committed."""
        return await self.writer.submit(fn, args)

    async def write_shared(
        self, fn: Callable[[Connection, list[Any]], list[Any]], item: Any
    ) -> Any:
        """Add ``item`` to a call ``fn(conn, items)`` the writer makes for every neighbouring
        job of its batch with the same ``fn``; returns this item's answer once committed."""
        return await self.writer.submit(fn, item, shared=True)

    def record_key_use(self, key_id: int) -> None:
        """Refresh a key's ``last_used_at`` in the background, at most once per resolution."""
        now = keys.now_ms()
        if now - self._key_uses.get(key_id, 0) < keys.LAST_USED_RESOLUTION_MS:
            return
        self._key_uses[key_id] = now
        self.writer.submit_nowait(keys.touch, (key_id,))

    def ping_sync(self) -> None:
        """Raise unless the database answers and holds labelhub's schema."""
        with self.transaction(write=True) as conn:
            conn.execute(text("SELECT version_num FROM alembic_version")).all()

    async def ping(self) -> bool:
        try:
            with anyio.fail_after(self.settings.db_timeout + 1):
                await anyio.to_thread.run_sync(self.ping_sync, abandon_on_cancel=True)
        except Exception:
            return False
        return True

    def pool_status(self) -> dict[str, int]:
        pool: Any = self.engine.pool
        figures = {"writer_queue": self.writer.depth}
        for name in ("size", "checkedout", "overflow", "checkedin"):
            method = getattr(pool, name, None)
            if callable(method):
                figures[name] = int(method())
        return figures

    def close(self) -> None:
        self.writer.stop()
        self.engine.dispose()


# --- migrations -----------------------------------------------------------------------------


def alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "labelhub:migrations")
    config.attributes["connection"] = conn
    return config


def _scripts() -> Any:
    """Alembic's view of labelhub's migrations (the revisions this labelhub knows)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str | None:
    head: str | None = _scripts().get_current_head()
    return head


@contextlib.contextmanager
def migration_lock(db: Database) -> Iterator[Connection]:
    """A connection holding the lock that serialises schema changes and bootstrap.

    PostgreSQL: a session advisory lock, so replicas starting together take turns.
    SQLite: an ``flock`` on a lock file beside the database (``<file>-lock``), so several
    processes on one file take turns too. Never on the database file itself: closing any
    descriptor of that file drops every POSIX lock the process holds on it, SQLite's included,
    while SQLite still counts them as held; the process then takes part in WAL mode unseen, and
    another process that closes its last connection thinks it is the last one and resets the WAL
    under it ("database disk image is malformed", found by bench.recommend_speed).
    """
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            conn.commit()
            try:
                yield conn
            finally:
                with contextlib.suppress(Exception):
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
                    conn.commit()
        return
    path = sqlite_path(db.settings.database_url)
    fd = os.open(f"{path}-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with db.engine.connect() as conn:
            yield conn
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def upgrade(conn: Connection, revision: str = "head") -> None:
    from alembic import command

    _run_alembic(conn, lambda cfg: command.upgrade(cfg, revision))


def downgrade(conn: Connection, revision: str) -> None:
    from alembic import command

    _run_alembic(conn, lambda cfg: command.downgrade(cfg, revision))


class SchemaTooNew(LabelhubError):
    """The database's schema revision is one this labelhub does not know."""


def _run_alembic(conn: Connection, action: Callable[[Any], None]) -> None:
    from alembic.util.exc import CommandError

    current = current_revision(conn)
    try:
        if current is not None:
            _scripts().get_revision(current)
    except CommandError:
        raise SchemaTooNew(
            f"The database is at schema revision {current}, which this labelhub does not know "
            f"(its newest is {head_revision()}): a newer labelhub upgraded it; run that one"
        ) from None
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # Table rebuilds (batch mode) must not fire ON DELETE CASCADE; checked again below.
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        action(alembic_config(conn))
        if conn.in_transaction():
            conn.commit()
        if sqlite:
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if problems:
                raise RuntimeError(f"migration left foreign key violations: {problems[:5]}")
    finally:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        if conn.in_transaction():
            conn.commit()


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def redacted(url: str) -> str:
    """The database URL without its password, for messages."""
    if database_dialect(url) == "sqlite":
        return url
    return make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
