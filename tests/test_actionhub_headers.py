"""ActionHub spec, *Headers on every ActionHub call*: actionhub-key, program-id, api-version, grants."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.actionhub_helpers import BAD_KEY, ActionHub

# (method, path, json body) for every program-scoped ActionHub call; reads first.
READS = [("GET", "/labels", None), ("GET", "/assets", None), ("GET", "/assets/a1", None)]
WRITES = [
    ("PUT", "/labels", {"labels": [{"label": "x", "weight": 1}]}),
    ("DELETE", "/labels/x", None),
    ("POST", "/assets", {"assets": [{"asset_id": "a1"}]}),
    ("DELETE", "/assets/a1", None),
]
CALLS = READS + WRITES


async def call(
    ah: ActionHub, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await ah.http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("method,path,body", CALLS)
async def test_missing_unknown_or_revoked_key_is_403(
    ah: ActionHub, database, method: str, path: str, body: Any
) -> None:  # type: ignore[no-untyped-def]
    from labelhub.core import keys

    revoked = ah.make_key("program:shop=write")
    key_id = database.run_read(keys.authenticate, revoked).key_id
    database.run_write(keys.revoke_key, key_id)
    for headers in (
        {"program-id": "shop"},
        ah.headers(key="lh_" + "A" * 43),
        ah.headers(key="not-a-key"),
        ah.headers(key=revoked),
    ):
        r = await call(ah, method, path, body, headers)
        assert r.status_code == 403, (method, path, headers)
        assert r.json() == BAD_KEY


@pytest.mark.parametrize("method,path,body", CALLS)
async def test_program_id_missing_or_out_of_range_is_422_before_any_lookup(
    ah: ActionHub, method: str, path: str, body: Any
) -> None:
    r = await call(ah, method, path, body, {"actionhub-key": ah.key})
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {
                "type": "missing",
                "loc": ["header", "program-id"],
                "msg": "Field required",
                "input": None,
            }
        ]
    }
    # Out of range, even with a key that would be refused: validation comes first.
    for key in (ah.key, "bogus"):
        r = await call(ah, method, path, body, {"actionhub-key": key, "program-id": "p" * 65})
        assert r.status_code == 422
        assert r.json() == {
            "detail": [
                {
                    "type": "string_too_long",
                    "loc": ["header", "program-id"],
                    "msg": "String should have at most 64 characters",
                    "input": "p" * 65,
                    "ctx": {"max_length": 64},
                }
            ]
        }
        r = await call(ah, method, path, body, {"actionhub-key": key, "program-id": ""})
        assert r.status_code == 422
        assert r.json()["detail"][0]["type"] == "string_too_short"
        assert r.json()["detail"][0]["loc"] == ["header", "program-id"]


@pytest.mark.parametrize("method,path,body", CALLS)
async def test_no_grant_is_403_whether_or_not_the_program_exists(
    ah: ActionHub,
    database,
    method: str,
    path: str,
    body: Any,  # type: ignore[no-untyped-def]
) -> None:
    from labelhub.actionhub import store

    database.run_write(store.create_program, "other")
    stranger = ah.make_key("program:other=write", "space:acct=edit")
    answers = []
    for program in ("shop", "does-not-exist"):
        r = await call(ah, method, path, body, ah.headers(key=stranger, program=program))
        answers.append((r.status_code, r.json()))
    assert answers[0] == answers[1] == (403, {"detail": "This key has no access to this program"})


@pytest.mark.parametrize("method,path,body", CALLS)
async def test_unknown_program_is_404_for_keys_that_may_see_it(
    ah: ActionHub, method: str, path: str, body: Any
) -> None:
    for key in (ah.make_key("admin"), ah.make_key("program:ghost=write")):
        r = await call(ah, method, path, body, ah.headers(key=key, program="ghost"))
        assert r.status_code == 404 and r.json() == {"detail": "Program not found"}


@pytest.mark.parametrize("method,path,body", CALLS)
async def test_api_version(ah: ActionHub, method: str, path: str, body: Any) -> None:
    ok = {200, 404}  # the asset/label paths may name nothing yet
    r = await call(ah, method, path, body, ah.headers(**{"api-version": "1.0"}))
    assert r.status_code in ok
    for bad in ("2.0", "1", "", "1.0.0"):
        r = await call(ah, method, path, body, ah.headers(**{"api-version": bad}))
        assert r.status_code == 400
        assert r.json() == {"detail": f"Unsupported api-version {bad!r}; this server speaks 1.0"}


async def test_read_grant_reads_but_does_not_write(ah: ActionHub) -> None:
    await ah.put_labels([{"label": "x", "weight": 1}])
    await ah.post_assets([{"asset_id": "a1"}])
    reader = ah.make_key("program:shop=read")
    for method, path, body in READS:
        r = await call(ah, method, path, body, ah.headers(key=reader))
        assert r.status_code == 200, (method, path)
    for method, path, body in WRITES:
        r = await call(ah, method, path, body, ah.headers(key=reader))
        assert r.status_code == 403 and r.json() == {
            "detail": "This key may only read this program"
        }
    assert await ah.all_labels() == {"x": 1.0}
    assert (await ah.assets())["total"] == 1


async def test_write_grant_and_admin_do_everything(ah: ActionHub) -> None:
    for key in (ah.key, ah.make_key("admin")):
        for method, path, body in WRITES[:1] + WRITES[2:3] + READS + WRITES[1:2] + WRITES[3:]:
            r = await call(ah, method, path, body, ah.headers(key=key))
            assert r.status_code == 200, (method, path, r.text)


async def test_a_grant_on_one_program_does_not_reach_another(ah: ActionHub, database) -> None:  # type: ignore[no-untyped-def]
    from labelhub.actionhub import store

    database.run_write(store.create_program, "blog")
    r = await ah.put_labels([{"label": "x", "weight": 1}], program="blog")
    assert r.status_code == 403
    r = await ah.http.get("/labels", headers=ah.headers(program="blog"))
    assert r.status_code == 403
