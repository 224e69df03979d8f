"""HAR (shared/spec/har.md): path forms, auth order, registries, artifact registration, summary,
the label update and delete, on both databases. Listings are not built yet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from labelhub.core import db as dbmod

P = "/har/api/v1"
SUMMARY_KEYS = {
    "imageName",
    "packageType",
    "labels",
    "downloadsCount",
    "createdAt",
    "modifiedAt",
    "uuid",
    "registryUUID",
}


class Har:
    def __init__(self, http: httpx.AsyncClient, key: str, make_key: Callable[..., str]) -> None:
        self.http = http
        self.key = key
        self.make_key = make_key

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"x-api-key": key or self.key}

    async def registry(
        self, space: str, identifier: str, package_type: str = "GENERIC", **extra: Any
    ) -> httpx.Response:
        body = {
            "identifier": identifier,
            "packageType": package_type,
            "config": {"type": "VIRTUAL"},
            **extra,
        }
        return await self.http.post(
            f"{P}/registry", params={"space_ref": space}, json=body, headers=self.h()
        )

    async def artifact(self, registry_ref: str, name: str, **extra: Any) -> httpx.Response:
        return await self.http.post(
            f"{P}/registry/{registry_ref}/artifacts", json={"name": name, **extra}, headers=self.h()
        )


@pytest.fixture
async def har(client: httpx.AsyncClient, make_key: Callable[..., str]) -> Har:
    h = Har(client, make_key("space:acct=edit"), make_key)
    assert (await h.registry("acct/org", "models", "HUGGINGFACE")).status_code == 201
    assert (await h.registry("acct", "generic")).status_code == 201
    return h


def envelope_error(status: int, message: str | None = None) -> Callable[[httpx.Response], None]:
    def check(r: httpx.Response) -> None:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["code"] == str(status) and isinstance(body["message"], str)
        assert set(body) <= {"code", "message", "details"}
        if message is not None:
            assert body["message"] == message

    return check


# --- registries -----------------------------------------------------------------------------


async def test_free_text_that_no_database_stores_is_400(har: Har) -> None:
    # Found by the long fuzz run: a NUL in an artifact's version reached PostgreSQL (500).
    r = await har.artifact("acct%2Fgeneric", "a", version="1\x00")
    envelope_error(400)(r)
    r = await har.registry("acct", "withnul", description="line\x00")
    envelope_error(400)(r)
    r = await har.http.put(
        f"{P}/registry/acct%2Fgeneric",
        content=b'{"description": "x\\ud800"}',
        headers={**har.h(), "content-type": "application/json"},
    )
    envelope_error(400)(r)
    # Newlines and tabs are fine in a description.
    r = await har.http.put(
        f"{P}/registry/acct%2Fgeneric", json={"description": "a\n\tb"}, headers=har.h()
    )
    assert r.status_code == 200 and r.json()["data"]["description"] == "a\n\tb"
    summary = await har.http.get(f"{P}/registry/acct%2Fgeneric/artifact/a/summary", headers=har.h())
    assert summary.status_code == 404  # nothing was written


async def test_create_registry_shape(har: Har) -> None:
    r = await har.registry(
        "acct/org/proj", "my-reg.v1_x", "PYTHON", description="d", labels=["b", "a", "b"]
    )
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "SUCCESS" and set(body) == {"status", "data"}
    data = body["data"]
    assert set(data) == {
        "identifier",
        "packageType",
        "description",
        "labels",
        "config",
        "url",
        "createdAt",
        "modifiedAt",
        "uuid",
    }
    assert data["identifier"] == "my-reg.v1_x" and data["packageType"] == "PYTHON"
    assert data["labels"] == ["a", "b"] and data["description"] == "d"
    assert data["config"] == {"type": "VIRTUAL"}
    assert data["createdAt"].isdigit() and data["createdAt"] == data["modifiedAt"]
    assert data["url"].endswith("/pkg/acct/my-reg.v1_x")


@pytest.mark.parametrize("space_ref", ["acct/x", "acct/x/+", "acct/x/ ", "acct%2Fx"])
async def test_space_ref_forms(har: Har, space_ref: str) -> None:
    if "%" in space_ref:
        r = await har.http.post(
            f"{P}/registry?space_ref={space_ref}",
            json={"identifier": "r1", "packageType": "NPM", "config": {"type": "VIRTUAL"}},
            headers=har.h(),
        )
    else:
        r = await har.registry(space_ref, "r1", "NPM")
    assert r.status_code == 201, r.text
    r = await har.http.get(f"{P}/registry/acct%2Fx%2Fr1", headers=har.h())
    assert r.status_code == 200 and r.json()["data"]["identifier"] == "r1"


async def test_parent_ref_wins_over_space_ref(har: Har) -> None:
    r = await har.registry("acct/ignored", "r2", parentRef="acct/chosen")
    assert r.status_code == 201
    assert (
        await har.http.get(f"{P}/registry/acct/chosen/r2/+", headers=har.h())
    ).status_code == 200
    assert (
        await har.http.get(f"{P}/registry/acct/ignored/r2/+", headers=har.h())
    ).status_code == 404


@pytest.mark.parametrize(
    "identifier", ["Upper", "-lead", "trail-", "double--dash", "a..b", "sp ace", "x" * 256, ""]
)
async def test_bad_identifier_is_400(har: Har, identifier: str) -> None:
    envelope_error(400)(await har.registry("acct", identifier))


async def test_registry_rules(har: Har) -> None:
    envelope_error(400, "UPSTREAM registries are not supported; use config.type VIRTUAL")(
        await har.http.post(
            f"{P}/registry",
            params={"space_ref": "acct"},
            json={"identifier": "up", "packageType": "NPM", "config": {"type": "UPSTREAM"}},
            headers=har.h(),
        )
    )
    envelope_error(400, "Registry 'models' already exists in space 'acct/org'")(
        await har.registry("acct/other", "models")
    )
    envelope_error(400)(await har.registry("acct", "x", "BOGUS"))
    envelope_error(400)(
        await har.http.post(
            f"{P}/registry",
            json={"identifier": "x", "packageType": "NPM", "config": {"type": "VIRTUAL"}},
            headers=har.h(),
        )
    )
    # Another account may reuse the identifier.
    admin = har.make_key("admin")
    r = await har.http.post(
        f"{P}/registry",
        params={"space_ref": "other"},
        json={"identifier": "models", "packageType": "NPM", "config": {"type": "VIRTUAL"}},
        headers=har.h(admin),
    )
    assert r.status_code == 201


async def test_get_update_delete_registry(har: Har) -> None:
    r = await har.http.get(f"{P}/registry/acct/org/models/+", headers=har.h())
    assert r.status_code == 200 and r.json()["data"]["packageType"] == "HUGGINGFACE"
    # Found only at its own space.
    envelope_error(404, "Registry not found")(
        await har.http.get(f"{P}/registry/acct/models/+", headers=har.h())
    )
    envelope_error(404)(await har.http.get(f"{P}/registry/acct/org/proj/models/+", headers=har.h()))

    r = await har.http.put(
        f"{P}/registry/acct%2Forg%2Fmodels",
        json={"description": "new", "labels": ["z", "y"]},
        headers=har.h(),
    )
    assert r.status_code == 200
    assert r.json()["data"]["description"] == "new" and r.json()["data"]["labels"] == ["y", "z"]
    envelope_error(400, "A registry's identifier cannot be changed")(
        await har.http.put(
            f"{P}/registry/acct%2Forg%2Fmodels", json={"identifier": "other"}, headers=har.h()
        )
    )
    envelope_error(400, "A registry's packageType cannot be changed")(
        await har.http.put(
            f"{P}/registry/acct%2Forg%2Fmodels", json={"packageType": "NPM"}, headers=har.h()
        )
    )
    await har.artifact("acct%2Forg%2Fmodels", "bert", artifactType="model")
    r = await har.http.delete(f"{P}/registry/acct/org/models/+", headers=har.h())
    assert r.status_code == 200 and r.json() == {"status": "SUCCESS"}
    envelope_error(404)(await har.http.get(f"{P}/registry/acct/org/models/+", headers=har.h()))
    envelope_error(404)(
        await har.http.get(f"{P}/registry/acct/org/models/+/artifact/bert/summary", headers=har.h())
    )


# --- auth -----------------------------------------------------------------------------------


async def test_auth_401_then_403_then_404(har: Har, database) -> None:  # type: ignore[no-untyped-def]
    from labelhub.core import keys

    revoked = har.make_key("space:acct=edit")
    database.run_write(keys.revoke_key, database.run_read(keys.authenticate, revoked).key_id)
    viewer = har.make_key("space:acct/org=view")
    stranger = har.make_key("space:zzz=edit", "program:p=write")
    paths = [
        ("GET", f"{P}/registry/acct/org/models/+", None),
        ("GET", f"{P}/registry/acct/org/nothing/+", None),
        ("PUT", f"{P}/registry/acct/org/models/+/artifact/bert/labels", {"labels": []}),
        ("PUT", f"{P}/registry/acct/org/nothing/+/artifact/bert/labels", {"labels": []}),
        ("GET", f"{P}/registry/acct/org/nothing/+/artifact/bert/summary", None),
        ("DELETE", f"{P}/registry/acct/org/nothing/+", None),
    ]
    for method, path, body in paths:
        for headers in ({}, har.h("lh_" + "B" * 43), har.h(revoked), har.h("junk")):
            r = await har.http.request(method, path, json=body, headers=headers)
            envelope_error(401, "Invalid or missing API key (x-api-key)")(r)
        # Without the grant: 403 whether or not the registry exists.
        envelope_error(403)(
            await har.http.request(method, path, json=body, headers=har.h(stranger))
        )
    # A view grant reads (404 for what is missing) but does not write.
    envelope_error(404, "Registry not found")(
        await har.http.get(f"{P}/registry/acct/org/nothing/+", headers=har.h(viewer))
    )
    assert (
        await har.http.get(f"{P}/registry/acct/org/models/+", headers=har.h(viewer))
    ).status_code == 200
    envelope_error(403, "This key may not edit space 'acct/org'")(
        await har.http.delete(f"{P}/registry/acct/org/models/+", headers=har.h(viewer))
    )
    # A grant below the registry's space does not cover it.
    below = har.make_key("space:acct/org/proj=edit")
    envelope_error(403)(await har.http.get(f"{P}/registry/acct/org/models/+", headers=har.h(below)))
    r = await har.http.post(
        f"{P}/registry",
        params={"space_ref": "acct/org"},
        json={"identifier": "nope", "packageType": "NPM", "config": {"type": "VIRTUAL"}},
        headers=har.h(viewer),
    )
    envelope_error(403, "This key may not edit space 'acct/org'")(r)


# --- artifacts and labels -------------------------------------------------------------------


async def test_register_artifact_and_summary(har: Har) -> None:
    r = await har.artifact(
        "acct%2Fgeneric", "library/nginx", version="1.2", labels=["web", "b", "web"]
    )
    assert r.status_code == 201
    data = r.json()["data"]
    assert set(data) == SUMMARY_KEYS  # artifactType omitted outside HUGGINGFACE
    assert data["imageName"] == "library/nginx" and data["packageType"] == "GENERIC"
    assert data["labels"] == ["b", "web"] and data["downloadsCount"] == 0
    envelope_error(409)(await har.artifact("acct%2Fgeneric", "library/nginx"))
    envelope_error(400, "artifactType applies to HUGGINGFACE registries only")(
        await har.artifact("acct%2Fgeneric", "x", artifactType="model")
    )
    envelope_error(400, "artifactType (model or dataset) is required in a HUGGINGFACE registry")(
        await har.artifact("acct%2Forg%2Fmodels", "bert")
    )
    envelope_error(400)(await har.artifact("acct%2Forg%2Fmodels", "bert", artifactType="weights"))
    for kind in ("model", "dataset"):
        r = await har.artifact("acct%2Forg%2Fmodels", "bert", artifactType=kind, labels=[kind])
        assert r.status_code == 201 and r.json()["data"]["artifactType"] == kind
        assert set(r.json()["data"]) == SUMMARY_KEYS | {"artifactType"}

    r = await har.http.get(
        f"{P}/registry/acct/generic/+/artifact/library/nginx/+/summary", headers=har.h()
    )
    assert r.status_code == 200 and r.json()["data"]["labels"] == ["b", "web"]
    # HUGGINGFACE: a model and a dataset share the name; artifact_type picks.
    envelope_error(
        400, "Both a model and a dataset named 'bert' exist; give artifact_type=model or dataset"
    )(
        await har.http.get(
            f"{P}/registry/acct%2Forg%2Fmodels/artifact/bert/summary", headers=har.h()
        )
    )
    r = await har.http.get(
        f"{P}/registry/acct%2Forg%2Fmodels/artifact/bert/summary",
        params={"artifact_type": "dataset"},
        headers=har.h(),
    )
    assert r.status_code == 200 and r.json()["data"]["labels"] == ["dataset"]
    envelope_error(400)(
        await har.http.get(
            f"{P}/registry/acct%2Forg%2Fmodels/artifact/bert/summary",
            params={"artifact_type": "weights"},
            headers=har.h(),
        )
    )
    envelope_error(400, "artifact_type applies to HUGGINGFACE registries only")(
        await har.http.get(
            f"{P}/registry/acct%2Fgeneric/artifact/library%2Fnginx/summary",
            params={"artifact_type": "model"},
            headers=har.h(),
        )
    )
    envelope_error(404, "Artifact not found")(
        await har.http.get(f"{P}/registry/acct%2Fgeneric/artifact/nope/summary", headers=har.h())
    )


REGISTRY_FORMS = {"encoded": "acct%2Fgeneric", "plain": "acct/generic/+"}
ARTIFACT_FORMS = {
    "flat": ("bert-base", "bert-base"),
    "encoded": ("library/nginx", "library%2Fnginx"),
    "plain": ("library/nginx", "library/nginx/+"),
}


@pytest.mark.parametrize("registry_form", REGISTRY_FORMS)
@pytest.mark.parametrize("artifact_form", ARTIFACT_FORMS)
async def test_label_update_in_every_path_form(
    har: Har, registry_form: str, artifact_form: str
) -> None:
    name, written = ARTIFACT_FORMS[artifact_form]
    created = (await har.artifact("acct%2Fgeneric", name, labels=["old"])).json()["data"]
    path = f"{P}/registry/{REGISTRY_FORMS[registry_form]}/artifact/{written}/labels"
    r = await har.http.put(
        path, json={"labels": ["prod", "a b", "Prod", "prod", "é", "Z"]}, headers=har.h()
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "SUCCESS"
    data = body["data"]
    assert data["imageName"] == name
    assert data["labels"] == sorted({"prod", "a b", "Prod", "é", "Z"}, key=str.encode)
    # Only the labels and modifiedAt change.
    for key in ("createdAt", "uuid", "registryUUID", "downloadsCount", "packageType", "imageName"):
        assert data[key] == created[key]
    assert int(data["modifiedAt"]) >= int(created["modifiedAt"])
    r = await har.http.put(path, json={"labels": []}, headers=har.h())
    assert r.status_code == 200 and r.json()["data"]["labels"] == []


async def test_label_updates_sent_together_read_their_artifacts_with_their_keys(
    har: Har, database: Any
) -> None:
    """Label updates sent at once (a write batch, or a few) are each answered as if alone: two
    registries, a key that may only view (403, nothing written), a missing artifact (404). On
    PostgreSQL the named artifacts are read with the batch's keys and registries
    (``store.named_artifact_reads``), never again on their own; ``replace_labels``, which reads
    nothing ahead, shows that read would be seen."""
    from sqlalchemy import event

    from labelhub.har import store

    assert (await har.registry("acct", "second")).status_code == 201
    names = [f"m{i}" for i in range(6)]
    for name in names:
        assert (await har.artifact("acct%2Fgeneric", name, labels=["old"])).status_code == 201
    assert (await har.artifact("acct%2Fsecond", "s0")).status_code == 201
    viewer = har.make_key("space:acct=view")
    sent = [(f"acct%2Fgeneric/artifact/{n}", [f"{n}-new", "shared"], har.h()) for n in names]
    sent += [
        ("acct%2Fsecond/artifact/s0", ["second"], har.h()),
        ("acct%2Fgeneric/artifact/m0", ["viewer"], har.h(viewer)),
        ("acct%2Fgeneric/artifact/missing", ["x"], har.h()),
    ]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        answers = await asyncio.gather(
            *(
                har.http.put(f"{P}/registry/{path}/labels", json={"labels": labels}, headers=h)
                for path, labels, h in sent
            )
        )
        assert [r.status_code for r in answers] == [200] * 7 + [403, 404]
        for (path, labels, _), r in zip(sent[:7], answers, strict=False):
            assert r.json()["data"]["labels"] == sorted(labels), path
            summary = await har.http.get(f"{P}/registry/{path}/summary", headers=har.h())
            assert summary.json()["data"]["labels"] == sorted(labels), path
        if database.dialect == "postgresql":
            on_its_own = str(
                store._NAMED_ARTIFACTS["postgresql"].compile(dialect=database.engine.dialect)
            )
            assert on_its_own not in statements
            with database.transaction(write=True) as conn:
                registry = store.find_registry(conn, "acct", "second")
                store.replace_labels(conn, registry, "s0", None, ["again"])
            assert on_its_own in statements
    finally:
        event.remove(database.engine, "before_cursor_execute", record)


BAD_BODIES: list[tuple[str, bytes]] = [
    ("missing labels", b"{}"),
    ("labels not an array", b'{"labels": "prod"}'),
    ("labels an object", b'{"labels": {"a": 1}}'),
    ("a label not a string", b'{"labels": [1]}'),
    ("empty label", b'{"labels": [""]}'),
    ("256 characters", b'{"labels": ["' + b"x" * 256 + b'"]}'),
    ("control character", b'{"labels": ["a\\u0000b"]}'),
    ("C1 control", b'{"labels": ["a\\u0085"]}'),
    ("1001 distinct", b'{"labels": [' + b", ".join(b'"l%d"' % i for i in range(1001)) + b"]}"),
    ("malformed JSON", b'{"labels": ['),
    ("not JSON at all", b"labels=prod"),
]


@pytest.mark.parametrize("name,body", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_label_update_is_400_and_writes_nothing(har: Har, name: str, body: bytes) -> None:
    await har.artifact("acct%2Fgeneric", "a", labels=["kept"])
    r = await har.http.put(
        f"{P}/registry/acct%2Fgeneric/artifact/a/labels",
        content=body,
        headers={**har.h(), "content-type": "application/json"},
    )
    envelope_error(400)(r)
    r = await har.http.get(f"{P}/registry/acct%2Fgeneric/artifact/a/summary", headers=har.h())
    assert r.json()["data"]["labels"] == ["kept"]


async def test_1000_distinct_labels_after_duplicates_are_fine(har: Har) -> None:
    await har.artifact("acct%2Fgeneric", "a")
    labels = [f"l{i:04d}" for i in range(1000)] * 2
    r = await har.http.put(
        f"{P}/registry/acct%2Fgeneric/artifact/a/labels", json={"labels": labels}, headers=har.h()
    )
    assert r.status_code == 200 and len(r.json()["data"]["labels"]) == 1000


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
async def test_postgresql_label_writes_run_on_plans_made_once(
    har: Har, database: dbmod.Database
) -> None:
    """PostgreSQL: a write transaction runs its prepared statements on their generic plans,
    made once per connection (``plan_cache_mode``, set by ``make_engine``). Left to itself,
    PostgreSQL planned two statements of every batch of a few label replacements again for its
    values (the named artifacts' read, their touch): over an array of 2 rows, their custom
    plans cost less than the generic plan, which guesses 10. W2 at 16 connections spent 17 % of
    the server's CPU planning them (bench/README.md)."""
    for i in range(2):
        assert (await har.artifact("acct%2Fgeneric", f"a{i}")).status_code == 201
    for turn in range(10):  # psycopg prepares a statement at its 5th run
        answers = await asyncio.gather(
            *(
                har.http.put(
                    f"{P}/registry/acct%2Fgeneric/artifact/a{i}/labels",
                    json={"labels": [f"turn-{turn}", f"a{i}"]},
                    headers=har.h(),
                )
                for i in range(2)
            )
        )
        assert [r.status_code for r in answers] == [200, 200]

    def plans(conn: Any) -> list[Any]:  # the writer's own session
        return conn.exec_driver_sql(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        ).all()

    prepared = await database.write(plans)
    touched = [p for p in prepared if "artifacts" in p.statement and "labels" in p.statement]
    assert len(touched) >= 5  # the named artifacts' read, their touch, the label rows' writes
    assert all(p.custom_plans == 0 and p.generic_plans >= 1 for p in prepared), prepared


async def test_label_update_on_huggingface_and_missing(har: Har) -> None:
    for kind in ("model", "dataset"):
        await har.artifact("acct%2Forg%2Fmodels", "bert", artifactType=kind)
    base = f"{P}/registry/acct%2Forg%2Fmodels/artifact/bert/labels"
    envelope_error(400)(await har.http.put(base, json={"labels": ["x"]}, headers=har.h()))
    r = await har.http.put(
        base, params={"artifact_type": "model"}, json={"labels": ["x"]}, headers=har.h()
    )
    assert r.status_code == 200 and r.json()["data"]["artifactType"] == "model"
    r = await har.http.get(
        f"{P}/registry/acct%2Forg%2Fmodels/artifact/bert/summary",
        params={"artifact_type": "dataset"},
        headers=har.h(),
    )
    assert r.json()["data"]["labels"] == []
    envelope_error(404, "Artifact not found")(
        await har.http.put(
            f"{P}/registry/acct%2Forg%2Fmodels/artifact/gpt/labels",
            params={"artifact_type": "model"},
            json={"labels": []},
            headers=har.h(),
        )
    )
    envelope_error(404, "Registry not found")(
        await har.http.put(
            f"{P}/registry/acct%2Fnope/artifact/gpt/labels", json={"labels": []}, headers=har.h()
        )
    )


async def test_delete_artifact(har: Har) -> None:
    await har.artifact("acct%2Fgeneric", "library/nginx")
    r = await har.http.delete(
        f"{P}/registry/acct/generic/+/artifact/library/nginx/+", headers=har.h()
    )
    assert r.status_code == 200 and r.json() == {"status": "SUCCESS"}
    envelope_error(404)(
        await har.http.delete(
            f"{P}/registry/acct/generic/+/artifact/library/nginx/+", headers=har.h()
        )
    )
    # An artifact literally named "labels" is deleted, not mistaken for the label listing.
    await har.artifact("acct%2Fgeneric", "labels")
    r = await har.http.delete(f"{P}/registry/acct%2Fgeneric/artifact/labels", headers=har.h())
    assert r.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        f"{P}/registry/justone",
        f"{P}/registry/justone/+",
        f"{P}/registry/a%2Fb%2Fc%2Fd%2Freg",
        f"{P}/registry//artifact/x/labels",
    ],
)
async def test_unparsable_refs_are_400(har: Har, path: str) -> None:
    envelope_error(400)(await har.http.get(path, headers=har.h()))


