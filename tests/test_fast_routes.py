"""Fast routes (labelhub.core.fast) answer exactly what FastAPI's routes answer.

Two apps on two databases prepared alike, one with fast routes and one without, are sent the same
requests; status, headers (but the date) and body bytes must match, and so must what they stored.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Connection, text

from labelhub.actionhub import store as actionhub_store
from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core import fast, keys
from labelhub.core.config import Settings
from labelhub.har import store as har_store
from tests.conftest import DatabaseFactory, migrate_url

WRITER = keys.mint_secret()
READER = keys.mint_secret()
OTHER = keys.mint_secret()
EDITOR = keys.mint_secret()
VIEWER = keys.mint_secret()
ARTIFACTS = ["plain", "ünï 🎉", "a/b", "50%"]


@dataclass
class Twin:
    fast: httpx.AsyncClient
    plain: httpx.AsyncClient
    fast_db: dbmod.Database


def _prepare(db: dbmod.Database) -> None:
    db.run_write(actionhub_store.create_program, "shop")
    db.run_write(actionhub_store.create_program, "other")
    for secret, scope, role in (
        (WRITER, "program:shop", "write"),
        (READER, "program:shop", "read"),
        (OTHER, "program:other", "write"),
        (EDITOR, "space:acct", "edit"),
        (VIEWER, "space:acct", "view"),
    ):
        grants = [keys.parse_grant(scope, role)]
        db.run_write(lambda conn, g=grants, s=secret: keys.create_key(conn, "k", g, secret=s))

    def registries(conn: Connection) -> None:
        generic = har_store.create_registry(conn, "acct", "reg", "GENERIC", "", [])
        for name in ARTIFACTS:
            har_store.register_artifact(conn, generic, name, None, None, ["old", "keep"])
        hf = har_store.create_registry(conn, "acct/org", "hf", "HUGGINGFACE", "", [])
        for kind in ("model", "dataset"):
            har_store.register_artifact(conn, hf, "twin", kind, None, [])
        har_store.register_artifact(conn, hf, "solo", "model", None, [])
        # The same ids and uuids in both databases, so both answer the same bytes.
        for n, table in enumerate(("registries", "artifacts")):
            conn.execute(text(f"UPDATE {table} SET uuid = '{n}-' || id"))

    db.run_write(registries)


@pytest.fixture
async def twin(
    db_url: str, databases: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Twin]:
    monkeypatch.setattr(har_store, "now_ms", lambda: 1_790_000_000_000)
    other_url = databases.empty()
    migrate_url(other_url)
    clients = []
    dbs = []
    for url, fast_routes in ((db_url, True), (other_url, False)):
        settings = Settings(database_url=url, db_timeout=2.0, fast_routes=fast_routes)
        db = dbmod.Database(settings)
        _prepare(db)
        dbs.append(db)
        transport = httpx.ASGITransport(app=create_app(settings, db), raise_app_exceptions=False)
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://labelhub.test"))
    try:
        yield Twin(clients[0], clients[1], dbs[0])
    finally:
        for client in clients:
            await client.aclose()
        for db in dbs:
            db.close()


def _headers(key: str | None = WRITER, program: str | None = "shop", **extra: str) -> list:
    h: list[tuple[str, str]] = [("content-type", "application/json")]
    if key is not None:
        h.append(("actionhub-key", key))
    if program is not None:
        h.append(("program-id", program))
    h.extend((name.replace("_", "-"), value) for name, value in extra.items())
    return h


def _labels(*pairs: tuple[str, Any]) -> bytes:
    return json.dumps({"labels": [{"label": n, "weight": w} for n, w in pairs]}).encode()


# (name, headers, body, taken by the fast route?)
CASES: list[tuple[str, list[tuple[str, str]], bytes, bool]] = [
    ("new labels", _headers(), _labels(("a", 1), ("b", 2.5)), True),
    ("re-weights and a repeat", _headers(), _labels(("a", 3), ("c", -1), ("a", 4)), True),
    ("empty list", _headers(), b'{"labels": []}', True),
    ("numeric strings", _headers(), b'{"labels": [{"label": "d", "weight": "2.5"}]}', True),
    ("unicode", _headers(), _labels(("ünï 🎉", 1), ("x" * 64, 0)), True),
    ("api-version 1.0", _headers(api_version="1.0"), _labels(("e", 1)), True),
    ("no content-type", _headers()[1:], _labels(("f", 1)), True),
    (
        "charset",
        [("content-type", "application/json; charset=utf-8"), *_headers()[1:]],
        _labels(("g", 1)),
        True,
    ),
    ("unknown key", _headers(key="lh_" + "A" * 43), _labels(("h", 1)), True),
    ("malformed key", _headers(key="nope"), _labels(("h", 1)), True),
    ("read-only key", _headers(key=READER), _labels(("h", 1)), True),
    ("key of another program", _headers(key=OTHER), _labels(("h", 1)), True),
    ("unknown program", _headers(program="nowhere"), _labels(("h", 1)), True),
    ("missing key", _headers(key=None), _labels(("h", 1)), False),
    ("missing program", _headers(program=None), _labels(("h", 1)), False),
    ("empty program id", _headers(program=""), _labels(("h", 1)), False),
    ("long program id", _headers(program="p" * 65), _labels(("h", 1)), False),
    ("api-version 2.0", _headers(api_version="2.0"), _labels(("h", 1)), False),
    ("repeated program header", [*_headers(), ("program-id", "other")], _labels(("h", 1)), False),
    ("text/plain", [("content-type", "text/plain"), *_headers()[1:]], _labels(("h", 1)), False),
    ("empty body", _headers(), b"", False),
    ("not JSON", _headers(), b"{labels", False),
    ("trailing text", _headers(), b'{"labels": []} x', False),
    ("UTF-8 byte order mark", _headers(), b"\xef\xbb\xbf" + _labels(("i", 1)), False),
    (
        "repeated keys",
        _headers(),
        b'{"labels": [{"label": "j", "weight": 1, "weight": 2}], "labels": [{"label": "k", '
        b'"weight": 3, "label": "l"}]}',
        True,
    ),
    ("not UTF-8", _headers(), b'{"labels": [{"label": "\xff", "weight": 1}]}', False),
    ("missing labels", _headers(), b"{}", False),
    ("NaN weight", _headers(), b'{"labels": [{"label": "h", "weight": NaN}]}', False),
    ("huge weight", _headers(), b'{"labels": [{"label": "h", "weight": 1e309}]}', False),
    ("control character", _headers(), _labels(("h\u0007", 1)), False),
    ("65 characters", _headers(), _labels(("h" * 65, 1)), False),
    ("nested deep", _headers(), b'{"labels": ' + b"[" * 5000 + b"]" * 5000 + b"}", False),
    ("10,001 labels", _headers(), _labels(*((f"l{i}", i) for i in range(10_001))), False),
]


@pytest.fixture
def handed_on(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bodies of the requests the fast route handed on to FastAPI (it replays them then)."""
    bodies: list[bytes] = []
    replay = fast.replay

    def counting(body: bytes, receive: Any) -> Any:
        bodies.append(body)
        return replay(body, receive)

    monkeypatch.setattr(fast, "replay", counting)
    return bodies


