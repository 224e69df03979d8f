"""Guards: a request's key and grants, checked inside the request's own transaction.

A route's dependency builds a ``Guard`` from the request headers without touching the database.
The handler then runs its unit of work through the guard; the guard's ``check`` runs first, on the
same connection and in the same transaction, and hands the work what it resolved (a program's key,
a registry row, ...). So a request costs one trip to the database thread, not two, and a key
revoked by another replica is refused on the very next request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fastapi.security import APIKeyHeader
from sqlalchemy import Connection

from labelhub.core import keys
from labelhub.core.db import Database
from labelhub.core.errors import LabelhubError
from labelhub.core.memo import drop_read_ahead
from labelhub.core.sql import Read, read_together

# The key header of the HAR and administration APIs (ActionHub has its own, actionhub-key).
X_API_KEY = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="x-api-key")

C = TypeVar("C")
R = TypeVar("R")


class Guard(Generic[C]):
    def __init__(self, db: Database, secret: str | None) -> None:
        self.db = db
        self.secret = secret

    def check(self, conn: Connection) -> C:
        """Raise a ``LabelhubError`` unless the caller may proceed; return the resolved context."""
        raise NotImplementedError

    def principal(self, conn: Connection) -> keys.Principal | None:
        return keys.authenticate(conn, self.secret, record_use=self.db.record_key_use)

    async def read(self, fn: Callable[..., R], *args: Any, quick: bool = False) -> R:
        """``fn(conn, context, *args)`` in a read transaction, after ``check``; ``quick``: a
        read bounded by a few index lookups, as ``Database.read`` has it."""
        return await self.db.read(self._run, fn, args, quick=quick)

    async def write(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, context, *args)`` in a write transaction, after ``check``; committed."""
        return await self.db.write(self._run, fn, args)

    def _run(self, conn: Connection, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        return fn(conn, self.check(conn), *args)

    async def write_shared(
        self,
        fn: Callable[[Connection, list[tuple[C, Any]]], Sequence[R | LabelhubError]],
        item: Any,
    ) -> R:
        """``fn(conn, [(context, item), ...])`` once for the neighbouring requests of a write
        batch that use the same ``fn``, each checked first (a refused one is answered alone and
        adds nothing); answers this request's result once committed. ``fn`` refuses a request
        by answering a ``LabelhubError`` for it, having written nothing for it."""
        return await self.db.write_shared(_guarded(fn), (self, item))  # type: ignore[no-any-return]

    @classmethod
    def prepare(
        cls, conn: Connection, guards: Sequence[Guard[Any]], also: Sequence[Read] = ()
    ) -> None:
        """Before checking several guards of one kind: read their keys, what ``reads`` names and
        ``also``, at once (one round trip on PostgreSQL)."""
        key_reads = keys.key_reads(conn, (g.secret for g in guards))
        read_together(conn, key_reads + cls.reads(conn, guards) + list(also))

    @classmethod
    def reads(cls, conn: Connection, guards: Sequence[Guard[Any]]) -> list[Read]:
        """What these guards' checks will look up besides their keys, as reads."""
        return []


# A shared function's ``READS_AHEAD`` attribute, ``reads(conn, requests)``: what it will read for
# these (guard, item) requests, to be read with their keys (``Guard.prepare``) before their
# guards are checked. What it finds must serve only the requests that pass.
READS_AHEAD = "reads_ahead"


@functools.cache
def _guarded(
    fn: Callable[[Connection, list[tuple[Any, Any]]], list[Any]],
) -> Callable[[Connection, list[tuple[Guard[Any], Any]]], list[tuple[bool, Any]]]:
    """The shared writer function for ``fn``: checks each request's guard, then runs ``fn`` once
    for those that passed."""
    ahead = getattr(fn, READS_AHEAD, None)

    def run(conn: Connection, requests: list[tuple[Guard[Any], Any]]) -> list[tuple[bool, Any]]:
        try:
            return _checked_run(fn, ahead, conn, requests)
        finally:
            drop_read_ahead(conn)

    return run


def _checked_run(
    fn: Callable[[Connection, list[tuple[Any, Any]]], list[Any]],
    ahead: Callable[[Connection, list[tuple[Guard[Any], Any]]], list[Read]] | None,
    conn: Connection,
    requests: list[tuple[Guard[Any], Any]],
) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(requests)
    also = ahead(conn, requests) if ahead is not None else []
    for kind in {type(guard) for guard, _ in requests}:
        kind.prepare(conn, [guard for guard, _ in requests if type(guard) is kind], also)
        also = []
    passed: list[tuple[int, Any, Any]] = []
    for index, (guard, item) in enumerate(requests):
        try:
            passed.append((index, guard.check(conn), item))
        except LabelhubError as error:
            outcomes[index] = (False, error)
    if passed:
        results = fn(conn, [(context, item) for _, context, item in passed])
        for (index, _, _), result in zip(passed, results, strict=True):
            # fn refuses one request by answering its error (having written nothing for it)
            outcomes[index] = (not isinstance(result, LabelhubError), result)
    return outcomes