async def test_unknown_route_and_method_in_the_envelope(har: Har) -> None:
    envelope_error(404)(
        await har.http.get(f"{P}/registry/acct%2Fgeneric/nonsense", headers=har.h())
    )
    envelope_error(405)(await har.http.patch(f"{P}/registry/acct%2Fgeneric", headers=har.h()))


# --- every route in every path form ---------------------------------------------------------

DEEP_REGISTRY_FORMS = {"encoded": "acct%2Forg%2Fproj%2Fdeep", "plain": "acct/org/proj/deep/+"}


@pytest.mark.parametrize("form", DEEP_REGISTRY_FORMS)
async def test_registry_routes_in_both_forms(har: Har, form: str) -> None:
    ref = DEEP_REGISTRY_FORMS[form]
    assert (await har.registry("acct/org/proj", "deep")).status_code == 201
    calls = [
        ("GET", f"/registry/{ref}", None, 200),
        ("PUT", f"/registry/{ref}", {"description": "x"}, 200),
        ("POST", f"/registry/{ref}/artifacts", {"name": "a/b"}, 201),
        ("GET", f"/registry/{ref}/artifacts", None, 200),
        ("GET", f"/registry/{ref}/artifact/labels", None, 200),
        ("DELETE", f"/registry/{ref}", None, 200),
    ]
    for method, path, body, status in calls:
        r = await har.http.request(method, P + path, json=body, headers=har.h())
        assert r.status_code == status, (method, path, r.text)


