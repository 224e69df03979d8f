"""Keys: shown once, stored as a hash, revoked on the next request everywhere, grants exact."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest

from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from tests.conftest import table_rows


async def test_only_hash_and_prefix_are_stored(
    client: httpx.AsyncClient, admin_key: str, database: dbmod.Database
) -> None:
    r = await client.post(
        "/admin/keys",
        json={"name": "k", "grants": [{"scope": "program:p", "role": "read"}]},
        headers={"x-api-key": admin_key},
    )
    secret = r.json()["secret"]
    rows = table_rows(database, "SELECT * FROM api_keys")
    dumped = repr(rows)
    assert secret not in dumped and admin_key not in dumped
    assert secret[3:] not in dumped  # not even the random part
    stored = {row[3] for row in rows}  # secret_hash column
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    prefixes = {row[2] for row in rows}
    assert secret[:11] in prefixes


async def test_revocation_is_seen_by_another_replica_on_the_next_request(
    settings: Settings, database: dbmod.Database, admin_key: str, make_key: Callable[..., str]
) -> None:
    victim = make_key("admin", name="victim")
    other_db = dbmod.Database(settings)
    replica_a = create_app(settings, database)
    replica_b = create_app(settings, other_db)
    try:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=replica_a), base_url="http://a"
            ) as a,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=replica_b), base_url="http://b"
            ) as b,
        ):
            assert (
                await b.get("/admin/programs", headers={"x-api-key": victim})
            ).status_code == 200
            victim_id = next(
                k["id"]
                for k in (await a.get("/admin/keys", headers={"x-api-key": admin_key})).json()
                if k["name"] == "victim"
            )
            r = await a.delete(f"/admin/keys/{victim_id}", headers={"x-api-key": admin_key})
            assert r.status_code == 200
            r = await b.get("/admin/programs", headers={"x-api-key": victim})
            assert r.status_code == 401
            r = await a.get("/admin/programs", headers={"x-api-key": victim})
            assert r.status_code == 401
    finally:
        other_db.close()


def principal(database: dbmod.Database, secret: str) -> keys.Principal:
    found = database.run_read(keys.authenticate, secret)
    assert found is not None
    return found


def test_grant_kinds_allow_exactly_what_they_say(
    database: dbmod.Database, make_key: Callable[..., str]
) -> None:
    admin = principal(database, make_key("admin"))
    reader = principal(database, make_key("program:shop=read"))
    writer = principal(database, make_key("program:shop=write", "program:blog=read"))
    viewer = principal(database, make_key("space:acct/org=view"))
    editor = principal(database, make_key("space:acct=edit"))

    assert admin.is_admin
    assert admin.may_write_program("anything") and admin.may_edit_space("x/y/z")
    for p in (reader, writer, viewer, editor):
        assert not p.is_admin

    assert reader.may_read_program("shop") and not reader.may_write_program("shop")
    assert not reader.may_read_program("shop2") and not reader.may_read_program("sho")
    assert writer.may_read_program("shop") and writer.may_write_program("shop")
    assert writer.may_read_program("blog") and not writer.may_write_program("blog")
    for p in (reader, writer):
        assert not p.may_view_space("acct") and not p.may_edit_space("acct")

    # A space grant covers that space and the spaces below it, never above or beside.
    assert viewer.may_view_space("acct/org") and viewer.may_view_space("acct/org/proj")
    assert not viewer.may_view_space("acct") and not viewer.may_view_space("acct/org2")
    assert not viewer.may_view_space("acct/organ/proj")
    assert not viewer.may_edit_space("acct/org")
    assert editor.may_edit_space("acct") and editor.may_edit_space("acct/org/proj")
    assert editor.may_view_space("acct/x") and not editor.may_view_space("acct2")
    for p in (viewer, editor):
        assert not p.may_read_program("acct") and not p.may_write_program("shop")


def test_authenticate_refuses_unknown_revoked_and_malformed(
    database: dbmod.Database, make_key: Callable[..., str]
) -> None:
    secret = make_key("program:p=read")
    assert database.run_read(keys.authenticate, secret) is not None
    for bad in (
        None,
        "",
        "lh_short",
        secret + "x",
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
    ):
        assert database.run_read(keys.authenticate, bad) is None
    key_id = principal(database, secret).key_id
    database.run_write(keys.revoke_key, key_id)
    assert database.run_read(keys.authenticate, secret) is None
    first = table_rows(database, f"SELECT revoked_at FROM api_keys WHERE id = {key_id}")
    database.run_write(keys.revoke_key, key_id)  # revoking again keeps the first time
    assert table_rows(database, f"SELECT revoked_at FROM api_keys WHERE id = {key_id}") == first


def test_minted_secrets_have_the_key_format() -> None:
    seen = {keys.mint_secret() for _ in range(200)}
    assert len(seen) == 200
    assert all(keys.looks_like_key(s) for s in seen)


@pytest.mark.parametrize(
    "scope,role", [("admin", "admin"), ("program:x", "read"), ("space:a/b/c", "edit")]
)
def test_parse_grant_accepts_well_formed(scope: str, role: str) -> None:
    assert keys.parse_grant(scope, role) == keys.Grant(scope, role)
