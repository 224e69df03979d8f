"""The auth matrix: every route of the app, every kind of key, the exact status and body shape.

``RULES`` holds one auth rule and one concrete, valid request per route. The route list comes from
the app itself (every APIRoute, in the OpenAPI document or not), so a new route without a rule fails
``test_every_route_has_an_auth_rule``. Each route is then sent, on a freshly seeded database:

    none       no key header
    malformed  a key that is not of the key format
    unknown    a well-formed key that was never issued
    revoked    a key that was issued and revoked
    elsewhere  a valid key granted on another program / space (for /admin: a non-admin key)
    reader     a read/view key on the right program / space (the right key for a read)
    right      the least key that should pass

Denied writes must change nothing: the right key's request comes last and still gets its 2xx
(a delete or a create that had slipped through would answer 404 or 409).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core import keys
from labelhub.core.config import Settings
from tests import fuzzing

CASES = ["none", "malformed", "unknown", "revoked", "elsewhere", "reader", "right"]
AH_BAD_KEY = {"detail": "Could not validate API KEY"}
ADMIN_BAD_KEY = {"detail": "Invalid or missing API key (x-api-key)"}
ADMIN_NOT_ADMIN = {"detail": "This key is not an admin key"}
REG = "/har/api/v1/registry/acct%2Forg%2Fgeneric"


@dataclass(frozen=True)
class Rule:
    api: str  # "public", "admin", "actionhub", "har"
    write: bool
    ok: int
    path: str  # a concrete path ({key_id} is filled in at run time)
    params: dict[str, Any] | None = None
    body: Any = None


def ah(write: bool, path: str, body: Any = None, ok: int = 200) -> Rule:
    return Rule("actionhub", write, ok, path, body=body)


def har(write: bool, path: str, body: Any = None, ok: int = 200, **params: Any) -> Rule:
    return Rule("har", write, ok, path, params or None, body)


def admin(path: str, body: Any = None, ok: int = 200) -> Rule:
    return Rule("admin", True, ok, path, body=body)


def public(path: str) -> Rule:
    return Rule("public", False, 200, path)


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): public("/healthz"),
    ("GET", "/readyz"): public("/readyz"),
    ("GET", "/metrics"): public("/metrics"),
    ("GET", "/admin/programs"): admin("/admin/programs"),
    ("POST", "/admin/programs"): admin("/admin/programs", {"program_id": "new"}, 201),
    ("DELETE", "/admin/programs/{program_id}"): admin("/admin/programs/spare-a"),
    ("GET", "/admin/keys"): admin("/admin/keys"),
    ("POST", "/admin/keys"): admin(
        "/admin/keys", {"name": "k", "grants": [{"scope": "admin", "role": "admin"}]}, 201
    ),
    ("DELETE", "/admin/keys/{key_id}"): admin("/admin/keys/{key_id}"),
    ("PUT", "/labels"): ah(True, "/labels", {"labels": [{"label": "x", "weight": 1}]}),
    ("GET", "/labels"): ah(False, "/labels"),
    ("DELETE", "/labels/{label}"): ah(True, "/labels/red"),
    ("POST", "/assets"): ah(True, "/assets", {"assets": [{"asset_id": "new"}]}),
    ("GET", "/assets"): ah(False, "/assets"),
    ("GET", "/assets/{asset_id}"): ah(False, "/assets/a1"),
    ("DELETE", "/assets/{asset_id}"): ah(True, "/assets/a1"),
    ("POST", "/events"): ah(
        True,
        "/events",
        {
            "events": [
                {
                    "user_id": "u9",
                    "event_timestamp": "2026-11-23T10:00:00Z",
                    "event_type": "view",
                    "asset_id": "a1",
                }
            ]
        },
    ),
    ("GET", "/users/{user_id}/events"): ah(False, "/users/u1/events"),
    ("GET", "/users/{user_id}/actions"): ah(False, "/users/u1/actions"),
    ("PUT", "/users/{user_id}/rebase"): ah(True, "/users/u1/rebase"),
    ("POST", "/har/api/v1/registry"): har(
        True,
        "/har/api/v1/registry",
        {"identifier": "new", "packageType": "GENERIC", "config": {"type": "VIRTUAL"}},
        201,
        space_ref="acct",
    ),
    ("GET", "/har/api/v1/registry/{registry_ref}"): har(False, REG),
    ("PUT", "/har/api/v1/registry/{registry_ref}"): har(True, REG, {"description": "d"}),
    ("DELETE", "/har/api/v1/registry/{registry_ref}"): har(
        True, "/har/api/v1/registry/acct%2Fspare1"
    ),
    ("POST", "/har/api/v1/registry/{registry_ref}/artifacts"): har(
        True, f"{REG}/artifacts", {"name": "new"}, 201
    ),
    ("GET", "/har/api/v1/registry/{registry_ref}/artifacts"): har(False, f"{REG}/artifacts"),
    ("GET", "/har/api/v1/registry/{registry_ref}/artifact/{artifact}/summary"): har(
        False, f"{REG}/artifact/bert/summary"
    ),
    ("PUT", "/har/api/v1/registry/{registry_ref}/artifact/{artifact}/labels"): har(
        True, f"{REG}/artifact/bert/labels", {"labels": ["a"]}
    ),
    ("DELETE", "/har/api/v1/registry/{registry_ref}/artifact/{artifact}"): har(
        True, f"{REG}/artifact/bert"
    ),
    ("GET", "/har/api/v1/registry/{registry_ref}/artifact/labels"): har(
        False, f"{REG}/artifact/labels"
    ),
    ("GET", "/har/api/v1/spaces/{space_ref}/artifacts"): har(
        False, "/har/api/v1/spaces/acct%2Forg/artifacts"
    ),
    ("GET", "/har/api/v1/spaces/{space_ref}/registries"): har(
        False, "/har/api/v1/spaces/acct/registries"
    ),
}


def app_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite:///never-opened.db"))
    found = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    return found | documented


ROUTES = sorted(app_routes())


def test_every_route_has_an_auth_rule() -> None:
    missing = [f"{m} {p}" for m, p in ROUTES if (m, p) not in RULES]
    assert not missing, f"routes without an auth rule in tests/test_auth_matrix.py: {missing}"
    stale = [f"{m} {p}" for m, p in RULES if (m, p) not in ROUTES]
    assert not stale, f"rules for routes the app no longer has: {stale}"


def _keys(rule: Rule, make_key: Callable[..., str], database: dbmod.Database) -> dict[str, Any]:
    revoked_secret = make_key("admin", name="revoked")
    with database.transaction() as conn:
        principal = keys.authenticate(conn, revoked_secret)
    assert principal is not None
    database.run_write(keys.revoke_key, principal.key_id)
    if rule.api == "actionhub":
        elsewhere, reader, right = (
            "program:other=write",
            "program:shop=read",
            "program:shop=write" if rule.write else "program:shop=read",
        )
    elif rule.api == "har":
        elsewhere, reader, right = (
            "space:other=edit",
            "space:acct=view",
            "space:acct=edit" if rule.write else "space:acct=view",
        )
    else:  # admin and public: program and space keys are not admin keys
        elsewhere, reader, right = "program:shop=write", "space:acct=view", "admin"
    return {
        "none": None,
        "malformed": "not-a-key",
        "unknown": keys.mint_secret(),
        "revoked": revoked_secret,
        "elsewhere": make_key(elsewhere),
        "reader": make_key(reader),
        "right": make_key(right),
    }


def _expected(rule: Rule, case: str) -> tuple[int, Callable[[Any], bool]]:
    """The status and a test of the body shape for one case of one rule."""

    def detail_is(text: str | None) -> Callable[[Any], bool]:
        return lambda body: (
            set(body) == {"detail"}
            and (body["detail"] == text if text else isinstance(body["detail"], str))
        )

    def envelope(status: int) -> Callable[[Any], bool]:
        return lambda body: (
            set(body) <= {"code", "message", "details"}
            and body["code"] == str(status)
            and isinstance(body["message"], str)
        )

    granted = case == "right" or (case == "reader" and not rule.write)
    if rule.api == "public" or granted:
        return rule.ok, lambda body: True
    if rule.api == "actionhub":
        if case in ("none", "malformed", "unknown", "revoked"):
            return 403, lambda body: body == AH_BAD_KEY
        return 403, detail_is(None)
    if rule.api == "har":
        if case in ("none", "malformed", "unknown", "revoked"):
            return 401, envelope(401)
        return 403, envelope(403)
    if case in ("none", "malformed", "unknown", "revoked"):
        return 401, lambda body: body == ADMIN_BAD_KEY
    return 403, lambda body: body == ADMIN_NOT_ADMIN


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_auth_matrix(
    method: str,
    path: str,
    settings: Settings,
    database: dbmod.Database,
    make_key: Callable[..., str],
) -> None:
    rule = RULES[(method, path)]
    admin_key = database.run_write(keys.create_key, "admin", [keys.parse_grant("admin", "admin")])
    app = create_app(settings, database)
    secrets = _keys(rule, make_key, database)
    header = "actionhub-key" if rule.api == "actionhub" else "x-api-key"
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://labelhub.test") as http:
        seeded = await fuzzing.seed_http(http, admin_key.secret, admin_key.id)
        url = rule.path.replace("{key_id}", str(seeded.key_ids[0]))
        for case in CASES:
            headers = {"program-id": "shop"} if rule.api == "actionhub" else {}
            if secrets[case] is not None:
                headers[header] = secrets[case]
            r = await http.request(method, url, params=rule.params, json=rule.body, headers=headers)
            status, shape = _expected(rule, case)
            assert r.status_code == status, (case, r.text)
            if rule.api != "public" or r.headers["content-type"].startswith("application/json"):
                assert shape(r.json()), (case, r.text)