@pytest.mark.parametrize("registry_form", DEEP_REGISTRY_FORMS)
@pytest.mark.parametrize("artifact_form", ARTIFACT_FORMS)
async def test_artifact_routes_in_every_combination(
    har: Har, registry_form: str, artifact_form: str
) -> None:
    assert (await har.registry("acct/org/proj", "deep")).status_code == 201
    name, written = ARTIFACT_FORMS[artifact_form]
    assert (await har.artifact("acct%2Forg%2Fproj%2Fdeep", name, labels=["l"])).status_code == 201
    base = f"{P}/registry/{DEEP_REGISTRY_FORMS[registry_form]}/artifact/{written}"
    r = await har.http.get(f"{base}/summary", headers=har.h())
    assert r.status_code == 200 and r.json()["data"]["imageName"] == name
    r = await har.http.put(f"{base}/labels", json={"labels": ["m"]}, headers=har.h())
    assert r.status_code == 200 and r.json()["data"]["labels"] == ["m"]
    r = await har.http.delete(base, headers=har.h())
    assert r.status_code == 200
    assert (await har.http.get(f"{base}/summary", headers=har.h())).status_code == 404


@pytest.mark.parametrize("space", ["acct%2Forg", "acct/org/+", "acct"])
async def test_space_routes_in_every_form(har: Har, space: str) -> None:
    for route in ("artifacts", "registries"):
        r = await har.http.get(f"{P}/spaces/{space}/{route}", headers=har.h())
        assert r.status_code == 200, r.text
    r = await har.http.get(f"{P}/spaces/{space}/registries", headers=har.h())
    expected = {"models"} if space != "acct" else {"models", "generic"}
    assert {x["identifier"] for x in r.json()["data"]["registries"]} == expected


