"""Entity tags (RFC 9110 §8.8.3) for labelhub's optimistic-concurrency extension.

A tag is a strong validator: a hash of the representation's JSON, so two answers carry the same
tag exactly when they carry the same bytes. ``If-Match`` compares strongly (a weak ``W/`` tag never
matches), ``If-None-Match`` weakly, as the RFC says.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel


def of(representation: BaseModel, *, exclude_none: bool = False) -> str:
    data = representation.model_dump_json(exclude_none=exclude_none).encode()
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
