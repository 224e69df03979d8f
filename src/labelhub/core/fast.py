"""Fast routes: the busiest requests, when well formed, answered without entering FastAPI.

FastAPI's routing, dependency solving and response handling cost a ``PUT /labels`` more than the
database does once writes share transactions (bench/README.md, W1). A fast route takes a request
only when everything about it is ordinary: its method and path, each header it reads present
once (and nothing unusual in them), a JSON body that parses and validates against the route's
own model, or for a read (no body model) a query string whose parameters each appear once and
validate against the route's query model. Then it runs the same store code under the same guard
as the FastAPI route and answers the same bytes. Anything else -- a missing header, a bad body,
an unknown content type, a body sent with a read -- goes on to FastAPI untouched (the body
replayed), which answers it exactly as always. Errors met after the request was taken (403,
404, 503) are rendered by the app's own renderer.

It is the last of labelhub's own middleware (request log and metrics, body limit, HAR path
canonicalisation), which stand in front of FastAPI (``labelhub.app.LabelhubApp``), so those see
fast requests like any other and a fast request never enters FastAPI. ``LABELHUB_FAST_ROUTES=false``
turns it off; the test suite checks that both ways answer the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelhub.core.errors import LabelhubError

JSON = b"application/json"
log = logging.getLogger("labelhub")


@dataclass(frozen=True)
class FastRequest:
    scope: Scope
    params: dict[str, str]  # from the path
    headers: dict[bytes, str]  # the headers the route asked for, latin-1 as Starlette decodes
    body: Any  # the validated body model (None for a read)
    query: Any = None  # the validated query model, for a route that has one


# ``(status, JSON-ready content or the JSON bytes themselves, extra headers)``
Answer = tuple[int, Any, list[tuple[bytes, bytes]]]
# Answers the request, or None to hand it on to FastAPI.
Handler = Callable[[FastRequest], Awaitable[Answer | None]]


@dataclass(frozen=True)
class FastRoute:
    method: str
    match: Callable[[str], dict[str, str] | None]  # path -> path parameters, or None
    headers: frozenset[bytes]  # read by the handler; each must appear at most once
    required: frozenset[bytes]  # must be present (else FastAPI answers the error)
    model: type[BaseModel] | None  # the body's; None: a read, which takes no body
    handler: Handler
    route: Any  # FastAPI's route for the same request (the request log reads its template)
    query: type[BaseModel] | None = None  # the query parameters, as FastAPI's route has them


def route_of(router: Any, method: str, path: str) -> Any:
    """The router's route for ``method`` and ``path`` (its full template)."""
    for route in router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no route {method} {path}")


def exact(path: str) -> Callable[[str], dict[str, str] | None]:
    return lambda candidate: {} if candidate == path else None


# Starlette's JSONResponse rendering, built once (json.dumps with options builds an encoder).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def render_json(content: Any) -> bytes:
    """What Starlette's JSONResponse sends for ``content``."""
    return _ENCODER.encode(content).encode()


class FastRoutes:
    def __init__(
        self,
        app: ASGIApp,
        routes: list[FastRoute],
        render: Callable[[str, Exception], Response],
    ) -> None:
        self.app = app
        self.routes = routes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for route in self.routes:
            if route.method == scope["method"]:
                params = route.match(scope["path"])
                if params is not None:
                    await self._take(route, params, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _take(
        self, route: FastRoute, params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers: dict[bytes, str] = {}
        ordinary = True
        for name, value in scope["headers"]:
            if name in route.headers:
                if name in headers:
                    ordinary = False  # repeated: let FastAPI decide which one counts
                headers[name] = value.decode("latin-1")
            elif name == b"content-type" and route.model and not value.startswith(JSON):
                ordinary = False
        if not route.required.issubset(headers):
            ordinary = False
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        answer = None
        if ordinary:
            request = _validated(route, scope, params, headers, body)
            if request is not None:
                scope["route"] = route.route  # as routing would set it
                try:
                    answer = await route.handler(request)
                except LabelhubError as error:
                    await self.render(scope["path"], error)(scope, receive, send)
                    return
                except Exception as error:  # what FastAPI's error middleware would answer
                    log.exception("unexpected error on %s %s", scope["method"], scope["path"])
                    await self.render(scope["path"], error)(scope, receive, send)
                    return
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        status, content, extra = answer
        payload = content if isinstance(content, bytes) else render_json(content)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(payload)).encode()),
                    (b"content-type", JSON),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _validated(
    route: FastRoute, scope: Scope, params: dict[str, str], headers: dict[bytes, str], body: bytes
) -> FastRequest | None:
    """The request with its body (and query) validated as the route's models have them; None
    when they do not validate, or when anything about them is not ordinary."""
    model = query = None
    if route.model is not None:
        # pydantic parses and validates at once (a W1 body: 6 us against 10 for json.loads and
        # model_validate). Where its JSON parser and json.loads (FastAPI's) part -- a UTF-8
        # BOM, NaN -- it refuses and FastAPI answers; it never takes what FastAPI would not.
        try:
            model = route.model.model_validate_json(body)
        except (ValueError, ValidationError, RecursionError):
            return None
    elif body:
        return None  # a read sent a body: FastAPI decides what that means
    if route.query is not None:
        # As Starlette reads a query string (latin-1, then percent-decoded as UTF-8); a
        # parameter given twice is left to FastAPI, which picks the one that counts.
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        values = dict(pairs)
        if len(values) != len(pairs):
            return None
        try:
            query = route.query.model_validate(values)
        except ValidationError:
            return None
    return FastRequest(scope, params, headers, model, query)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands on ``body`` (already read) as one message, then the rest."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
