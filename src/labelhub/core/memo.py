"""A per-transaction memo for lookups that several jobs of one write batch repeat, and a
process-wide one for pure functions of short strings that requests repeat."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

MEMO = "labelhub.memo"

R = TypeVar("R")


def remembered(entries: int, longest: int) -> Callable[[Callable[[str], R]], Callable[[str], R]]:
    """``fn(text)`` remembered for the last ``entries`` texts of at most ``longest`` characters
    (a longer one is computed every time, so the memo's size stays bounded); an exception is
    not remembered. For pure functions only."""

    def wrap(fn: Callable[[str], R]) -> Callable[[str], R]:
        cached = functools.lru_cache(maxsize=entries)(fn)

        @functools.wraps(fn)
        def call(text: str) -> R:
            return cached(text) if len(text) <= longest else fn(text)

        return call

    return wrap


def memo(conn: Connection) -> dict[Any, Any]:
    """A dict that lives for the current transaction: lookups several jobs of a batch repeat
    (a key, a program) are read once. ``forget`` empties it; every transaction starts empty, and
    anything that changes keys or programs calls it."""
    found: dict[Any, Any] | None = conn.info.get(MEMO)
    if found is None:
        found = conn.info[MEMO] = {}
    return found


def forget(conn: Connection) -> None:
    conn.info[MEMO] = {}


AHEAD = "read ahead"


def read_ahead(conn: Connection) -> dict[Any, Any]:
    """What a shared function's reads ahead found (``access.READS_AHEAD``): for that function to
    take in the same run (``access._guarded`` empties it afterwards, so nothing read ahead
    outlives the run it was read for)."""
    found: dict[Any, Any] = memo(conn).setdefault(AHEAD, {})
    return found


def drop_read_ahead(conn: Connection) -> None:
    # A connection lost mid-run (invalidated) takes its memo with it; touching its ``info``
    # then would raise over the outage that lost it (a 500 where the answer is a 503).
    if not conn.invalidated:
        memo(conn).pop(AHEAD, None)


AFTER_COMMIT = "after commit"


def after_commit(conn: Connection, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the current transaction has committed (dropped if it rolls back, or if
    ``forget`` empties the memo first: what it publishes must be safe to lose)."""
    memo(conn).setdefault(AFTER_COMMIT, []).append(fn)


def committed(conn: Connection) -> None:
    """Called by whoever committed the transaction: runs what ``after_commit`` registered."""
    for fn in memo(conn).pop(AFTER_COMMIT, []):
        fn()
