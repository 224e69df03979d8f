"""API keys: minting, hashing, lookup, and what a key's grants allow.

A key is ``lh_`` + 43 url-safe characters (32 random bytes). Only its SHA-256 (hex) and a short
display prefix are stored. Lookup is by hash; the stored hash is compared with
``hmac.compare_digest`` as well, so the check does not depend on how the index compared.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from labelhub.core.config import KEY_PATTERN
from labelhub.core.errors import Invalid, NotFound
from labelhub.core.memo import forget, memo
from labelhub.core.models import ApiKey, KeyGrant
from labelhub.core.sql import Read

PREFIX_LENGTH = 11  # "lh_" and 8 characters of the secret
ROLES_BY_KIND = {"admin": {"admin"}, "program": {"read", "write"}, "space": {"view", "edit"}}
# A space path: account, org, project; each a non-empty segment without "/" or control chars.
_SEGMENT = r"[^/\x00-\x1f\x7f-\x9f]+"
SPACE_PATH = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,2}}$")
PROGRAM_ID = re.compile(r"^[^\x00-\x1f\x7f-\x9f]{1,64}$")
# How stale last_used_at may be before a request refreshes it.
LAST_USED_RESOLUTION_MS = 60_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def mint_secret() -> str:
    return "lh_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:PREFIX_LENGTH]


def looks_like_key(value: str | None) -> bool:
    return value is not None and KEY_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class Grant:
    scope: str
    role: str

    @property
    def kind(self) -> str:
        return self.scope.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.scope.split(":", 1)[1] if ":" in self.scope else ""


def parse_grant(scope: str, role: str) -> Grant:
    """Check that a grant is well formed and its role fits its scope; ``Invalid`` otherwise."""
    kind, colon, target = scope.partition(":")
    well_formed = {
        "admin": not colon,
        "program": bool(colon and PROGRAM_ID.fullmatch(target)),
        "space": bool(colon and SPACE_PATH.fullmatch(target)),
    }
    if not well_formed.get(kind, False):
        raise Invalid(
            f"scope {scope!r} is not 'admin', 'program:<program-id>' or "
            "'space:<account>[/<org>[/<project>]]'"
        )
    if role not in ROLES_BY_KIND[kind]:
        allowed = " or ".join(sorted(ROLES_BY_KIND[kind]))
        raise Invalid(f"role {role!r} does not fit scope {scope!r}; use {allowed}")
    return Grant(scope, role)


@dataclass(frozen=True)
class Principal:
    """The holder of a valid, unrevoked key, and what it was granted."""

    key_id: int
    prefix: str
    grants: tuple[Grant, ...]
    last_used_at: int | None = None

    @functools.cached_property
    def is_admin(self) -> bool:
        return any(g.kind == "admin" for g in self.grants)

    def may_read_program(self, program_id: str) -> bool:
        return self.is_admin or any(
            g.kind == "program" and g.target == program_id for g in self.grants
        )

    def may_write_program(self, program_id: str) -> bool:
        return self.is_admin or any(
            g.kind == "program" and g.target == program_id and g.role == "write"
            for g in self.grants
        )

    def may_view_space(self, space_path: str) -> bool:
        return self.is_admin or any(
            g.kind == "space" and _covers(g.target, space_path) for g in self.grants
        )

    def may_edit_space(self, space_path: str) -> bool:
        return self.is_admin or any(
            g.kind == "space" and g.role == "edit" and _covers(g.target, space_path)
            for g in self.grants
        )


def _covers(granted: str, space_path: str) -> bool:
    """A grant on a space covers it and every space below it."""
    return space_path == granted or space_path.startswith(granted + "/")


# Built once: the key and its grants in one statement (a key has few grants), on every request.
KEY_WITH_GRANTS = (
    select(
        ApiKey.id,
        ApiKey.prefix,
        ApiKey.secret_hash,
        ApiKey.revoked_at,
        ApiKey.last_used_at,
        KeyGrant.scope,
        KeyGrant.role,
    )
    .outerjoin(KeyGrant, KeyGrant.key_id == ApiKey.id)
    .where(ApiKey.secret_hash == bindparam("digest"))
    .order_by(KeyGrant.scope)
)


def authenticate(
    conn: Connection,
    secret: str | None,
    *,
    record_use: Callable[[int], None] | None = None,
) -> Principal | None:
    """The principal holding ``secret``, or None when it is missing, unknown or revoked.

    ``record_use(key_id)`` is called when the key's ``last_used_at`` is due for a refresh.
    """
    if secret is None:
        return None
    # Memoized by the secret itself: the jobs of a write batch mostly carry one key, and the
    # pattern check and the hash cost as much as the rest of the guard (W2's profile).
    cache = memo(conn)
    if ("key", secret) in cache:
        cached: Principal | None = cache["key", secret]
        return cached
    if not looks_like_key(secret):
        return None
    read = cache.pop(("key rows", secret), None)
    if read is None:
        digest = hash_secret(secret)
        read = digest, conn.execute(KEY_WITH_GRANTS, {"digest": digest}).all()
    digest, rows = read
    row = rows[0] if rows else None
    if row is None or row.revoked_at is not None:
        cache["key", secret] = None
        return None
    if not hmac.compare_digest(row.secret_hash, digest):
        return None
    grants = tuple(Grant(r.scope, r.role) for r in rows if r.scope is not None)
    principal = Principal(row.id, row.prefix, grants, row.last_used_at)
    cache["key", secret] = principal
    if record_use is not None and needs_touch(principal):
        record_use(principal.key_id)
    return principal


def key_reads(conn: Connection, secrets: Iterable[str | None]) -> list[Read]:
    """The reads ``authenticate`` will need for these secrets in this transaction, to be run
    with others (``read_together``); what they find is kept for ``authenticate`` to use."""
    cache = memo(conn)
    reads = []
    for secret in set(secrets):
        if secret is None or ("key", secret) in cache or not looks_like_key(secret):
            continue
        digest = hash_secret(secret)

        def take(rows: Sequence[Any], secret: str = secret, digest: str = digest) -> None:
            cache["key rows", secret] = (digest, rows)

        reads.append(Read(KEY_WITH_GRANTS, {"digest": digest}, take))
    return reads


def touch(conn: Connection, key_id: int) -> None:
    """Record that a key was used (at ``LAST_USED_RESOLUTION_MS`` resolution)."""
    conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now_ms()))


def needs_touch(principal: Principal) -> bool:
    last = principal.last_used_at
    return last is None or now_ms() - last >= LAST_USED_RESOLUTION_MS


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    prefix: str
    secret: str
    grants: tuple[Grant, ...]
    created_at: int


def create_key(
    conn: Connection, name: str, grants: Iterable[Grant], *, secret: str | None = None
) -> NewKey:
    """Store a new key (minting its secret unless one is given) with its grants."""
    forget(conn)
    secret = secret or mint_secret()
    grants = tuple(dict.fromkeys(grants))
    scopes = [g.scope for g in grants]
    if len(scopes) != len(set(scopes)):
        raise Invalid("a scope may be granted only once per key")
    created = now_ms()
    key_id = conn.execute(
        insert(ApiKey)
        .values(
            name=name,
            prefix=display_prefix(secret),
            secret_hash=hash_secret(secret),
            created_at=created,
        )
        .returning(ApiKey.id)
    ).scalar_one()
    if grants:
        conn.execute(
            insert(KeyGrant), [{"key_id": key_id, "scope": g.scope, "role": g.role} for g in grants]
        )
    return NewKey(key_id, name, display_prefix(secret), secret, grants, created)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    grants: tuple[Grant, ...]
    created_at: int
    last_used_at: int | None
    revoked_at: int | None


def list_keys(conn: Connection) -> list[KeyInfo]:
    grants: dict[int, list[Grant]] = {}
    for key_id, scope, role in conn.execute(
        select(KeyGrant.key_id, KeyGrant.scope, KeyGrant.role).order_by(
            KeyGrant.key_id, KeyGrant.scope
        )
    ):
        grants.setdefault(key_id, []).append(Grant(scope, role))
    return [
        KeyInfo(
            r.id,
            r.name,
            r.prefix,
            tuple(grants.get(r.id, ())),
            r.created_at,
            r.last_used_at,
            r.revoked_at,
        )
        for r in conn.execute(select(ApiKey.__table__).order_by(ApiKey.id))
    ]


def revoke_key(conn: Connection, key_id: int) -> None:
    """Revoke a key; revoking a revoked key again keeps the first revocation time."""
    forget(conn)
    found = conn.execute(select(ApiKey.revoked_at).where(ApiKey.id == key_id)).first()
    if found is None:
        raise NotFound("Key not found")
    if found.revoked_at is None:
        conn.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=now_ms()))


def any_key(conn: Connection) -> bool:
    return conn.execute(select(ApiKey.id).limit(1)).first() is not None


ADMIN_GRANT = Grant("admin", "admin")


def bootstrap(conn: Connection, admin_key: str | None) -> str | None:
    """Make sure there is a way in; returns a newly minted admin secret to show once, or None.

    With ``admin_key`` (``LABELHUB_ADMIN_KEY``) that value is the admin key: stored unless it is
    there already (a revoked one stays revoked). Without it, an admin key is minted only when the
    database holds no key at all.
    """
    if admin_key is not None:
        exists = conn.execute(
            select(ApiKey.id).where(ApiKey.secret_hash == hash_secret(admin_key))
        ).first()
        if exists is None:
            create_key(conn, "admin (LABELHUB_ADMIN_KEY)", [ADMIN_GRANT], secret=admin_key)
        return None
    if any_key(conn):
        return None
    return create_key(conn, "bootstrap admin", [ADMIN_GRANT]).secret
