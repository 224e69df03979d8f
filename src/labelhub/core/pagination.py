"""Paging arithmetic both APIs share.

ActionHub pages are 1-based (``page``, ``size``; answers carry ``total``); HAR pages are 0-based
(``page``, ``size``; answers carry ``itemCount``, ``pageCount``, ``pageIndex``, ``pageSize``).
The queries themselves live with each API's store: they page through indexes in ways a generic
paginator cannot (keyset skips, trigram matches), so only the arithmetic is shared here.
"""

from __future__ import annotations

# Far past any real table; keeps OFFSET inside a 64-bit integer on both dialects.
MAX_OFFSET = 2**62


def offset_of(page: int, size: int, *, first_page: int = 1) -> int:
    """Rows before the page; pages past any real table are clamped (they are empty anyway)."""
    return min((page - first_page) * size, MAX_OFFSET)


def page_count(total: int, size: int) -> int:
    return (total + size - 1) // size
