"""ActionHub headers -> a guard: ``actionhub-key``, ``program-id``, ``api-version``.

Header validation (422) happens in FastAPI before anything else; the key, the grant and the
program are checked by the guard inside the request's own transaction:
403 for a missing/unknown/revoked key or a key without the grant (whether or not the program
exists), then 404 when a key that may see the program finds no such program.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader
from sqlalchemy import Connection

from labelhub.actionhub import store
from labelhub.core.access import Guard
from labelhub.core.db import Database
from labelhub.core.errors import Forbidden, Invalid, NotFound
from labelhub.core.fast import FastRequest
from labelhub.core.sql import Read

SUPPORTED_API_VERSION = "1.0"
BAD_KEY = "Could not validate API KEY"

actionhub_key = APIKeyHeader(name="actionhub-key", auto_error=False, scheme_name="actionhub-key")


class ProgramAccess(Guard[int]):
    """Resolves to the program's primary key once the caller may read (or write) it."""

    def __init__(self, db: Database, secret: str | None, program_id: str, write: bool) -> None:
        super().__init__(db, secret)
        self.program_id = program_id
        self.write_access = write

    def check(self, conn: Connection) -> int:
        principal = self.principal(conn)
        if principal is None:
            raise Forbidden(BAD_KEY)
        if self.write_access:
            if not principal.may_write_program(self.program_id):
                if principal.may_read_program(self.program_id):
                    raise Forbidden("This key may only read this program")
                raise Forbidden("This key has no access to this program")
        elif not principal.may_read_program(self.program_id):
            raise Forbidden("This key has no access to this program")
        pk = store.program_pk(conn, self.program_id)
        if pk is None:
            raise NotFound("Program not found")
        return pk

    @classmethod
    def reads(cls, conn: Connection, guards: Sequence[Guard[Any]]) -> list[Read]:
        # The batch's programs, read with its keys (``Guard.prepare``).
        programs = {g.program_id for g in guards if isinstance(g, ProgramAccess)}
        return store.program_reads(conn, programs)


def _check_api_version(api_version: str | None) -> None:
    if api_version is not None and api_version != SUPPORTED_API_VERSION:
        raise Invalid(
            f"Unsupported api-version {api_version!r}; this server speaks {SUPPORTED_API_VERSION}"
        )


ProgramIdHeader = Annotated[str, Header(alias="program-id", min_length=1, max_length=64)]
ApiVersionHeader = Annotated[str | None, Header(alias="api-version")]
KeyHeader = Annotated[str | None, Depends(actionhub_key)]


def _program_access(*, write: bool) -> Callable[..., Awaitable[ProgramAccess]]:
    # async: FastAPI would run a plain function in the threadpool, a thread hop per request.
    async def dependency(
        request: Request,
        program_id: ProgramIdHeader,
        secret: KeyHeader,
        api_version: ApiVersionHeader = None,
    ) -> ProgramAccess:
        _check_api_version(api_version)
        return ProgramAccess(request.app.state.db, secret, program_id, write=write)

    return dependency


ProgramRead = Annotated[ProgramAccess, Depends(_program_access(write=False))]
ProgramWrite = Annotated[ProgramAccess, Depends(_program_access(write=True))]


# The fast route (labelhub.core.fast) reads the same headers, and takes a request only when
# they are ordinary: the key and the program present, the program id of a valid length, the
# api-version absent or supported. Anything else is left to the dependencies above.
FAST_HEADERS = frozenset({b"actionhub-key", b"program-id", b"api-version"})
FAST_REQUIRED = frozenset({b"actionhub-key", b"program-id"})


def fast_program_access(request: FastRequest, *, write: bool) -> ProgramAccess | None:
    headers = request.headers
    program_id = headers[b"program-id"]
    api_version = headers.get(b"api-version")
    if not 1 <= len(program_id) <= 64 or api_version not in (None, SUPPORTED_API_VERSION):
        return None
    secret = headers[b"actionhub-key"] or None
    return ProgramAccess(request.scope["app"].state.db, secret, program_id, write=write)
