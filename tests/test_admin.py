"""The /admin API over HTTP: programs and keys, and its 201/401/403/404/409/422 answers."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def test_programs_create_list_delete(client: httpx.AsyncClient, admin_key: str) -> None:
    r = await client.post(
        "/admin/programs", json={"program_id": "shop", "name": "Shop"}, headers=h(admin_key)
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"program_id", "name", "created_at"}
    assert body["program_id"] == "shop" and body["name"] == "Shop"
    assert ISO_UTC.match(body["created_at"])

    r = await client.post("/admin/programs", json={"program_id": "blog"}, headers=h(admin_key))
    assert r.status_code == 201 and r.json()["name"] == "blog"

    r = await client.get("/admin/programs", headers=h(admin_key))
    assert r.status_code == 200
    assert [p["program_id"] for p in r.json()] == ["blog", "shop"]

    r = await client.delete("/admin/programs/shop", headers=h(admin_key))
    assert r.status_code == 200
    assert set(r.json()) == {"result"}
    r = await client.get("/admin/programs", headers=h(admin_key))
    assert [p["program_id"] for p in r.json()] == ["blog"]


async def test_program_conflict_and_not_found(client: httpx.AsyncClient, admin_key: str) -> None:
    assert (
        await client.post("/admin/programs", json={"program_id": "shop"}, headers=h(admin_key))
    ).status_code == 201
    r = await client.post("/admin/programs", json={"program_id": "shop"}, headers=h(admin_key))
    assert r.status_code == 409
    assert r.json() == {"detail": "Program 'shop' already exists"}

    r = await client.delete("/admin/programs/nope", headers=h(admin_key))
    assert r.status_code == 404
    assert r.json() == {"detail": "Program not found"}


async def test_program_validation(client: httpx.AsyncClient, admin_key: str) -> None:
    for bad in [{"program_id": ""}, {"program_id": "x" * 65}, {"program_id": "a\u0000b"}, {}]:
        r = await client.post("/admin/programs", json=bad, headers=h(admin_key))
        assert r.status_code == 422, bad
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail[0]["loc"][0] == "body"
    r = await client.get("/admin/programs", headers=h(admin_key))
    assert r.json() == []


async def test_admin_needs_a_valid_admin_key(
    client: httpx.AsyncClient, make_key: Callable[..., str]
) -> None:
    program_key = make_key("program:shop=write")
    space_key = make_key("space:acct=edit")
    calls = [
        ("GET", "/admin/programs", None),
        ("POST", "/admin/programs", {"program_id": "shop"}),
        ("DELETE", "/admin/programs/shop", None),
        ("GET", "/admin/keys", None),
        ("POST", "/admin/keys", {"name": "k", "grants": [{"scope": "admin", "role": "admin"}]}),
        ("DELETE", "/admin/keys/1", None),
    ]
    for method, path, body in calls:
        for headers in ({}, h("lh_" + "A" * 43), h("not-a-key")):
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers)
            assert r.json() == {"detail": "Invalid or missing API key (x-api-key)"}
        for key in (program_key, space_key):
            r = await client.request(method, path, json=body, headers=h(key))
            assert r.status_code == 403, (method, path)
            assert r.json() == {"detail": "This key is not an admin key"}


async def test_keys_create_list_revoke(client: httpx.AsyncClient, admin_key: str) -> None:
    r = await client.post(
        "/admin/keys",
        json={
            "name": "ci",
            "grants": [
                {"scope": "program:shop", "role": "write"},
                {"scope": "space:acct/org", "role": "view"},
            ],
        },
        headers=h(admin_key),
    )
    assert r.status_code == 201
    new = r.json()
    assert set(new) == {"id", "name", "prefix", "secret", "grants", "created_at"}
    assert re.fullmatch(r"lh_[A-Za-z0-9_-]{43}", new["secret"])
    assert new["prefix"] == new["secret"][:11]
    assert new["grants"] == [
        {"scope": "program:shop", "role": "write"},
        {"scope": "space:acct/org", "role": "view"},
    ]

    r = await client.get("/admin/keys", headers=h(admin_key))
    assert r.status_code == 200
    listed = {k["id"]: k for k in r.json()}
    mine = listed[new["id"]]
    assert set(mine) == {
        "id",
        "name",
        "prefix",
        "grants",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert "secret" not in mine and new["secret"] not in r.text
    assert mine["revoked_at"] is None and mine["last_used_at"] is None

    r = await client.delete(f"/admin/keys/{new['id']}", headers=h(admin_key))
    assert r.status_code == 200 and set(r.json()) == {"result"}
    r = await client.get("/admin/keys", headers=h(admin_key))
    revoked = {k["id"]: k for k in r.json()}[new["id"]]
    assert ISO_UTC.match(revoked["revoked_at"])

    r = await client.delete("/admin/keys/999999", headers=h(admin_key))
    assert r.status_code == 404 and r.json() == {"detail": "Key not found"}
    # Found by the contract fuzzer: an id past 64 bits reached the database and came back a 500.
    # The long fuzz run: past 32 bits it reached PostgreSQL's integer column (500 there).
    for bad in ("2147483648", "9223372036854775808", "0", "-1"):
        r = await client.delete(f"/admin/keys/{bad}", headers=h(admin_key))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "key_id"], bad


async def test_names_refuse_control_characters(client: httpx.AsyncClient, admin_key: str) -> None:
    # Found by the long fuzz run: a NUL reached PostgreSQL (500); now 422 before any write.
    r = await client.post(
        "/admin/programs", json={"program_id": "p", "name": "a\x00b"}, headers=h(admin_key)
    )
    assert r.status_code == 422
    body = {"name": "k\x00", "grants": [{"scope": "admin", "role": "admin"}]}
    r = await client.post("/admin/keys", json=body, headers=h(admin_key))
    assert r.status_code == 422
    assert (await client.get("/admin/programs", headers=h(admin_key))).json() == []


async def test_key_grant_validation(client: httpx.AsyncClient, admin_key: str) -> None:
    bad_grants = [
        {"scope": "program:shop", "role": "view"},
        {"scope": "space:acct", "role": "write"},
        {"scope": "admin", "role": "read"},
        {"scope": "program:", "role": "read"},
        {"scope": "space:a/b/c/d", "role": "view"},
        {"scope": "space:a//b", "role": "view"},
        {"scope": "registry:x", "role": "view"},
    ]
    for grant in bad_grants:
        r = await client.post(
            "/admin/keys", json={"name": "k", "grants": [grant]}, headers=h(admin_key)
        )
        assert r.status_code == 422, grant
        err = r.json()["detail"][0]
        assert err["loc"][:3] == ["body", "grants", 0] and err["type"] == "value_error"
    r = await client.post("/admin/keys", json={"name": "k", "grants": []}, headers=h(admin_key))
    assert r.status_code == 422
    r = await client.get("/admin/keys", headers=h(admin_key))
    assert len(r.json()) == 1  # only the admin key; nothing was written


async def test_last_used_at_is_recorded(
    client: httpx.AsyncClient, admin_key: str, database
) -> None:  # type: ignore[no-untyped-def]
    await client.get("/admin/programs", headers=h(admin_key))
    # The refresh is a background write; a second request's write queues behind it.
    await client.post("/admin/programs", json={"program_id": "p"}, headers=h(admin_key))
    r = await client.get("/admin/keys", headers=h(admin_key))
    assert ISO_UTC.match(r.json()[0]["last_used_at"])