def _requests_counted(metrics: str) -> list[str]:
    return sorted(x for x in metrics.splitlines() if x.startswith("labelhub_http_requests_total{"))


def _comparable(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return r.status_code, [(k, v) for k, v in r.headers.items() if k != "date"], r.content


async def _answered_alike(
    twin: Twin, method: str, url: str, body: bytes, headers: list[tuple[str, str]], what: str
) -> httpx.Response:
    """Send one request to both apps: status, headers (but the date) and body bytes must match.
    The fast app's answer."""
    answers = [
        await client.request(method, url, content=body, headers=headers)
        for client in (twin.fast, twin.plain)
    ]
    assert _comparable(answers[0]) == _comparable(answers[1]), what
    return answers[0]


async def _counted_alike(twin: Twin) -> str:
    """Both apps must have counted the same requests (``/metrics``); the fast app's counters."""
    metrics = [(await client.get("/metrics")).text for client in (twin.fast, twin.plain)]
    assert _requests_counted(metrics[0]) == _requests_counted(metrics[1])
    return "".join(_requests_counted(metrics[0]))


async def test_fast_and_plain_routes_answer_alike(twin: Twin, handed_on: list[bytes]) -> None:
    for current, headers, body, taken in CASES:
        before = len(handed_on)
        await _answered_alike(twin, "PUT", "/labels?ignored=1", body, headers, current)
        assert (len(handed_on) == before) == taken, current
    stored = []
    for client in (twin.fast, twin.plain):
        r = await client.get("/labels", params={"size": 100}, headers=_headers())
        stored.append(r.json())
    assert stored[0] == stored[1]
    # a-g, two unicode ones, "h" from the text/plain body (parsed as JSON all the same), "i" from
    # the body with a byte order mark and "l" from the repeated keys (the last one counts)
    assert stored[0]["total"] == 12, stored[0]
    # The request log and metrics see fast requests under their route template, as any other.
    assert 'method="PUT",route="/labels",status="200"' in await _counted_alike(twin)


async def test_concurrent_puts_share_batches_and_count_exactly(twin: Twin) -> None:
    """80 concurrent PUTs over overlapping labels: counts are those of some serial order."""

    async def put(i: int) -> httpx.Response:
        names = [f"l{(i * 3 + j) % 40}" for j in range(10)]
        body = _labels(*((n, i) for n in names))
        key = READER if i % 9 == 4 else WRITER
        return await twin.fast.put("/labels", content=body, headers=_headers(key=key))

    answers = await asyncio.gather(*(put(i) for i in range(80)))
    created = 0
    for i, r in enumerate(answers):
        if i % 9 == 4:
            assert r.status_code == 403 and r.json() == {
                "detail": "This key may only read this program"
            }
            continue
        assert r.status_code == 200, r.text
        words = r.json()["result"].split()
        assert int(words[0]) + int(words[3]) == 10
        created += int(words[0])
    # Every label a writer sent exists once and was counted as created exactly once.
    written = {f"l{(i * 3 + j) % 40}" for i in range(80) if i % 9 != 4 for j in range(10)}
    assert created == len(written)
    r = await twin.fast.get("/labels", params={"size": 100}, headers=_headers())
    assert {item["label"] for item in r.json()["items"]} == written
    assert r.json()["total"] == len(written)
    writer = twin.fast_db.writer
    assert writer.batches < writer.jobs


async def test_a_write_batch_across_programs_finds_each_program(twin: Twin) -> None:
    """PUTs to two programs queued at once (a write batch looks its programs up together, one
    array on PostgreSQL): each lands in its own program, and a program nobody has is refused."""

    async def put(i: int) -> httpx.Response:
        program, key = [("shop", WRITER), ("other", OTHER), ("ghost", OTHER)][i % 3]
        body = _labels((f"{program}-{i}", i))
        return await twin.fast.put("/labels", content=body, headers=_headers(key, program))

    answers = await asyncio.gather(*(put(i) for i in range(60)))
    for i, r in enumerate(answers):
        if i % 3 == 2:
            assert r.status_code == 403, r.text  # no grant on "ghost" (nor does it exist)
        else:
            assert r.status_code == 200 and r.json()["result"].startswith("1 "), r.text
    for program, key, first in (("shop", WRITER, 0), ("other", OTHER, 1)):
        r = await twin.fast.get("/labels", params={"size": 100}, headers=_headers(key, program))
        assert {item["label"] for item in r.json()["items"]} == {
            f"{program}-{i}" for i in range(first, 60, 3)
        }


# (name, query string, headers, body, taken by the fast route?)
GET_CASES: list[tuple[str, str, list[tuple[str, str]], bytes, bool]] = [
    ("first page", "", _headers(), b"", True),
    ("a page", "page=2&size=3", _headers(), b"", True),
    ("past the end", "page=99&size=100", _headers(), b"", True),
    ("search", "search=A", _headers(), b"", True),
    ("search, percent-encoded unicode", "search=%C3%BCn%C3%AF", _headers(), b"", True),
    ("search with % and _", "search=%25_", _headers(), b"", True),
    ("empty search", "search=&size=2", _headers(), b"", True),
    ("unknown parameter", "size=2&colour=blue", _headers(), b"", True),
    ("plus as space", "search=a+b", _headers(), b"", True),
    ("read-only key", "", _headers(key=READER), b"", True),
    ("api-version 1.0", "", _headers(api_version="1.0"), b"", True),
    ("unknown key", "", _headers(key="lh_" + "A" * 43), b"", True),
    ("key of another program", "", _headers(key=OTHER), b"", True),
    ("unknown program", "", _headers(program="nowhere"), b"", True),
    ("size 0", "size=0", _headers(), b"", False),
    ("size 101", "size=101", _headers(), b"", False),
    ("page 0", "page=0", _headers(), b"", False),
    ("page not a number", "page=two", _headers(), b"", False),
    ("page empty", "page=", _headers(), b"", False),
    ("repeated page", "page=1&page=2", _headers(), b"", False),
    ("control character in search", "search=%07", _headers(), b"", True),
    ("missing key", "", _headers(key=None), b"", False),
    ("missing program", "", _headers(program=None), b"", False),
    ("api-version 2.0", "", _headers(api_version="2.0"), b"", False),
    ("If-None-Match", "", _headers(if_none_match='"nope"'), b"", False),
    ("a body", "", _headers(), b'{"labels": []}', False),
]


async def test_fast_and_plain_label_reads_answer_alike(twin: Twin, handed_on: list[bytes]) -> None:
    labels = _labels(("a", 1), ("B", 2.5), ("ünï 🎉", -1), ("x%_y", 1e16), ("a b", 0), ("c", 3))
    for client in (twin.fast, twin.plain):
        assert (await client.put("/labels", content=labels, headers=_headers())).status_code == 200
    for current, query, headers, body, taken in GET_CASES:
        before = len(handed_on)
        await _answered_alike(twin, "GET", f"/labels?{query}", body, headers, current)
        assert (len(handed_on) == before) == taken, current
    assert 'method="GET",route="/labels",status="200"' in await _counted_alike(twin)
    # The fast answer carries the ETag a conditional read (FastAPI's) then matches.
    first = await twin.fast.get("/labels", headers=_headers())
    assert first.status_code == 200 and first.json()["total"] == 6
    again = await twin.fast.get("/labels", headers=_headers(if_none_match=first.headers["etag"]))
    assert again.status_code == 304


HAR = "/har/api/v1/registry"


def _har_headers(key: str | None = EDITOR, **extra: str) -> list[tuple[str, str]]:
    h = [("content-type", "application/json")]
    if key is not None:
        h.append(("x-api-key", key))
    return h + [(name.replace("_", "-"), value) for name, value in extra.items()]


def _har_labels(*labels: str) -> bytes:
    return json.dumps({"labels": list(labels)}).encode()


# (name, path, headers, body, taken by the fast route?)
HAR_CASES: list[tuple[str, str, list[tuple[str, str]], bytes, bool]] = [
    (
        "replace",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(),
        _har_labels("a", "keep"),
        True,
    ),
    (
        "repeats, unsorted",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(),
        _har_labels("z", "b", "z", "B"),
        True,
    ),
    ("empty", f"{HAR}/acct%2Freg/artifact/plain/labels", _har_headers(), _har_labels(), True),
    (
        "unicode",
        f"{HAR}/acct%2Freg/artifact/%C3%BCn%C3%AF%20%F0%9F%8E%89/labels",
        _har_headers(),
        _har_labels("ü", "🎉"),
        True,
    ),
    (
        # what JSON encoders might write differently: quotes, backslashes, U+2028, astral emoji
        "characters JSON escapes or not",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(),
        _har_labels('q"uote', "back\\slash", "line\u2028sep", "😀", "</tag>"),
        True,
    ),
    (
        "slash in name",
        f"{HAR}/acct%2Freg/artifact/a%2Fb/labels",
        _har_headers(),
        _har_labels("x"),
        True,
    ),
    (
        "plain ref /+",
        f"{HAR}/acct/reg/+/artifact/a%2Fb/labels",
        _har_headers(),
        _har_labels("y"),
        True,
    ),
    (
        "percent in name",
        f"{HAR}/acct%2Freg/artifact/50%25/labels",
        _har_headers(),
        _har_labels("p"),
        True,
    ),
    (
        "hugging face",
        f"{HAR}/acct%2Forg%2Fhf/artifact/solo/labels",
        _har_headers(),
        _har_labels("m"),
        True,
    ),
    (
        "model and dataset",
        f"{HAR}/acct%2Forg%2Fhf/artifact/twin/labels",
        _har_headers(),
        _har_labels("m"),
        True,
    ),
    (
        "unknown artifact",
        f"{HAR}/acct%2Freg/artifact/nope/labels",
        _har_headers(),
        _har_labels("x"),
        True,
    ),
    (
        "unknown registry",
        f"{HAR}/acct%2Fnope/artifact/plain/labels",
        _har_headers(),
        _har_labels("x"),
        True,
    ),
    (
        "bad registry ref",
        f"{HAR}/reg/artifact/plain/labels",
        _har_headers(),
        _har_labels("x"),
        True,
    ),
    (
        "unknown key",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers("lh_" + "B" * 43),
        _har_labels("x"),
        True,
    ),
    (
        "view-only key",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(VIEWER),
        _har_labels("x"),
        True,
    ),
    (
        "program key",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(WRITER),
        _har_labels("x"),
        True,
    ),
    (
        "missing key",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(None),
        _har_labels("x"),
        False,
    ),
    (
        "artifact_type",
        f"{HAR}/acct%2Forg%2Fhf/artifact/twin/labels?artifact_type=model",
        _har_headers(),
        _har_labels("t"),
        False,
    ),
    (
        "If-Match *",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(if_match="*"),
        _har_labels("i"),
        False,
    ),
    (
        "If-Match stale",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(if_match='"x"'),
        _har_labels("j"),
        False,
    ),
    (
        "not a list",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(),
        b'{"labels": "a"}',
        False,
    ),
    (
        "control character",
        f"{HAR}/acct%2Freg/artifact/plain/labels",
        _har_headers(),
        _har_labels("a\u0001"),
        False,
    ),
    ("no body", f"{HAR}/acct%2Freg/artifact/plain/labels", _har_headers(), b"", False),
]


async def test_fast_and_plain_har_label_updates_answer_alike(
    twin: Twin, handed_on: list[bytes]
) -> None:
    for current, path, headers, body, taken in HAR_CASES:
        before = len(handed_on)
        await _answered_alike(twin, "PUT", path, body, headers, current)
        assert (len(handed_on) == before) == taken, current
    for name in ARTIFACTS:
        quoted = quote(name, safe="")
        summaries = [
            (
                await client.get(
                    f"{HAR}/acct%2Freg/artifact/{quoted}/summary", headers=_har_headers()
                )
            ).content
            for client in (twin.fast, twin.plain)
        ]
        assert summaries[0] == summaries[1]
    listings = [
        (await client.get(f"{HAR}/acct%2Freg/artifact/labels", headers=_har_headers())).content
        for client in (twin.fast, twin.plain)
    ]
    assert listings[0] == listings[1]
    await _counted_alike(twin)


async def test_concurrent_har_updates_keep_the_label_counts(twin: Twin, dialect: str) -> None:
    """60 concurrent label updates over 4 artifacts, some refused: every artifact ends with one
    of the sets sent for it, and the registry's per-label counts match the artifacts' labels."""
    sets = [sorted({f"l{(i * 7 + j) % 9}" for j in range(i % 4)}) for i in range(60)]

    async def update(i: int) -> httpx.Response:
        name = quote(ARTIFACTS[i % 4], safe="")
        key = VIEWER if i % 11 == 5 else EDITOR
        path = f"{HAR}/acct%2Freg/artifact/{name}/labels"
        return await twin.fast.put(path, content=_har_labels(*sets[i]), headers=_har_headers(key))

    answers = await asyncio.gather(*(update(i) for i in range(60)))
    for i, r in enumerate(answers):
        if i % 11 == 5:
            assert r.status_code == 403, r.text
        else:
            assert r.status_code == 200, r.text
            assert r.json()["data"]["labels"] == sets[i]
    for n, name in enumerate(ARTIFACTS):
        r = await twin.fast.get(
            f"{HAR}/acct%2Freg/artifact/{quote(name, safe='')}/summary", headers=_har_headers()
        )
        assert r.json()["data"]["labels"] in [sets[i] for i in range(n, 60, 4) if i % 11 != 5]
    with twin.fast_db.transaction() as conn:
        counted = dict(
            conn.execute(
                text(
                    "SELECT label, count(*) FROM artifact_labels al JOIN artifacts a "
                    "ON a.id = al.artifact_id JOIN registries r ON r.id = a.registry_id "
                    "WHERE r.identifier = 'reg' GROUP BY label"
                )
            ).all()
        )
        kept = dict(
            conn.execute(
                text(
                    "SELECT label, artifacts FROM registry_labels rl JOIN registries r "
                    "ON r.id = rl.registry_id WHERE r.identifier = 'reg'"
                )
            ).all()
        )
    assert kept == counted


async def test_a_registry_deleted_within_a_write_batch_is_gone_for_the_rest(twin: Twin) -> None:
    """Label updates, a registry deletion, then more updates, queued at once (one write batch,
    as a rule): each answers as if run alone in that order, though the batch reads a registry
    once."""
    path = f"{HAR}/acct%2Freg/artifact/plain/labels"
    before = [
        twin.fast.put(path, content=_har_labels("a"), headers=_har_headers()) for _ in range(5)
    ]
    gone = twin.fast.delete(f"{HAR}/acct%2Freg", headers=_har_headers())
    after = [
        twin.fast.put(path, content=_har_labels("b"), headers=_har_headers()) for _ in range(5)
    ]
    answers = await asyncio.gather(*before, gone, *after)
    assert [r.status_code for r in answers] == [200] * 6 + [404] * 5
    assert answers[-1].json() == {"code": "404", "message": "Registry not found"}


async def test_a_chunked_body_is_read_once_and_answered_alike(twin: Twin) -> None:
    """No Content-Length: the body limit reads it and replays it to the fast route, which reads
    it again from the replay (and replays it once more when it hands the request on)."""

    def chunked(body: bytes) -> Any:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 7):
                yield body[start : start + 7]

        return chunks()

    for body in (_labels(("chunked", 1)), b'{"labels": [{"label": "x"}]}'):
        answers = [
            await client.put("/labels", content=chunked(body), headers=_headers())
            for client in (twin.fast, twin.plain)
        ]
        assert "content-length" not in answers[0].request.headers
        assert _comparable(answers[0]) == _comparable(answers[1])
    assert [a.status_code for a in answers] == [422, 422]


async def test_an_unexpected_failure_answers_500_alike(
    twin: Twin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fast request never enters FastAPI, whose error middleware would answer a failure: the
    fast route answers it the same (500 in the API's envelope), logs it and counts it."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(actionhub_store, "upsert_label_sets", broken)
    monkeypatch.setattr(har_store, "replace_label_sets", broken)
    for method, path, headers, body in (
        ("PUT", "/labels", _headers(), _labels(("a", 1))),
        ("PUT", f"{HAR}/acct%2Freg/artifact/plain/labels", _har_headers(), _har_labels("a")),
    ):
        answer = await _answered_alike(twin, method, path, body, headers, path)
        assert answer.status_code == 500
        assert "Internal server error" in answer.text
    assert sum("the store broke" in (r.exc_text or "") for r in caplog.records) >= 2
    assert 'status="500"' in await _counted_alike(twin)
