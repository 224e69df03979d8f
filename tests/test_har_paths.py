"""The HAR path helpers' shortcuts answer exactly what ``urllib.parse`` would."""

from __future__ import annotations

from urllib.parse import quote, unquote

from hypothesis import given
from hypothesis import strategies as st

from labelhub.har import paths

# Segments and refs as clients write them: plain names, %2F and %2f, other escapes, stray %.
pieces = st.sampled_from(
    ["a", "Z9", "_.~-", "%2F", "%2f", "/", "%", "%25", "%20", "%C3%BC", " ", "ü", "+"]
)
texts = st.lists(pieces | st.text(max_size=3), max_size=8).map("".join)


@given(texts)
def test_unquote_shortcut_is_unquote(segment: str) -> None:
    assert paths._unquote(segment) == unquote(segment)


@given(texts)
def test_quote_shortcut_is_quote(ref: str) -> None:
    assert paths.q(ref) == quote(ref, safe="")
