"""labelhub extension: ETag on the HAR artifact summary and on GET /labels; If-Match on the HAR
label update (412 on mismatch, nothing changed); If-None-Match (304) on both reads."""

from __future__ import annotations

import asyncio

import httpx

from labelhub.core import etag
from tests.actionhub_helpers import ActionHub
from tests.test_har_core import Har, envelope_error
from tests.test_har_core import har as har  # the fixture

ART = "/har/api/v1/registry/acct%2Fgeneric/artifact/model"


async def put_labels(har: Har, labels: list[str], **headers: str) -> httpx.Response:
    return await har.http.put(ART + "/labels", json={"labels": labels}, headers=har.h() | headers)


async def summary(har: Har, **headers: str) -> httpx.Response:
    return await har.http.get(ART + "/summary", headers=har.h() | headers)


async def test_summary_etag_tracks_the_representation(har: Har) -> None:
    assert (await har.artifact("acct%2Fgeneric", "model", labels=["a"])).status_code == 201
    first = await summary(har)
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    assert (await summary(har)).headers["etag"] == tag  # stable while nothing changes
    r = await summary(har, **{"if-none-match": tag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == tag
    assert (await summary(har, **{"if-none-match": f"W/{tag}"})).status_code == 304
    assert (await summary(har, **{"if-none-match": '"other"'})).status_code == 200

    updated = await put_labels(har, ["b"])
    assert updated.status_code == 200
    assert updated.headers["etag"] != tag
    assert updated.headers["etag"] == (await summary(har)).headers["etag"]


async def test_if_match_guards_the_label_update(har: Har) -> None:
    assert (await har.artifact("acct%2Fgeneric", "model", labels=["a"])).status_code == 201
    seen = (await summary(har)).headers["etag"]
    # Someone else changes the labels after our read...
    assert (await put_labels(har, ["theirs"])).status_code == 200
    # ...so our update, made against what we saw, is refused and changes nothing.
    r = await put_labels(har, ["ours"], **{"if-match": seen})
    envelope_error(412)(r)
    assert (await summary(har)).json()["data"]["labels"] == ["theirs"]
    # With the current tag (alone, in a list, or *) it goes through.
    current = (await summary(har)).headers["etag"]
    r = await put_labels(har, ["ours"], **{"if-match": f'"nope", {current}'})
    assert r.status_code == 200 and r.json()["data"]["labels"] == ["ours"]
    assert (await put_labels(har, ["any"], **{"if-match": "*"})).status_code == 200
    # A weak tag never matches If-Match (strong comparison).
    current = (await summary(har)).headers["etag"]
    envelope_error(412)(await put_labels(har, ["x"], **{"if-match": f"W/{current}"}))
    # No If-Match: the seed behaviour, last writer wins.
    assert (await put_labels(har, ["plain"])).status_code == 200


async def test_if_match_on_a_missing_artifact_is_404(har: Har) -> None:
    r = await put_labels(har, ["x"], **{"if-match": "*"})
    envelope_error(404)(r)


async def test_concurrent_if_match_updates_one_wins(har: Har) -> None:
    assert (await har.artifact("acct%2Fgeneric", "model", labels=["a"])).status_code == 201
    seen = (await summary(har)).headers["etag"]
    answers = await asyncio.gather(
        *(put_labels(har, [f"writer-{n}"], **{"if-match": seen}) for n in range(8))
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [412] * 7, statuses
    [winner] = [r for r in answers if r.status_code == 200]
    assert (await summary(har)).json()["data"]["labels"] == winner.json()["data"]["labels"]


async def test_labels_page_etag(ah: ActionHub) -> None:
    assert (await ah.put_labels([{"label": "a", "weight": 1}])).status_code == 200
    r = await ah.http.get("/labels", headers=ah.headers())
    tag = r.headers["etag"]
    assert (await ah.http.get("/labels", headers=ah.headers())).headers["etag"] == tag
    other_page = await ah.http.get("/labels", params={"size": 10}, headers=ah.headers())
    assert other_page.headers["etag"] != tag  # the page's own representation (size differs)
    r = await ah.http.get("/labels", headers=ah.headers(**{"if-none-match": tag}))
    assert r.status_code == 304 and r.headers["etag"] == tag
    assert (await ah.put_labels([{"label": "a", "weight": 2}])).status_code == 200
    r = await ah.http.get("/labels", headers=ah.headers(**{"if-none-match": tag}))
    assert r.status_code == 200 and r.headers["etag"] != tag
    assert r.json()["items"] == [{"label": "a", "weight": 2.0}]


def test_if_match_rules() -> None:
    assert etag.if_match(None, None) and etag.if_match(None, '"a"')
    assert etag.if_match("*", '"a"') and not etag.if_match("*", None)
    assert etag.if_match('"b", "a"', '"a"') and not etag.if_match('W/"a"', '"a"')
    assert not etag.if_none_match('"a"', '"a"') and not etag.if_none_match('W/"a"', '"a"')
    assert etag.if_none_match('"b"', '"a"') and not etag.if_none_match("*", '"a"')
