"""Operations endpoints, the request log, the body limit and error shapes by path prefix."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import BaseModel

from labelhub.app import create_app
from labelhub.core import db as dbmod
from labelhub.core.config import Settings
from tests.tcp_proxy import TcpProxy

LIMIT = 5 * 1024 * 1024


class Probe(BaseModel):
    name: str


@pytest.fixture
async def probe_client(
    settings: Settings, database: dbmod.Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus two probe routes under each prefix: one that fails, one with a body."""
    app = create_app(settings, database)

    async def boom() -> None:
        raise RuntimeError("a bug")

    async def echo(body: Probe) -> dict[str, str]:
        return {"name": body.name}

    for prefix in ("/probe", "/har/api/v1/probe"):
        app.add_api_route(f"{prefix}/boom", boom, methods=["GET"])
        app.add_api_route(f"{prefix}/echo", echo, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://labelhub.test") as http:
        yield http


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_readyz_503_while_database_unreachable_then_200(dialect: str, db_url: str) -> None:
    """Without restarting labelhub: unreachable -> 503, back -> 200."""
    if dialect == "sqlite":
        settings = Settings(database_url=db_url, db_timeout=0.3)
        blocker = sqlite3.connect(db_url[len("sqlite:///") :], isolation_level=None)
        outage_start = lambda: blocker.execute("BEGIN IMMEDIATE")  # noqa: E731
        outage_end = lambda: blocker.execute("ROLLBACK")  # noqa: E731
    else:
        proxy = TcpProxy("127.0.0.1", 5432)
        proxy.start()
        name = db_url.rsplit("/", 1)[1]
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", db_timeout=1
        )
        outage_start, outage_end = proxy.stop, proxy.start
    db = dbmod.Database(settings)
    app = create_app(settings, db)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            assert (await c.get("/readyz")).status_code == 200
            outage_start()
            for _ in range(2):
                r = await c.get("/readyz")
                assert r.status_code == 503
                assert r.json() == {"detail": "The database is unavailable"}
            assert (await c.get("/healthz")).status_code == 200
            outage_end()
            assert (await c.get("/readyz")).status_code == 200
            assert (await c.get("/readyz")).status_code == 200
    finally:
        db.close()
        if dialect == "sqlite":
            blocker.close()
        else:
            proxy.stop()


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/admin/programs", lambda m: {"detail": m}),
        ("/labels", lambda m: {"detail": m}),
        ("/har/api/v1/registry/a%2Fr/artifact/x/labels", lambda m: {"code": "413", "message": m}),
    ],
)
async def test_413_above_5_mib_in_each_prefix_shape(
    client: httpx.AsyncClient, admin_key: str, path: str, expected: object
) -> None:
    message = f"Request body is larger than the limit of {LIMIT} bytes"
    big = b"x" * (LIMIT + 1)
    headers = {"x-api-key": admin_key, "content-type": "application/json"}
    for method in ("POST", "PUT"):
        r = await client.request(method, path, content=big, headers=headers)
        assert r.status_code == 413
        assert r.json() == expected(message)  # type: ignore[operator]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(6):
            yield b"x" * (1024 * 1024)

    r = await client.put(path, content=chunks(), headers=headers)
    assert r.status_code == 413 and r.json() == expected(message)  # type: ignore[operator]


async def test_body_at_the_limit_is_parsed(client: httpx.AsyncClient, admin_key: str) -> None:
    body = b'{"program_id": "p", "name": "' + b"n" * (LIMIT - 40) + b'"}'
    body = body + b" " * (LIMIT - len(body))
    assert len(body) == LIMIT
    r = await client.post("/admin/programs", content=body, headers={"x-api-key": admin_key})
    assert r.status_code == 422  # parsed, then refused for the over-long name, not 413
    assert r.json()["detail"][0]["loc"] == ["body", "name"]


async def test_error_shapes_by_prefix(probe_client: httpx.AsyncClient) -> None:
    c = probe_client
    r = await c.get("/har/api/v1/no/such/route")
    assert r.status_code == 404 and r.json() == {
        "code": "404",
        "message": "Not Found: no such route",
    }
    r = await c.get("/har/other")
    assert r.status_code == 404 and r.json()["code"] == "404"
    r = await c.get("/no/such/route")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found: no such route"}

    r = await c.delete("/har/api/v1/probe/boom")
    assert r.status_code == 405 and r.json() == {"code": "405", "message": "Method Not Allowed"}
    assert r.headers["allow"] == "GET"
    r = await c.delete("/probe/boom")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}

    r = await c.get("/har/api/v1/probe/boom")
    assert r.status_code == 500 and r.json() == {"code": "500", "message": "Internal server error"}
    r = await c.get("/probe/boom")
    assert r.status_code == 500 and r.json() == {"detail": "Internal server error"}


async def test_validation_and_bad_json_shapes(probe_client: httpx.AsyncClient) -> None:
    c = probe_client
    r = await c.post(
        "/probe/echo", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = await c.post(
        "/har/api/v1/probe/echo", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "400" and isinstance(body["message"], str)

    r = await c.post("/har/api/v1/probe/echo", json={"name": 5})
    assert r.status_code == 400 and r.json()["code"] == "400"
    assert r.json()["details"]["errors"][0]["loc"] == ["body", "name"]

    # NaN and Infinity are valid to Python's JSON parser; the 422 must still be JSON.
    for raw, spelled in ((b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "-Infinity")):
        r = await c.post(
            "/probe/echo",
            content=b'{"name": ' + raw + b"}",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["detail"][0]["input"] == spelled

    # No Content-Type: parsed as JSON all the same.
    r = await c.post("/probe/echo", content=b'{"name": "x"}')
    assert r.status_code == 200 and r.json() == {"name": "x"}


async def test_metrics_by_route_template_and_status(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    await client.get("/admin/programs", headers={"x-api-key": admin_key})
    await client.delete("/admin/programs/some-id", headers={"x-api-key": admin_key})
    await client.get("/nowhere")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'labelhub_http_requests_total{method="GET",route="/admin/programs",status="200"} 1.0'
        in text
    )
    assert (
        'labelhub_http_requests_total{method="DELETE",route="/admin/programs/{program_id}",status="404"} 1.0'
        in text
    )
    assert 'labelhub_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert (
        'labelhub_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/admin/programs",status="200"}'
        in text
    )
    assert 'labelhub_db_pool_connections{state="checkedout"}' in text
    assert "labelhub_db_writer_queue" in text


async def test_one_log_line_per_request_without_secrets(
    client: httpx.AsyncClient, admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="labelhub.access"):
        await client.get("/admin/programs", headers={"x-api-key": admin_key})
        await client.get("/admin/keys", headers={"x-api-key": "wrong"})
        await client.get("/healthz")
    lines = [r.getMessage() for r in caplog.records if r.name == "labelhub.access"]
    assert len(lines) == 3
    assert lines[0].startswith("GET /admin/programs 200 ") and lines[0].endswith(
        f"key={admin_key[:11]}"
    )
    assert lines[1].startswith("GET /admin/keys 401 ") and lines[1].endswith("key=invalid")
    assert lines[2].startswith("GET /healthz 200 ") and lines[2].endswith("key=-")
    assert all(admin_key not in line and admin_key[11:20] not in line for line in lines)


async def test_openapi_document_lists_the_routes(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/healthz", "/readyz", "/metrics", "/admin/programs", "/admin/keys/{key_id}"):
        assert path in paths
