"""HAR refs in paths, parsed from the raw (still percent-encoded) request path.

A ``registry_ref``, ``space_ref`` or ``artifact`` that holds ``/`` is written either as one
segment with ``%2F`` (``acct%2Forg%2Freg``) or plainly, closed by a ``+`` segment
(``acct/org/reg/+``). The decoded path has lost the difference, so ``CanonicalPaths`` (an ASGI
middleware) reads ``raw_path``, finds each ref, and rewrites ``scope["path"]`` so that every ref is
one segment, percent-quoted (``/`` as ``%2F``, ``%`` as ``%25``). The routes then match plain
``{registry_ref}`` / ``{artifact}`` parameters, which ``unquote`` turns back into the refs.

A path whose refs cannot be parsed is answered 400 at once, in the HAR envelope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote, unquote

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from labelhub.core.errors import Invalid
from labelhub.core.memo import remembered

PREFIX = "/har/api/v1"
_ENCODED_SLASH = "%2f"


# What ``quote`` never escapes: a segment of these alone is its own quoted form.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _unquote(segment: str) -> str:
    """``unquote(segment)``, without its cost for the usual segments: none or only ``%2F``."""
    if "%" not in segment:
        return segment
    slashed = segment.replace("%2F", "/").replace("%2f", "/")
    return slashed if "%" not in slashed else unquote(segment)


def _take_ref(segments: list[str], start: int, what: str) -> tuple[str, int]:
    """The ref starting at ``segments[start]`` and the index after it."""
    if start >= len(segments) or not segments[start]:
        raise Invalid(f"{what} is missing from the path")
    first = segments[start]
    if _ENCODED_SLASH in first.lower():
        return _unquote(first), start + 1
    if "+" in segments[start:]:
        end = segments.index("+", start)
        parts = segments[start:end]
        if parts and all(parts):
            return "/".join(_unquote(p) for p in parts), end + 1
    return _unquote(first), start + 1


def q(ref: str) -> str:
    """A ref as one path segment (``quote(ref, safe="")``, the usual refs without its cost)."""
    if _UNRESERVED.fullmatch(ref.replace("/", "")):
        return ref.replace("/", "%2F")
    return quote(ref, safe="")


@remembered(entries=4096, longest=512)
def canonical(raw_tail: str) -> str | None:
    """The canonical form of a raw path below ``/har/api/v1`` (None: not a ref-bearing route);
    remembered for the last 4,096 paths of up to 512 characters seen (a server sees the same
    artifacts' paths again and again; 2 us a request, 0.2 remembered). A path that does not
    parse raises ``Invalid`` every time."""
    segments = raw_tail.split("/")[1:]
    if segments and segments[-1] == "" and len(segments) > 1:
        segments = segments[:-1]  # a trailing slash
    if not segments:
        return None
    head = segments[0]
    if head == "spaces" and len(segments) >= 3:
        ref, nxt = _take_ref(segments, 1, "space_ref")
        return "/".join(["", "spaces", q(ref), *segments[nxt:]])
    if head != "registry" or len(segments) < 2:
        return None
    ref, nxt = _take_ref(segments, 1, "registry_ref")
    rest = segments[nxt:]
    out = ["", "registry", q(ref)]
    if len(rest) >= 2 and rest[0] == "artifact" and rest[1:] != ["labels"]:
        artifact, after = _take_ref(rest, 1, "artifact")
        return "/".join([*out, "artifact", q(artifact), *rest[after:]])
    return "/".join(out + rest)


class CanonicalPaths:
    """Rewrites HAR paths to their canonical form before routing (see the module docstring)."""

    def __init__(self, app: ASGIApp, render: Callable[[str, Exception], Response]) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes = scope.get("raw_path") or scope["path"].encode()
            raw_path = raw.decode("latin-1").split("?", 1)[0]
            if raw_path.startswith(PREFIX + "/"):
                try:
                    rewritten = canonical(raw_path[len(PREFIX) :])
                except Invalid as error:
                    await self.render(scope["path"], error)(scope, receive, send)
                    return
                if rewritten is not None:
                    scope["path"] = PREFIX + rewritten  # in place: the request log reads it
        await self.app(scope, receive, send)
