"""Hostile input, property-based: every answer is the documented 4xx or a faithful round trip.

Strings are drawn from all of Unicode, lone surrogates included, and sent as JSON escapes
(``ensure_ascii``), so the server sees exactly what a client could send on the wire.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import given
from hypothesis import strategies as st

from labelhub.actionhub.schemas import FORBIDDEN
from tests.actionhub_helpers import ActionHub
from tests.conftest import property_profile
from tests.test_har_core import Har, envelope_error
from tests.test_har_core import har as har  # the fixture

PROFILE = property_profile(60)
ANY_TEXT = st.text(st.characters(codec=None, min_codepoint=0), max_size=80) | st.text(
    st.sampled_from("a\x00\x1f\x7f\x9f\ud800\udfff\u00df\U0001f600 /%+"), max_size=70
)
LONG_TEXT = st.integers(60, 5000).map(lambda n: "x" * n)


def valid_name(value: str, limit: int, *, empty: bool = False) -> bool:
    return (empty or len(value) >= 1) and len(value) <= limit and not FORBIDDEN.search(value)


def wire(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()


def assert_422(r: httpx.Response) -> None:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail and all("loc" in d and "msg" in d for d in detail)


@PROFILE
@given(label=ANY_TEXT | LONG_TEXT, weight=st.floats(allow_nan=False, allow_infinity=False))
async def test_label_round_trip_or_422(ah: ActionHub, label: str, weight: float) -> None:
    before = (await ah.labels(size=1))["total"]
    # Found here: a 422 echoing a lone surrogate failed to encode and became a 500.
    r = await ah.raw("PUT", "/labels", wire({"labels": [{"label": label, "weight": weight}]}))
    if not valid_name(label, 64):
        assert_422(r)
        assert (await ah.labels(size=1))["total"] == before  # nothing written
        return
    assert r.status_code == 200, r.text
    # There is no GET of one label: find it through a search for its own name.
    found = {i["label"]: i["weight"] for i in (await ah.labels(search=label, size=100))["items"]}
    assert found.get(label) == weight
    r = await ah.http.delete("/labels/" + quote(label, safe=""), headers=ah.headers())
    assert r.status_code == 200, r.text


@PROFILE
@given(asset_id=ANY_TEXT, name=ANY_TEXT | LONG_TEXT, labels=st.lists(ANY_TEXT, max_size=4))
async def test_asset_round_trip_or_422(
    ah: ActionHub, asset_id: str, name: str, labels: list[str]
) -> None:
    body = {"assets": [{"asset_id": asset_id, "asset_name": name, "labels": labels}]}
    r = await ah.raw("POST", "/assets", wire(body))
    valid = (
        valid_name(asset_id, 64)
        and valid_name(name, 124, empty=True)
        and all(valid_name(label, 64) for label in labels)
    )
    if not valid:
        assert_422(r)
        return
    assert r.status_code == 200, r.text
    r = await ah.http.get("/assets/" + quote(asset_id, safe=""), headers=ah.headers())
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["asset_id"] == asset_id and got["asset_name"] == name
    assert sorted(got["labels"]) == sorted(set(labels))
    r = await ah.http.delete("/assets/" + quote(asset_id, safe=""), headers=ah.headers())
    assert r.status_code == 200


@PROFILE
@given(labels=st.lists(ANY_TEXT | LONG_TEXT, max_size=5))
async def test_har_labels_round_trip_or_400(har: Har, labels: list[str]) -> None:
    r = await har.artifact("acct%2Fgeneric", "target")
    assert r.status_code in (201, 409)
    path = "/har/api/v1/registry/acct%2Fgeneric/artifact/target"
    before = (await har.http.get(path + "/summary", headers=har.h())).json()["data"]["labels"]
    r = await har.http.put(
        path + "/labels",
        content=wire({"labels": labels}),
        headers={**har.h(), "content-type": "application/json"},
    )
    if not all(valid_name(label, 255) for label in labels):
        envelope_error(400)(r)
        after = (await har.http.get(path + "/summary", headers=har.h())).json()["data"]["labels"]
        assert after == before
        return
    assert r.status_code == 200, r.text
    expected = sorted(set(labels), key=lambda s: s.encode())
    assert r.json()["data"]["labels"] == expected
    summary = (await har.http.get(path + "/summary", headers=har.h())).json()["data"]
    assert summary["labels"] == expected


# --- shapes of JSON that are not strings ------------------------------------------------------


@PROFILE
@given(depth=st.integers(2, 200_000))
async def test_deep_nesting_is_refused_not_a_crash(ah: ActionHub, har: Har, depth: int) -> None:
    # Found here: the 422's echo of a 1,000-deep body overflowed the error handler (a 500).
    nested = ("[" * depth + "]" * depth).encode()
    for body in (b'{"labels": ' + nested + b"}", nested):
        r = await ah.raw("PUT", "/labels", body)
        # 422 when it parses; 400 "There was an error parsing the body" when it is nested too
        # deep for the JSON parser (FastAPI's own answer), either way nothing is written.
        assert r.status_code in (400, 422), r.text[:200]
        assert set(r.json()) == {"detail"}
        r = await har.http.put(
            "/har/api/v1/registry/acct%2Fgeneric/artifact/x/labels",
            content=body,
            headers={**har.h(), "content-type": "application/json"},
        )
        assert r.status_code in (400, 413), r.text[:200]
        if r.status_code == 400:
            envelope_error(400)(r)


@PROFILE
@given(
    weight=st.sampled_from(["1e309", "-1e309", "1" + "0" * 400, "NaN", "Infinity", "-Infinity"])
    | st.integers(310, 6000).map(lambda digits: "9" * digits)
)
async def test_huge_numbers_are_refused(ah: ActionHub, weight: str) -> None:
    body = b'{"labels": [{"label": "big", "weight": ' + weight.encode() + b"}]}"
    r = await ah.raw("PUT", "/labels", body)
    if len(weight) > 4300:  # past Python's int parsing limit: the JSON does not parse (400)
        assert r.status_code == 400 and set(r.json()) == {"detail"}, r.text[:200]
    else:
        assert_422(r)
    json.dumps(r.json(), allow_nan=False)  # the error body itself is strict JSON
    assert (await ah.labels(size=1))["total"] == 0


@PROFILE
@given(
    first=st.text(max_size=8), last=st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
)
async def test_duplicate_keys_last_one_wins(ah: ActionHub, first: str, last: str) -> None:
    # Python's JSON parser keeps the last of duplicate keys; labelhub answers as it parsed.
    pair = f'"label": {json.dumps(first)}, "label": {json.dumps(last)}'
    body = '{"labels": [{' + pair + ', "weight": 1, "weight": 2}]}'
    before = (await ah.labels(size=1))["total"]
    r = await ah.raw("PUT", "/labels", body.encode())
    if not valid_name(last, 64):
        assert_422(r)
        return
    assert r.status_code == 200, r.text
    assert (await ah.labels(size=1))["total"] == before + 1  # one label, not two
    found = {i["label"]: i["weight"] for i in (await ah.labels(search=last, size=100))["items"]}
    assert found.get(last) == 2
    r = await ah.http.delete("/labels/" + quote(last, safe=""), headers=ah.headers())
    assert r.status_code == 200