async def test_huggingface_name_alone_finds_the_only_one(har: Har) -> None:
    await har.artifact("acct%2Forg%2Fmodels", "solo", artifactType="dataset", labels=["d"])
    r = await har.http.get(
        f"{P}/registry/acct%2Forg%2Fmodels/artifact/solo/summary", headers=har.h()
    )
    assert r.status_code == 200 and r.json()["data"]["artifactType"] == "dataset"
    r = await har.http.put(
        f"{P}/registry/acct%2Forg%2Fmodels/artifact/solo/labels",
        json={"labels": ["e"]},
        headers=har.h(),
    )
    assert r.status_code == 200 and r.json()["data"]["labels"] == ["e"]
    envelope_error(404)(
        await har.http.get(
            f"{P}/registry/acct%2Forg%2Fmodels/artifact/solo/summary",
            params={"artifact_type": "model"},
            headers=har.h(),
        )
    )


@pytest.mark.parametrize(
    "method,path,params,body",
    [
        ("GET", "/registry/acct%2F%00x", {}, None),
        ("GET", "/registry/acct%00%2Fx", {}, None),
        ("GET", "/registry/acct%2Fgeneric/artifact/a%00b/summary", {}, None),
        ("PUT", "/registry/acct%2Fgeneric/artifact/a%01b/labels", {}, {"labels": []}),
        ("DELETE", "/registry/acct%2Fgeneric/artifact/%7F", {}, None),
        ("POST", "/registry/acct%2Fgeneric/artifacts", {}, {"name": "a\u0000b"}),
        ("POST", "/registry/acct%2Fgeneric/artifacts", {}, {"name": "x", "labels": ["\u0000"]}),
        ("GET", "/spaces/acct%00/artifacts", {}, None),
    ],
)
async def test_hostile_refs_and_names_are_400(
    har: Har, method: str, path: str, params: dict[str, Any], body: Any
) -> None:
    envelope_error(400)(
        await har.http.request(method, P + path, params=params, json=body, headers=har.h())
    )
    assert (await har.http.get(f"{P}/registry/acct%2Fgeneric/artifacts", headers=har.h())).json()[
        "data"
    ]["itemCount"] == 0


async def test_hostile_filters_match_nothing(har: Har) -> None:
    await har.artifact("acct%2Fgeneric", "a", labels=["x"])
    for params in ({"label": "\u0000"}, {"label": ["x", "a\u0001"]}, {"search_term": "\u0000"}):
        r = await har.http.get(
            f"{P}/registry/acct%2Fgeneric/artifacts", params=params, headers=har.h()
        )
        assert r.status_code == 200 and r.json()["data"]["itemCount"] == 0
    r = await har.http.get(
        f"{P}/spaces/acct/artifacts", params={"reg_identifier": "\u0000"}, headers=har.h()
    )
    assert r.status_code == 200 and r.json()["data"]["itemCount"] == 0
    r = await har.http.get(
        f"{P}/registry/acct%2Fgeneric/artifact/labels",
        params={"search_term": "\u0000"},
        headers=har.h(),
    )
    assert r.status_code == 200 and r.json()["data"]["itemCount"] == 0
