"""Guards: a request's key and grants, checked inside the request's own transaction.

A route's dependency builds a ``Guard`` from the request headers without touching the database.
The handler then runs its unit of work through the guard; the guard's ``check`` runs first, on the
same connection and in the same transaction, and hands the work what it resolved (a program's key,
a registry row, ...). So a request costs one trip to the database thread, not two, and a key
revoked by another replica is refused on the very next request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi.security import APIKeyHeader
from sqlalchemy import Connection

from labelhub.core import keys
from labelhub.core.db import Database

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

    async def read(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, context, *args)`` in a read transaction, after ``check``."""
        return await self.db.read(self._run, fn, args)

    async def write(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(conn, context, *args)`` in a write transaction, after ``check``; committed."""
        return await self.db.write(self._run, fn, args)

    def _run(self, conn: Connection, fn: Callable[..., R], args: tuple[Any, ...]) -> R:
        return fn(conn, self.check(conn), *args)
