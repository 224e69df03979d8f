"""Transport-neutral errors raised by the storage core and the API packages.

    LabelhubError              anything labelhub reports to a caller on purpose
    ├── Invalid                the request cannot be carried out as sent (bad value, bad ref)
    │   └── Unsupported        a well-formed request for something labelhub does not offer
    ├── Unauthenticated        no key, or a key that is unknown or revoked
    ├── Forbidden              a valid key without the needed grant
    ├── NotFound               the thing named does not exist (or is not visible)
    ├── Conflict               it exists already / a concurrent change got there first
    ├── PreconditionFailed     an ``If-Match`` that no longer holds
    ├── PayloadTooLarge        a body over the configured limit
    └── Unavailable            the database cannot be reached right now

The errors know nothing of HTTP: each API maps them to a status code and renders them in its
own envelope (``labelhub.app`` does this by path prefix).
"""

from __future__ import annotations

from typing import Any


class LabelhubError(Exception):
    """Base class; ``message`` is one sentence meant for the caller."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Invalid(LabelhubError):
    pass


class Unsupported(Invalid):
    pass


class Unauthenticated(LabelhubError):
    pass


class Forbidden(LabelhubError):
    pass


class NotFound(LabelhubError):
    pass


class Conflict(LabelhubError):
    pass


class PreconditionFailed(LabelhubError):
    pass


class PayloadTooLarge(LabelhubError):
    pass


class Unavailable(LabelhubError):
    pass


STATUS: dict[type[LabelhubError], int] = {
    Invalid: 400,
    Unsupported: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    Unavailable: 503,
}


def status_of(error: LabelhubError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
