"""Entity tags (RFC 9110 §8.8.3) for labelhub's optimistic-concurrency extension.

A tag is a strong validator: a hash of the representation's JSON, so two answers carry the same
tag exactly when they carry the same bytes. ``If-Match`` compares strongly (a weak ``W/`` tag never
matches), ``If-None-Match`` weakly, as the RFC says.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Header, Response
from pydantic import BaseModel

IfNoneMatch = Annotated[
    str | None,
    Header(alias="if-none-match", description="304 when the current ETag is one of these"),
]


def documented(what: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a read that carries an ETag of ``what`` and answers 304."""
    header = {
        "ETag": {
            "description": f"labelhub extension: the entity tag of {what}",
            "schema": {"type": "string"},
        }
    }
    return {
        200: {"headers": header},
        304: {"description": "Not modified (If-None-Match)", "headers": header},
    }


def not_modified(response: Response, tag: str, header: str | None) -> Response | None:
    """A 304 when the ``If-None-Match`` header holds ``tag``; otherwise None, with ``tag`` set on
    ``response`` (the handler's response) for the full answer."""
    if not if_none_match(header, tag):
        return Response(status_code=304, headers={"ETag": tag})
    response.headers["ETag"] = tag
    return None


def of(representation: BaseModel, *, exclude_none: bool = False) -> str:
    return of_json(representation.model_dump_json(exclude_none=exclude_none).encode())


def of_json(data: bytes) -> str:
    """The tag of a representation already rendered as (pydantic's) JSON."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def if_match(header: str | None, current: str | None) -> bool:
    """Whether a write may go ahead: no header, ``*`` on an existing resource, or a listed tag."""
    if header is None:
        return True
    tags = _tags(header)
    if "*" in tags:
        return current is not None
    return current is not None and current in tags


def if_none_match(header: str | None, current: str) -> bool:
    """Whether a read must be answered in full (False: 304 Not Modified)."""
    if header is None:
        return True
    tags = [tag.removeprefix("W/") for tag in _tags(header)]
    return not ("*" in tags or current in tags)
