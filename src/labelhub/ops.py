"""Operations: /healthz, /readyz, /metrics, the request log and the body-size limit.

The two middlewares are plain ASGI (no ``BaseHTTPMiddleware``): they add no task or copy of the body
to the hot path, and a refused body never reaches the JSON parser.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelhub.actionhub.worker import QueueWorker
from labelhub.core.db import Database
from labelhub.core.errors import PayloadTooLarge
from labelhub.core.fast import replay
from labelhub.core.keys import display_prefix, looks_like_key

access_log = logging.getLogger("labelhub.access")

router = APIRouter(tags=["operations"])

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
KEY_HEADERS = (b"actionhub-key", b"x-api-key")


class Metrics:
    """The Prometheus figures of one app (a registry of its own, so apps do not share)."""

    def __init__(self, db: Database, worker: QueueWorker | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "labelhub_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "labelhub_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DatabaseCollector(db))
        if worker is not None:
            self.registry.register(_WorkerCollector(worker))

        # Each (method, route, status)'s two series, looked up once: ``labels()`` costs a
        # request more than counting it (and Prometheus keeps a series per key all the same).
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self._series.get((method, route, status))
        if series is None:
            labels = (method, route, str(status))
            series = self._series[method, route, status] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
            )
        series[0].inc()
        series[1].observe(seconds)


class _DatabaseCollector:
    def __init__(self, db: Database) -> None:
        self._db = db

    def collect(self) -> Iterable[Metric]:
        status = self._db.pool_status()
        pool = GaugeMetricFamily(
            "labelhub_db_pool_connections",
            "Database connection pool figures (size, checkedout, checkedin, overflow).",
            labels=["state"],
        )
        for state in ("size", "checkedout", "checkedin", "overflow"):
            if state in status:
                pool.add_metric([state], status[state])
        yield pool
        yield GaugeMetricFamily(
            "labelhub_db_writer_queue",
            "Write transactions waiting for the writer.",
            value=status["writer_queue"],
        )
        yield GaugeMetricFamily(
            "labelhub_db_writer_batches",
            "Commits made by the writer since start.",
            value=self._db.writer.batches,
        )
        yield GaugeMetricFamily(
            "labelhub_db_writer_jobs",
            "Write transactions the writer carried out since start.",
            value=self._db.writer.jobs,
        )
        yield GaugeMetricFamily(
            "labelhub_db_writer_retries",
            "Batches PostgreSQL aborted for a deadlock or serialization failure and were rerun.",
            value=self._db.writer.retries,
        )


class _WorkerCollector:
    def __init__(self, worker: QueueWorker) -> None:
        self._worker = worker

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "labelhub_recommendation_worker_users",
            "Queued users whose recommendations this process's worker refreshed since start.",
            value=self._worker.processed,
        )


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database answers",
    responses={503: {"description": "The database cannot be reached"}},
)
async def readyz(request: Request) -> JSONResponse:
    db: Database = request.app.state.db
    if await db.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"detail": "The database is unavailable"}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _key_prefix(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name in KEY_HEADERS:
            secret = value.decode("latin-1")
            return display_prefix(secret) if looks_like_key(secret) else "invalid"
    return "-"


class RequestLog:
    """One log line and one metrics observation per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            self.metrics.observe(method, template, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms key=%s",
                    method,
                    template,
                    status,
                    elapsed * 1000,
                    _key_prefix(scope),
                )


class BodyLimit:
    """413 for a body over the limit, before anything parses it.

    A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked)
    is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        render: Callable[[str, Exception], Response],
    ) -> None:
        self.app = app
        self.limit = limit
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No length given: read it here, up to the limit, then hand it on.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"Request body is larger than the limit of {self.limit} bytes")
        response = self.render(scope["path"], error)
        response.headers["connection"] = "close"
        await response(scope, receive, send)
