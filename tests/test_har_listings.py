"""HAR listings: registry artifacts, distinct labels, space artifacts, space registries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, text

from labelhub.core import db as dbmod
from labelhub.har import store
from tests.test_har_core import Har, envelope_error

P = "/har/api/v1"
ENTRY_KEYS = {
    "name",
    "registryIdentifier",
    "packageType",
    "labels",
    "downloadsCount",
    "lastModified",
    "latestVersion",
    "uuid",
    "registryUUID",
}


@pytest.fixture
async def filled(client: httpx.AsyncClient, make_key: Callable[..., str]) -> Har:
    h = Har(client, make_key("space:acct=edit"), make_key)
    await h.registry("acct", "docker", "DOCKER")
    await h.registry("acct/org", "hf", "HUGGINGFACE")
    await h.registry("acct/org/proj", "py", "PYTHON")
    for i, (name, labels) in enumerate(
        [
            ("library/nginx", ["prod", "web", "x"]),
            ("library/redis", ["prod", "cache"]),
            ("Web_App", ["web", "prod", "canary"]),
            ("50%off", ["web"]),
            ("plain", []),
        ]
    ):
        r = await h.artifact("acct%2Fdocker", name, labels=labels, version=f"1.{i}")
        assert r.status_code == 201
    await h.artifact("acct%2Forg%2Fhf", "bert", artifactType="model", labels=["prod", "nlp"])
    await h.artifact("acct%2Forg%2Fhf", "bert", artifactType="dataset", labels=["nlp"])
    await h.artifact("acct%2Forg%2Fproj%2Fpy", "requests", labels=["prod"])
    return h


async def get(h: Har, path: str, **params: Any) -> dict[str, Any]:
    r = await h.http.get(P + path, params=params, headers=h.h())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "SUCCESS"
    data: dict[str, Any] = r.json()["data"]
    return data


def names(data: dict[str, Any]) -> list[str]:
    return [a["name"] for a in data["artifacts"]]


async def test_registry_artifacts_shape_and_default_order(filled: Har) -> None:
    data = await get(filled, "/registry/acct%2Fdocker/artifacts")
    assert set(data) == {"artifacts", "itemCount", "pageCount", "pageIndex", "pageSize"}
    assert (data["itemCount"], data["pageCount"], data["pageIndex"], data["pageSize"]) == (
        5,
        1,
        0,
        20,
    )
    assert names(data) == [
        "plain",
        "50%off",
        "Web_App",
        "library/redis",
        "library/nginx",
    ]  # lastModified DESC
    entry = data["artifacts"][-1]
    assert set(entry) == ENTRY_KEYS  # artifactType only for HUGGINGFACE
    assert entry["registryIdentifier"] == "docker" and entry["packageType"] == "DOCKER"
    assert entry["labels"] == ["prod", "web", "x"] and entry["latestVersion"] == "1.0"


async def test_latest_version_is_null_not_left_out(filled: Har) -> None:
    # Found by the contract fuzzer: exclude_none dropped "latestVersion" for unversioned artifacts.
    assert (await filled.artifact("acct%2Fdocker", "unversioned")).status_code == 201
    data = await get(filled, "/registry/acct%2Fdocker/artifacts", search_term="unversioned")
    [entry] = data["artifacts"]
    assert set(entry) == ENTRY_KEYS and entry["latestVersion"] is None
    [entry] = (await get(filled, "/spaces/acct/artifacts", search_term="unversioned"))["artifacts"]
    assert set(entry) == ENTRY_KEYS and entry["latestVersion"] is None


async def test_label_filter_needs_every_label(filled: Har) -> None:
    assert names(
        await get(
            filled,
            "/registry/acct%2Fdocker/artifacts",
            label="prod",
            sort_field="name",
            sort_order="ASC",
        )
    ) == ["Web_App", "library/nginx", "library/redis"]
    data = await get(
        filled,
        "/registry/acct%2Fdocker/artifacts",
        label=["prod", "web"],
        sort_field="name",
        sort_order="ASC",
    )
    assert names(data) == ["Web_App", "library/nginx"] and data["itemCount"] == 2
    assert names(
        await get(filled, "/registry/acct%2Fdocker/artifacts", label=["prod", "web", "canary"])
    ) == ["Web_App"]
    assert (await get(filled, "/registry/acct%2Fdocker/artifacts", label=["prod", "nope"]))[
        "itemCount"
    ] == 0
    assert names(
        await get(
            filled,
            "/registry/acct%2Fdocker/artifacts",
            label=["web", "web"],
            sort_field="name",
            sort_order="ASC",
        )
    ) == ["50%off", "Web_App", "library/nginx"]


async def test_search_term_and_sorting(filled: Har) -> None:
    path = "/registry/acct%2Fdocker/artifacts"
    assert names(
        await get(filled, path, search_term="WEB", sort_field="name", sort_order="ASC")
    ) == ["Web_App"]
    assert names(await get(filled, path, search_term="%")) == ["50%off"]
    assert names(await get(filled, path, search_term="_")) == ["Web_App"]
    assert names(
        await get(filled, path, search_term="library/", sort_field="name", sort_order="DESC")
    ) == ["library/redis", "library/nginx"]
    assert (await get(filled, path, search_term="a\u0000"))["itemCount"] == 0
    by_name = names(await get(filled, path, sort_field="name", sort_order="ASC"))
    assert by_name == sorted(by_name, key=str.encode)
    for bad in (
        {"sort_field": "size"},
        {"sort_order": "up"},
        {"page": -1},
        {"size": 0},
        {"size": 101},
    ):
        envelope_error(400)(await filled.http.get(P + path, params=bad, headers=filled.h()))


async def test_paging(filled: Har) -> None:
    path = "/registry/acct%2Fdocker/artifacts"
    pages = [
        await get(filled, path, size=2, page=i, sort_field="name", sort_order="ASC")
        for i in range(4)
    ]
    assert [(p["itemCount"], p["pageCount"], p["pageIndex"], p["pageSize"]) for p in pages] == [
        (5, 3, i, 2) for i in range(4)
    ]
    assert [n for p in pages for n in names(p)] == sorted(
        names(await get(filled, path)), key=str.encode
    )
    assert pages[3]["artifacts"] == []


COLOURS = ("red", "green", "blue", "cyan")


def _search_labels_hold(database: dbmod.Database) -> None:
    """Every artifact's label set as the label filters find it holds exactly its label rows:
    PostgreSQL's array, each as "<registry id>:<label>"; SQLite's text, each as "r<registry
    id>x<the label's UTF-8 in hex>", and its FTS5 index answers each token with the artifacts
    that carry it, each pair of tokens ("r<registry id>x<hex>y<hex>", in text order) with the
    artifacts of up to ``PAIRED`` labels that carry both, and "r<registry id>m" with those of
    more. Each label row carries its artifact's registry."""
    with database.engine.connect() as conn:
        astray = conn.execute(
            text(
                "SELECT l.artifact_id, l.label FROM artifact_labels AS l JOIN artifacts AS a "
                "ON a.id = l.artifact_id WHERE l.registry_id <> a.registry_id"
            )
        ).all()
        assert astray == []
        stored = dict(conn.execute(text("SELECT id, search_labels FROM artifacts")).all())
        expected: dict[int, list[str]] = {artifact: [] for artifact in stored}
        rows = conn.execute(text("SELECT artifact_id, registry_id, label FROM artifact_labels"))
        for artifact, registry, label in rows:
            if database.dialect == "postgresql":
                expected[artifact].append(f"{registry}:{label}")
            else:
                expected[artifact].append(f"r{registry}x{label.encode().hex().upper()}")
        if database.dialect == "sqlite":
            stored = {a: v.split() for a, v in stored.items()}
            fts = "artifact_labels_fts"
            conn.exec_driver_sql(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")
            indexed: dict[int, set[str]] = {}
            for artifact, tokens in expected.items():
                ordered = sorted(tokens)
                indexed[artifact] = set(tokens)
                if len(tokens) > store.PAIRED:
                    indexed[artifact].add(tokens[0].partition("x")[0] + "m")
                else:
                    indexed[artifact] |= {
                        f"{a}y{b.partition('x')[2]}"
                        for i, a in enumerate(ordered)
                        for b in ordered[i + 1 :]
                    }
            for token in {t for tokens in indexed.values() for t in tokens}:
                found = conn.exec_driver_sql(
                    f"SELECT rowid FROM {fts} WHERE {fts} MATCH ?", (f'"{token}"',)
                )
                assert {a for (a,) in found} == {a for a, v in indexed.items() if token in v}
    assert stored and {a: sorted(v) for a, v in stored.items()} == {
        a: sorted(v) for a, v in expected.items()
    }


async def test_filtered_listing_is_the_full_listing_filtered(
    client: httpx.AsyncClient, make_key: Callable[..., str], database: dbmod.Database
) -> None:
    """Label filters, a search and paging, in every sort: the same artifacts, order and count as
    the unfiltered listing (another code path: kept counts, no label join) filtered here; again
    after label updates (several in one write batch, one artifact twice, others given the
    labels they have) and deletions."""
    h = Har(client, make_key("space:acct=edit"), make_key)
    await h.registry("acct", "many", "DOCKER")
    await h.registry("acct/team", "more", "DOCKER")
    rng = random.Random(5)
    artifacts: list[tuple[str, str]] = []
    for i in range(36):
        labels = [label for label in COLOURS if rng.random() < 0.5]
        registry = "acct%2Fmany" if i % 4 else "acct%2Fteam%2Fmore"
        name = f"img-{i:02d}" + ("-X" if i % 3 == 0 else "")
        assert (await h.artifact(registry, name, labels=labels)).status_code == 201
        artifacts.append((registry, name))
    await _check_filtered_listings(h)
    _search_labels_hold(database)

    async def relabel(registry: str, name: str) -> None:
        labels = [label for label in COLOURS if rng.random() < 0.5]
        r = await client.put(
            f"{P}/registry/{registry}/artifact/{name}/labels",
            json={"labels": labels},
            headers=h.h(),
        )
        assert r.status_code == 200, r.text

    async def same_labels(registry: str, name: str) -> None:  # modifiedAt alone changes
        path = f"{P}/registry/{registry}/artifact/{name}"
        before = (await client.get(f"{path}/summary", headers=h.h())).json()["data"]
        r = await client.put(f"{path}/labels", json={"labels": before["labels"]}, headers=h.h())
        assert r.status_code == 200, r.text
        assert r.json()["data"]["labels"] == before["labels"]

    chosen = rng.sample(artifacts, 14)
    await asyncio.gather(
        *(relabel(*artifact) for artifact in [*chosen, chosen[0]]),
        *(same_labels(*artifact) for artifact in artifacts if artifact not in chosen),
    )
    for registry, name in rng.sample(artifacts, 5):
        r = await client.delete(f"{P}/registry/{registry}/artifact/{name}", headers=h.h())
        assert r.status_code == 200, r.text
    _search_labels_hold(database)
    await _check_filtered_listings(h)


async def _check_filtered_listings(h: Har) -> None:
    for path in ("/registry/acct%2Fmany/artifacts", "/spaces/acct/artifacts"):
        for sort in (
            {"sort_field": "name", "sort_order": "ASC"},
            {"sort_field": "lastModified", "sort_order": "DESC"},
            {"sort_field": "downloadsCount", "sort_order": "ASC"},
        ):
            full = (await get(h, path, size=100, **sort))["artifacts"]
            for wanted in ([], ["red"], ["blue", "red"], ["green", "cyan", "blue"], ["red", "no"]):
                for search in (None, "-x", "IMG-1"):
                    expected = [
                        a["name"]
                        for a in full
                        if set(wanted) <= set(a["labels"])
                        and (search is None or search.casefold() in a["name"].casefold())
                    ]
                    params: dict[str, Any] = {"label": wanted, "size": 4, **sort}
                    if search is not None:
                        params["search_term"] = search
                    seen: list[str] = []
                    for page in range(len(expected) // 4 + 2):  # one page past the end
                        data = await get(h, path, page=page, **params)
                        assert data["itemCount"] == len(expected), (path, sort, wanted, search)
                        seen += names(data)
                    assert seen == expected, (path, sort, wanted, search)


async def test_last_modified_pages_are_walked_off_the_sort_index(
    client: httpx.AsyncClient, make_key: Callable[..., str], database: dbmod.Database
) -> None:
    """A listing of one registry filtered by common labels, in lastModified order (the default),
    reads the registry's artifacts in that order and probes their labels (``har.store._walk``).
    Labels whose first artifacts fill the page, labels whose matches lie at the other end of the
    order (the bounded walk reads too few of them, and the matches are sorted instead), one
    label, three labels, both orders, two page sizes and a page past the end: the full listing
    filtered, with the true count, both ways taken. A label update moves its artifact to the
    front."""
    h = Har(client, make_key("space:acct=edit"), make_key)
    await h.registry("acct", "walk", "DOCKER")
    registry, path = "acct%2Fwalk", "/registry/acct%2Fwalk/artifacts"
    for i in range(120):
        # "old": the 60 oldest; "many": the 20 oldest and the 60 newest; so "old" and "many"
        # together are the 20 oldest.
        labels = ["all", *(["old"] if i < 60 else []), *(["many"] if i < 20 or i >= 60 else [])]
        r = await h.artifact(registry, f"a-{i:03d}", labels=[*labels, *(["even"] * (i % 2 == 0))])
        assert r.status_code == 201, r.text
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async def check() -> None:
        for order in ("DESC", "ASC"):
            full = [
                a
                for page in (0, 1)
                for a in (await get(h, path, size=100, page=page, sort_order=order))["artifacts"]
            ]
            for wanted in (
                ["old", "many"],
                ["many", "old"],
                ["old"],
                ["even", "all"],
                ["many", "even"],
                ["old", "many", "even"],
            ):
                expected = [a["name"] for a in full if set(wanted) <= set(a["labels"])]
                for size in (4, 7):
                    seen: list[str] = []
                    for page in range(len(expected) // size + 2):
                        data = await get(
                            h, path, label=wanted, size=size, page=page, sort_order=order
                        )
                        assert data["itemCount"] == len(expected), (order, wanted, size, page)
                        seen += names(data)
                    assert seen == expected, (order, wanted, size)

    event.listen(database.engine, "after_cursor_execute", record)
    try:
        await check()
        r = await client.put(
            f"{P}/registry/{registry}/artifact/a-005/labels",
            json={"labels": ["all", "many", "old"]},
            headers=h.h(),
        )
        assert r.status_code == 200, r.text
        assert names(await get(h, path, label=["old", "many"], size=2)) == ["a-005", "a-019"]
        _search_labels_hold(database)
        await check()
    finally:
        event.remove(database.engine, "after_cursor_execute", record)
    assert any("WITH walked" in s for s in statements)
    assert any("matches_in_all" in s and "walked" not in s for s in statements)


async def test_an_artifact_deleted_during_a_filtered_listing(
    client: httpx.AsyncClient, make_key: Callable[..., str], database: dbmod.Database
) -> None:
    """The page's rows come with the matches, in one statement: an artifact deleted between the
    listing's statements (PostgreSQL reads each statement at its own snapshot) is listed whole or
    not at all, never a 500 (it was: the page's ids, then their rows, read apart)."""
    h = Har(client, make_key("space:acct=edit"), make_key)
    await h.registry("acct", "gone", "DOCKER")
    for name in ("a", "b", "c"):
        assert (await h.artifact("acct%2Fgone", name, labels=["x", "y"])).status_code == 201
    deleted: list[str] = []

    def delete_b_once(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "matches_in_all" in statement and not deleted:
            deleted.append("b")
            with database.engine.begin() as other:
                other.execute(text("DELETE FROM artifacts WHERE name = 'b'"))

    event.listen(database.engine, "after_cursor_execute", delete_b_once)
    try:
        data = await get(h, "/registry/acct%2Fgone/artifacts", label=["x", "y"], sort_field="name")
    finally:
        event.remove(database.engine, "after_cursor_execute", delete_b_once)
    assert deleted
    assert names(data) in (["c", "b", "a"], ["c", "a"])
    assert data["itemCount"] == len(data["artifacts"])
    assert names(await get(h, "/registry/acct%2Fgone/artifacts", label=["x", "y"])) != []


async def test_artifact_type_on_listings(filled: Har) -> None:
    data = await get(filled, "/registry/acct%2Forg%2Fhf/artifacts", sort_field="name")
    assert sorted(a["artifactType"] for a in data["artifacts"]) == ["dataset", "model"]
    data = await get(filled, "/registry/acct%2Forg%2Fhf/artifacts", artifact_type="model")
    assert [(a["name"], a["artifactType"]) for a in data["artifacts"]] == [("bert", "model")]
    envelope_error(400, "artifact_type applies to HUGGINGFACE registries only")(
        await filled.http.get(
            P + "/registry/acct%2Fdocker/artifacts",
            params={"artifact_type": "model"},
            headers=filled.h(),
        )
    )


async def test_distinct_labels_page_by_labels(filled: Har) -> None:
    path = "/registry/acct%2Fdocker/artifact/labels"
    data = await get(filled, path)
    assert data == {
        "labels": ["cache", "canary", "prod", "web", "x"],
        "itemCount": 5,
        "pageCount": 1,
        "pageIndex": 0,
        "pageSize": 20,
    }
    assert await get(filled, path, size=2, page=1) == {
        "labels": ["prod", "web"],
        "itemCount": 5,
        "pageCount": 3,
        "pageIndex": 1,
        "pageSize": 2,
    }
    assert (await get(filled, path, search_term="CA"))["labels"] == ["cache", "canary"]
    # Counts follow label updates and deletes.
    await filled.http.put(
        P + "/registry/acct%2Fdocker/artifact/library%2Fredis/labels",
        json={"labels": ["prod", "new"]},
        headers=filled.h(),
    )
    await filled.http.delete(P + "/registry/acct%2Fdocker/artifact/Web_App", headers=filled.h())
    assert (await get(filled, path))["labels"] == ["new", "prod", "web", "x"]
    assert (await get(filled, "/registry/acct%2Forg%2Fhf/artifact/labels"))["labels"] == [
        "nlp",
        "prod",
    ]


async def test_space_artifacts_cover_the_spaces_below(filled: Har) -> None:
    data = await get(
        filled, "/spaces/acct/artifacts", sort_field="name", sort_order="ASC", size=100
    )
    assert data["itemCount"] == 8
    assert {a["registryIdentifier"] for a in data["artifacts"]} == {"docker", "hf", "py"}
    data = await get(
        filled, "/spaces/acct/org/+/artifacts", label="prod", sort_field="name", sort_order="ASC"
    )
    assert [(a["registryIdentifier"], a["name"]) for a in data["artifacts"]] == [
        ("hf", "bert"),
        ("py", "requests"),
    ]
    assert (await get(filled, "/spaces/acct%2Forg%2Fproj/artifacts"))["itemCount"] == 1
    data = await get(
        filled, "/spaces/acct/artifacts", reg_identifier=["py", "hf"], package_type="PYTHON"
    )
    assert names(data) == ["requests"]
    envelope_error(400)(
        await filled.http.get(
            P + "/spaces/acct/artifacts", params={"package_type": "BOGUS"}, headers=filled.h()
        )
    )
    viewer = filled.make_key("space:acct/org=view")
    assert (
        await filled.http.get(P + "/spaces/acct%2Forg/artifacts", headers=filled.h(viewer))
    ).status_code == 200
    envelope_error(403)(
        await filled.http.get(P + "/spaces/acct/artifacts", headers=filled.h(viewer))
    )
    envelope_error(401)(await filled.http.get(P + "/spaces/acct/artifacts"))


async def test_space_registries(filled: Har) -> None:
    data = await get(filled, "/spaces/acct/registries", sort_field="identifier", sort_order="ASC")
    assert (data["itemCount"], data["pageCount"], data["pageIndex"], data["pageSize"]) == (
        3,
        1,
        0,
        20,
    )
    assert [r["identifier"] for r in data["registries"]] == ["docker", "hf", "py"]
    docker = data["registries"][0]
    assert set(docker) == {
        "identifier",
        "packageType",
        "type",
        "description",
        "labels",
        "artifactsCount",
        "downloadsCount",
        "lastModified",
        "url",
        "uuid",
    }
    assert (
        docker["artifactsCount"] == 5
        and docker["type"] == "VIRTUAL"
        and docker["downloadsCount"] == 0
    )
    assert [
        r["identifier"]
        for r in (await get(filled, "/spaces/acct/registries", package_type="PYTHON"))["registries"]
    ] == ["py"]
    assert [
        r["identifier"]
        for r in (await get(filled, "/spaces/acct/registries", search_term="H"))["registries"]
    ] == ["hf"]
    assert (await get(filled, "/spaces/acct%2Forg/registries"))["itemCount"] == 2
    assert (await get(filled, "/spaces/acct/registries", page=5))["registries"] == []


AWKWARD = [
    "prod",
    "Prod",
    'say "hi"',
    "a AND b",
    "OR",
    "(x)*",
    "NEAR(a b)",
    "é",
    "e\u0301",
    "日本語",
    "\U0001f600" * 255,
]


async def test_label_filters_match_any_label_exactly(
    client: httpx.AsyncClient, make_key: Callable[..., str], database: dbmod.Database
) -> None:
    """Labels that hold quotes, spaces, FTS5 operators, letters that differ in case only or in
    normalisation, and 255 four-byte characters are matched exactly and only in their registry,
    in filters of two labels and more, also after relabelling, deleting an artifact and deleting
    a whole registry (whose artifacts leave the label index with it)."""
    h = Har(client, make_key("space:acct=edit"), make_key)
    for identifier in ("one", "two"):
        assert (await h.registry("acct", identifier, "DOCKER")).status_code == 201
    rng = random.Random(8)
    labelled: dict[tuple[str, str], list[str]] = {}
    for i in range(40):
        registry = ("one", "two")[i % 2]
        labels = sorted({rng.choice(AWKWARD) for _ in range(rng.randrange(5))})
        r = await h.artifact(f"acct%2F{registry}", f"n{i}", labels=labels)
        assert r.status_code == 201, r.text
        labelled[registry, f"n{i}"] = labels
    _search_labels_hold(database)

    async def check(*registries: str) -> None:
        for registry in registries:
            for wanted in ([*AWKWARD[:2]], ["prod", "OR"], AWKWARD[2:5], [AWKWARD[-1], "é"]):
                for first in (wanted, [*wanted[1:], wanted[0]]):
                    expected = sorted(
                        name
                        for (r, name), labels in labelled.items()
                        if r == registry and set(first) <= set(labels)
                    )
                    data = await get(
                        h, f"/registry/acct%2F{registry}/artifacts", label=first, size=100
                    )
                    assert sorted(names(data)) == expected, (registry, first)
                    assert data["itemCount"] == len(expected)

    await check("one", "two")
    for registry, name in rng.sample(sorted(labelled), 10):
        labels = sorted({rng.choice(AWKWARD) for _ in range(rng.randrange(5))})
        r = await client.put(
            f"{P}/registry/acct%2F{registry}/artifact/{name}/labels",
            json={"labels": labels},
            headers=h.h(),
        )
        assert r.status_code == 200, r.text
        labelled[registry, name] = labels
    for registry, name in rng.sample(sorted(labelled), 4):
        r = await client.delete(f"{P}/registry/acct%2F{registry}/artifact/{name}", headers=h.h())
        assert r.status_code == 200, r.text
        del labelled[registry, name]
    _search_labels_hold(database)
    await check("one", "two")
    r = await client.delete(f"{P}/registry/acct/two/+", headers=h.h())
    assert r.status_code == 200, r.text
    labelled = {k: v for k, v in labelled.items() if k[0] != "two"}
    _search_labels_hold(database)
    await check("one")


async def test_filters_find_artifacts_of_many_labels(
    client: httpx.AsyncClient, make_key: Callable[..., str], database: dbmod.Database
) -> None:
    """Artifacts of up to ``PAIRED`` labels and of more (which SQLite's label-set index holds
    without their pairs) are found alike by filters of two to five labels, with the true count;
    again after relabelling across that line both ways and deleting one of each."""
    h = Har(client, make_key("space:acct=edit"), make_key)
    assert (await h.registry("acct", "wide", "DOCKER")).status_code == 201
    path = "/registry/acct%2Fwide/artifacts"
    rng = random.Random(12)
    pool = [f"l{i}" for i in range(store.PAIRED + 8)]
    widths = [2, 3, store.PAIRED - 1, store.PAIRED, store.PAIRED + 1, store.PAIRED + 8, 1000]
    labelled: dict[str, list[str]] = {}

    async def put(name: str, width: int) -> None:
        chosen = rng.sample(pool, min(width, len(pool) - 3))
        labels = [*chosen, *(f"own-{name}-{i}" for i in range(width - len(chosen)))]
        r = await client.put(
            f"{P}/registry/acct%2Fwide/artifact/{name}/labels",
            json={"labels": labels},
            headers=h.h(),
        )
        assert r.status_code == 200, r.text
        labelled[name] = labels

    for i in range(30):
        assert (await h.artifact("acct%2Fwide", f"w{i:02d}")).status_code == 201
        await put(f"w{i:02d}", widths[i % len(widths)])

    async def check() -> None:
        _search_labels_hold(database)
        for n in (2, 2, 3, 4, 5):
            for wanted in (rng.sample(pool[:6], n), rng.sample(pool, n)):
                expected = sorted(a for a, labels in labelled.items() if set(wanted) <= set(labels))
                data = await get(
                    h, path, label=wanted, size=100, sort_field="name", sort_order="ASC"
                )
                assert names(data) == expected, wanted
                assert data["itemCount"] == len(expected)

    await check()
    for name in rng.sample(sorted(labelled), 8):  # across the line and back
        narrow = len(labelled[name]) <= store.PAIRED
        await put(name, store.PAIRED + 3 if narrow else 3)
    for name in (sorted(a for a, v in labelled.items() if len(v) > store.PAIRED)[0], "w00"):
        r = await client.delete(f"{P}/registry/acct%2Fwide/artifact/{name}", headers=h.h())
        assert r.status_code == 200, r.text
        del labelled[name]
    await check()


def test_a_bulk_load_fills_the_label_sets(database: dbmod.Database) -> None:
    """``fill_search_labels`` (for loads that write label rows themselves, as ``bench.har_scale``
    does) gives each chosen artifact the label set the store would have written, and the filters
    find them; an artifact not chosen keeps its own."""
    from labelhub.core.models import Artifact, ArtifactLabel

    def load(conn: Any) -> None:
        registry = store.create_registry(conn, "acct", "bulk", "DOCKER", "", [])
        kept = store.register_artifact(conn, registry, "kept", None, None, ["x", "y"])
        ids = []
        for i, labels in enumerate([["x", "y"], ["y", "\U0001f600 z"], [], ["x"]]):
            values = {"uuid": f"u{i}", "registry_id": registry.id, "name": f"b{i}"}
            values |= {"name_folded": f"b{i}", "artifact_type": "", "downloads_count": 0}
            values |= {"created_at": 1, "modified_at": 1}
            (artifact_id,) = conn.execute(insert(Artifact).returning(Artifact.id), [values]).one()
            ids.append(artifact_id)
            for label in labels:
                conn.execute(
                    insert(ArtifactLabel).values(
                        artifact_id=artifact_id, label=label, registry_id=registry.id
                    )
                )
        store.fill_search_labels(conn, [*ids, kept.id][1:])  # b0 is left out, then filled
        store.fill_search_labels(conn, ids[:1])

    database.run_write(load)
    _search_labels_hold(database)

    def listed(conn: Any) -> list[str]:
        registry = store.find_registry(conn, "acct", "bulk")
        query = store.ArtifactQuery(["y", "x"], None, None, 0, 50, "name", "ASC")
        items, total = store.list_artifacts(conn, [registry], query)
        assert total == len(items)
        return [item.artifact.name for item in items]

    assert database.run_read(listed) == ["b0", "kept"]
