"""HAR auth and refs: ``x-api-key`` -> 401, grant on the space -> 403, and only then lookups.

The space a request touches is known from its refs alone, so the grant is decided before any
registry or artifact is looked up: a caller without the grant learns nothing about what exists.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import Depends, Path, Request
from sqlalchemy import Connection

from labelhub.actionhub.schemas import FORBIDDEN
from labelhub.core.access import X_API_KEY, Guard
from labelhub.core.db import Database
from labelhub.core.errors import Forbidden, Invalid, Unauthenticated
from labelhub.core.memo import remembered
from labelhub.core.sql import Read
from labelhub.har import store
from labelhub.har.schemas import IDENTIFIER

_SEGMENT = re.compile(r"^[^/\x00-\x1f\x7f-\x9f]{1,255}$")
BAD_KEY = "Invalid or missing API key (x-api-key)"


def artifact_name(written: str) -> str:
    """An artifact name from the path: 1-1024 characters without control characters."""
    name = unquote(written)
    if not 1 <= len(name) <= 1024 or FORBIDDEN.search(name):
        raise Invalid(f"Cannot parse artifact {name!r}: 1-1024 characters, no control characters")
    return name


def space_path(ref: str) -> str:
    """``acct``, ``acct/org`` or ``acct/org/proj`` from any accepted spelling of a space ref:
    ``%2F``-separated, plain with a trailing ``/+``, or that ``+`` form-decoded to a space."""
    path = ref
    for suffix in ("/+", "/ ", "/"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    parts = path.split("/")
    if not 1 <= len(parts) <= 3 or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise Invalid(f"Cannot parse space_ref {ref!r}: expected <account>[/<org>[/<project>]]")
    return path


# A registry or space ref from the path, percent-decoded: a server sees the same few refs again
# and again, and decoding ``acct%2Fbench`` cost 1.5 us a request (0.1 remembered).
unquote_ref = remembered(entries=1024, longest=512)(unquote)


@functools.lru_cache(maxsize=1024)
def registry_path(ref: str) -> tuple[str, str]:
    """(space path, registry identifier) of a registry ref (the few a server sees remembered;
    a ref that does not parse raises every time)."""
    space, _, identifier = ref.rpartition("/")
    if not space or not IDENTIFIER.fullmatch(identifier) or len(identifier) > 255:
        raise Invalid(
            f"Cannot parse registry_ref {ref!r}: expected <account>[/<org>[/<project>]]/<registry>"
        )
    return space_path(space), identifier


class SpaceAccess(Guard[str]):
    """Resolves to the space path once the key may view (or edit) it."""

    def __init__(self, db: Database, secret: str | None, space: str, edit: bool) -> None:
        super().__init__(db, secret)
        self.space = space
        self.edit = edit

    def check(self, conn: Connection) -> str:
        principal = self.principal(conn)
        if principal is None:
            raise Unauthenticated(BAD_KEY)
        allowed = (
            principal.may_edit_space(self.space)
            if self.edit
            else principal.may_view_space(self.space)
        )
        if not allowed:
            role = "edit" if self.edit else "view"
            raise Forbidden(f"This key may not {role} space {self.space!r}")
        return self.space


class RegistryAccess(Guard[store.RegistryRow]):
    """Resolves to the registry once the key may view (or edit) the space that holds it."""

    def __init__(self, db: Database, secret: str | None, ref: str, edit: bool) -> None:
        super().__init__(db, secret)
        space, self.identifier = registry_path(ref)
        self.space_access = SpaceAccess(db, secret, space, edit)

    def check(self, conn: Connection) -> store.RegistryRow:
        space = self.space_access.check(conn)
        return store.find_registry(conn, space, self.identifier)

    @classmethod
    def reads(cls, conn: Connection, guards: Sequence[Guard[Any]]) -> list[Read]:
        # The batch's registries, read with its keys (``Guard.prepare``): before the grants are
        # checked, but ``check`` consults a registry only once its grant holds.
        registries = [(g.space_access.space, g.identifier) for g in guards if isinstance(g, cls)]
        return store.registry_reads(conn, registries)


RegistryRef = Annotated[
    str,
    Path(
        description="<account>[/<org>[/<project>]]/<registry>, with %2F separators or plain "
        "with a trailing /+",
    ),
]
KeyHeader = Annotated[str | None, Depends(X_API_KEY)]


def _registry_access(*, edit: bool) -> Callable[..., Awaitable[RegistryAccess]]:
    async def dependency(
        request: Request, registry_ref: RegistryRef, secret: KeyHeader
    ) -> RegistryAccess:
        return RegistryAccess(request.app.state.db, secret, unquote_ref(registry_ref), edit)

    return dependency


RegistryView = Annotated[RegistryAccess, Depends(_registry_access(edit=False))]
RegistryEdit = Annotated[RegistryAccess, Depends(_registry_access(edit=True))]


SpaceRef = Annotated[
    str, Path(description="<account>[/<org>[/<project>]], with %2F separators or plain with /+")
]


async def _space_viewer(request: Request, space_ref: SpaceRef, secret: KeyHeader) -> SpaceAccess:
    return SpaceAccess(request.app.state.db, secret, space_path(unquote_ref(space_ref)), edit=False)


SpaceView = Annotated[SpaceAccess, Depends(_space_viewer)]
