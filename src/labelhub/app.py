"""``create_app(settings)``: routers, middleware, and error rendering by path prefix.

Every error leaves in the envelope of the API whose path it was raised under:

* under ``/har/``: ``{"code": "<status>", "message": "...", "details"?: {...}}``, validation as 400;
* elsewhere (ActionHub at the root, ``/admin``): FastAPI's ``{"detail": ...}``, validation 422.

That holds for errors the handlers raise, for requests no route matches (404, 405), for bodies over
the limit (413) and for unexpected failures (500).
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from labelhub import __version__, admin, ops
from labelhub.actionhub import routes as actionhub_routes
from labelhub.actionhub.worker import QueueWorker
from labelhub.core import fast
from labelhub.core.config import Settings
from labelhub.core.db import Database
from labelhub.core.errors import LabelhubError, status_of
from labelhub.har import paths as har_paths
from labelhub.har import routes as har_routes
from labelhub.har.routes import HAR_PREFIX

log = logging.getLogger("labelhub")


def is_har_path(path: str) -> bool:
    return path == "/har" or path.startswith("/har/")


class ErrorResponse(JSONResponse):
    """An error body; one that echoes a lone surrogate (which UTF-8 cannot carry) is sent with
    ASCII escapes (``"\\ud800"``), still valid JSON, instead of failing into a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False).encode()


def render_error(
    path: str,
    status: int,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    if is_har_path(path):
        body: dict[str, Any] = {"code": str(status), "message": message}
        if details:
            body["details"] = details
    else:
        body = {"detail": message}
    return ErrorResponse(body, status_code=status, headers=headers)


def render_labelhub_error(path: str, error: Exception) -> JSONResponse:
    if isinstance(error, LabelhubError):
        return render_error(path, status_of(error), error.message, details=error.details)
    return render_error(path, 500, "Internal server error")


ECHO_DEPTH = 16


def json_safe(value: Any, depth: int = ECHO_DEPTH) -> Any:
    """A validation error's echo of the input, made fit for JSON: NaN and ±Infinity (which JSON
    cannot carry) spelled out, and nesting cut at ``depth`` levels (a body nested 100,000 deep must
    not take the error handler's recursion down with it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict | list | tuple) and depth <= 0:
        return "..."
    if isinstance(value, dict):
        return {k: json_safe(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth - 1) for v in value]
    return value


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{loc}: {error.get('msg')}" if loc else str(error.get("msg"))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = [{**e, "input": json_safe(e["input"])} if "input" in e else e for e in exc.errors()]
    errors = jsonable_encoder(raw)
    if is_har_path(request.url.path):
        return render_error(
            request.url.path,
            400,
            "; ".join(_describe(e) for e in errors[:5]) or "Invalid request",
            details={"errors": [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors]},
        )
    return ErrorResponse({"detail": errors}, status_code=422)


async def _on_labelhub_error(request: Request, exc: Exception) -> Response:
    return render_labelhub_error(request.url.path, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = exc.detail if isinstance(exc.detail, str) else "Request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = "Not Found: no such route"
    if not is_har_path(request.url.path) and not isinstance(exc.detail, str):
        return ErrorResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
    return render_error(request.url.path, exc.status_code, message, headers=dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_error(request.url.path, 500, "Internal server error")


class LabelhubApp(FastAPI):
    """FastAPI with labelhub's own middleware (``edge``) in front of all of it, not inside.

    Every HTTP request passes the edge first (request log and metrics, body limit, HAR path
    canonicalisation, fast routes) and then, unless a fast route answered it, FastAPI whole
    (``fastapi``): its telemetry, error middleware, exception handlers and router. Inside
    FastAPI's stack the edge cost each fast request the stack's layers around it for nothing.
    """

    edge: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.edge is not None:
            scope["app"] = self  # as Starlette sets it (the fast routes read app.state)
            await self.edge(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """The labelhub ASGI app. The schema must already be migrated (``labelhub serve`` does)."""
    database = db or Database(settings)

    worker = QueueWorker(
        database, poll_seconds=settings.worker_poll_seconds, batch=settings.worker_batch
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.worker:
            worker.start()
        database.writer.start()  # on SQLite it tidies the search indexes when idle
        # What exists once the app has started (modules, routes, models, compiled statements:
        # hundreds of thousands of objects) lives as long as the process. Frozen, the cyclic
        # collector stops walking it on every full collection: those walks were the 15-55 ms
        # stalls behind W1's p99 at 16 connections (bench/README.md).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await worker.stop()
            if db is None:  # we made it, we close it
                database.close()

    app = LabelhubApp(
        title="labelhub",
        version=__version__,
        description=(
            "The ActionHub labels API (at the root), the Harness Artifact Registry metadata API "
            f"(under {HAR_PREFIX}) and labelhub's administration API (under /admin)."
        ),
        lifespan=lifespan,
        # Clients of both public APIs may send JSON without a Content-Type: parse it as JSON.
        strict_content_type=False,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.metrics = ops.Metrics(database, worker)
    app.state.worker = worker

    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(LabelhubError, _on_labelhub_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

    app.include_router(ops.router)
    # Each router carries its own prefix, so route.path is the full template (for metrics).
    app.include_router(admin.router)
    app.include_router(actionhub_routes.router)
    app.include_router(har_routes.router)

    # labelhub's own middleware, outermost first: the log sees every request, including refused
    # bodies; the fast routes answer theirs without entering FastAPI at all.
    edge: ASGIApp = app.fastapi
    if settings.fast_routes:
        edge = fast.FastRoutes(
            edge,
            routes=[*actionhub_routes.FAST_ROUTES, *har_routes.FAST_ROUTES],
            render=render_labelhub_error,
        )
    edge = har_paths.CanonicalPaths(edge, render=render_labelhub_error)
    edge = ops.BodyLimit(edge, limit=settings.max_body_bytes, render=render_labelhub_error)
    app.edge = ops.RequestLog(edge, metrics=app.state.metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (used by ``labelhub serve --workers N``)."""
    return create_app(Settings())
