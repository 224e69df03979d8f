"""ActionHub spec, *Labels*: PUT, GET and DELETE /labels, through HTTP, on both databases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.actionhub_helpers import ActionHub


def result(created: int, updated: int) -> dict[str, str]:
    def n(count: int) -> str:
        return f"{count} label{'' if count == 1 else 's'}"

    return {"result": f"{n(created)} created, {n(updated)} updated"}


# --- PUT /labels ----------------------------------------------------------------------------


async def test_put_adds_replaces_and_leaves_others(ah: ActionHub) -> None:
    r = await ah.put_labels([{"label": "sale", "weight": 1.5}, {"label": "new", "weight": 2}])
    assert r.status_code == 200 and r.json() == result(2, 0)
    r = await ah.put_labels([{"label": "sale", "weight": -3.25}, {"label": "gift", "weight": 0}])
    assert r.status_code == 200 and r.json() == result(1, 1)
    assert await ah.all_labels() == {"gift": 0.0, "new": 2.0, "sale": -3.25}


async def test_put_applies_items_in_order_last_weight_wins(ah: ActionHub) -> None:
    r = await ah.put_labels(
        [{"label": "a", "weight": 1}, {"label": "b", "weight": 5}, {"label": "a", "weight": 3}]
    )
    assert r.status_code == 200 and r.json() == result(2, 0)
    assert await ah.all_labels() == {"a": 3.0, "b": 5.0}
    r = await ah.put_labels([{"label": "a", "weight": 7}, {"label": "a", "weight": 8}])
    assert r.json() == result(0, 1)
    assert await ah.all_labels() == {"a": 8.0, "b": 5.0}


async def test_put_empty_list_and_missing_labels(ah: ActionHub) -> None:
    r = await ah.put_labels([])
    assert r.status_code == 200 and r.json() == result(0, 0)
    r = await ah.http.put("/labels", json={}, headers=ah.headers())
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {"type": "missing", "loc": ["body", "labels"], "msg": "Field required", "input": {}}
        ]
    }


async def test_labels_are_case_sensitive_and_stored_exactly(ah: ActionHub) -> None:
    names = ["Sale", "sale", "SALE", " sale ", "ünïcödé", "emoji 🎉", "a/b", "100%_off", "x" * 64]
    r = await ah.put_labels([{"label": n, "weight": i} for i, n in enumerate(names)])
    assert r.status_code == 200 and r.json() == result(len(names), 0)
    assert await ah.all_labels() == {n: float(i) for i, n in enumerate(names)}


async def test_weights_come_back_as_the_same_doubles(ah: ActionHub) -> None:
    """Every weight is stored and read back bit for bit, at the edges of the double range too."""
    weights = [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1e300]
    weights += [1e16 + 2, 123456789.12345679, -2.5]
    body = [{"label": f"w{i}", "weight": w} for i, w in enumerate(weights)]
    assert (await ah.put_labels(body)).status_code == 200
    stored = await ah.all_labels()
    assert [stored[f"w{i}"] for i in range(len(weights))] == weights


async def test_numeric_strings_are_weights(ah: ActionHub) -> None:
    r = await ah.put_labels([{"label": "a", "weight": "2.5"}, {"label": "b", "weight": "-1e3"}])
    assert r.status_code == 200
    assert await ah.all_labels() == {"a": 2.5, "b": -1000.0}


async def test_10000_labels_in_one_request(ah: ActionHub) -> None:
    labels = [{"label": f"l{i:05d}", "weight": i / 7} for i in range(10_000)]
    r = await ah.put_labels(labels)
    assert r.status_code == 200 and r.json() == result(10_000, 0)
    body = await ah.labels(page=200, size=50)
    assert body["total"] == 10_000
    assert body["items"][-1] == {"label": "l09999", "weight": 9999 / 7}


BAD_ITEMS: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "65 characters",
        {"label": "x" * 65, "weight": 1},
        {
            "type": "string_too_long",
            "loc": ["body", "labels", 1, "label"],
            "msg": "String should have at most 64 characters",
            "input": "x" * 65,
            "ctx": {"max_length": 64},
        },
    ),
    (
        "empty label",
        {"label": "", "weight": 1},
        {
            "type": "string_too_short",
            "loc": ["body", "labels", 1, "label"],
            "msg": "String should have at least 1 character",
            "input": "",
            "ctx": {"min_length": 1},
        },
    ),
    (
        "U+0000",
        {"label": "a\u0000b", "weight": 1},
        {
            "type": "value_error",
            "loc": ["body", "labels", 1, "label"],
            "msg": "Value error, must not contain control characters (found U+0000)",
            "input": "a\u0000b",
            "ctx": {"error": {}},
        },
    ),
    (
        "U+001F",
        {"label": "tab\there", "weight": 1},
        {
            "type": "value_error",
            "loc": ["body", "labels", 1, "label"],
            "msg": "Value error, must not contain control characters (found U+0009)",
            "input": "tab\there",
            "ctx": {"error": {}},
        },
    ),
    (
        "U+007F",
        {"label": "del\u007f", "weight": 1},
        {
            "type": "value_error",
            "loc": ["body", "labels", 1, "label"],
            "msg": "Value error, must not contain control characters (found U+007F)",
            "input": "del\u007f",
            "ctx": {"error": {}},
        },
    ),
    (
        "U+009F",
        {"label": "c1\u009f", "weight": 1},
        {
            "type": "value_error",
            "loc": ["body", "labels", 1, "label"],
            "msg": "Value error, must not contain control characters (found U+009F)",
            "input": "c1\u009f",
            "ctx": {"error": {}},
        },
    ),
    (
        "weight as text",
        {"label": "a", "weight": "heavy"},
        {
            "type": "float_parsing",
            "loc": ["body", "labels", 1, "weight"],
            "msg": "Input should be a valid number, unable to parse string as a number",
            "input": "heavy",
        },
    ),
    (
        "weight null",
        {"label": "a", "weight": None},
        {
            "type": "float_type",
            "loc": ["body", "labels", 1, "weight"],
            "msg": "Input should be a valid number",
            "input": None,
        },
    ),
    (
        "label a number",
        {"label": 5, "weight": 1},
        {
            "type": "string_type",
            "loc": ["body", "labels", 1, "label"],
            "msg": "Input should be a valid string",
            "input": 5,
        },
    ),
    (
        "weight missing",
        {"label": "a"},
        {
            "type": "missing",
            "loc": ["body", "labels", 1, "weight"],
            "msg": "Field required",
            "input": {"label": "a"},
        },
    ),
    (
        "item not an object",
        "a",
        {
            "type": "model_attributes_type",
            "loc": ["body", "labels", 1],
            "msg": "Input should be a valid dictionary or object to extract fields from",
            "input": "a",
        },
    ),
]


@pytest.mark.parametrize("name,item,error", BAD_ITEMS, ids=[b[0] for b in BAD_ITEMS])
async def test_bad_item_is_422_and_writes_nothing(
    ah: ActionHub, name: str, item: Any, error: dict[str, Any]
) -> None:
    await ah.put_labels([{"label": "kept", "weight": 1}])
    r = await ah.put_labels([{"label": "good", "weight": 2}, item, {"label": "kept", "weight": 9}])
    assert r.status_code == 422
    assert r.json() == {"detail": [error]}
    assert await ah.all_labels() == {"kept": 1.0}


@pytest.mark.parametrize(
    "raw,spelled",
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e309", "Infinity")],
)
async def test_non_finite_weights_are_422_with_a_json_body(
    ah: ActionHub, raw: str, spelled: str
) -> None:
    body = '{"labels": [{"label": "good", "weight": 1}, {"label": "bad", "weight": ' + raw + "}]}"
    r = await ah.raw("PUT", "/labels", body.encode())
    assert r.status_code == 422
    assert json.loads(r.text) == {
        "detail": [
            {
                "type": "finite_number",
                "loc": ["body", "labels", 1, "weight"],
                "msg": "Input should be a finite number",
                "input": spelled,
            }
        ]
    }
    assert await ah.all_labels() == {}


async def test_10001_labels_is_422(ah: ActionHub) -> None:
    r = await ah.put_labels([{"label": f"l{i}", "weight": 1} for i in range(10_001)])
    assert r.status_code == 422
    error = r.json()["detail"][0]
    assert error["type"] == "too_long" and error["loc"] == ["body", "labels"]
    assert error["msg"] == "List should have at most 10000 items after validation, not 10001"
    assert await ah.all_labels() == {}


@pytest.mark.parametrize(
    "body",
    [b'{"labels": [', b"not json", b'{"labels": [{"label": "a", "weight": 1},]}', b""],
)
async def test_malformed_json_is_422_json_invalid(ah: ActionHub, body: bytes) -> None:
    r = await ah.raw("PUT", "/labels", body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    if body:
        assert detail[0]["type"] == "json_invalid" and detail[0]["loc"][0] == "body"
    else:
        assert detail == [
            {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        ]
    assert await ah.all_labels() == {}


@pytest.mark.parametrize(
    "body", [b"[]", b'{"labels": {"label": "a", "weight": 1}}', b'{"labels": "a"}', b"5"]
)
async def test_wrong_body_types_are_422(ah: ActionHub, body: bytes) -> None:
    r = await ah.raw("PUT", "/labels", body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "body"
    assert await ah.all_labels() == {}


async def test_body_over_5_mib_is_413_before_parsing(ah: ActionHub) -> None:
    big = b'{"labels": [' + b" " * (5 * 1024 * 1024) + b"]}"
    for key in (ah.key, "bogus"):  # refused before the key is even looked at
        r = await ah.raw("PUT", "/labels", big, key=key)
        assert r.status_code == 413
        assert r.json() == {"detail": "Request body is larger than the limit of 5242880 bytes"}


# --- GET /labels ----------------------------------------------------------------------------


async def test_get_pages_in_byte_order(ah: ActionHub) -> None:
    names = ["b", "B", "a", "A", "é", "Z", "_x", "%y", "10", "9", "ß", "😀", "zz"]
    await ah.put_labels([{"label": n, "weight": 1} for n in names])
    expected = sorted(names, key=lambda s: s.encode())
    body = await ah.labels()
    assert body == {
        "items": [{"label": n, "weight": 1.0} for n in expected],
        "total": len(names),
        "page": 1,
        "size": 50,
    }
    pages = [await ah.labels(page=p, size=4) for p in range(1, 5)]
    assert [i["label"] for p in pages for i in p["items"]] == expected
    assert [p["total"] for p in pages] == [len(names)] * 4
    assert pages[3] == {
        "items": [{"label": expected[12], "weight": 1.0}],
        "total": 13,
        "page": 4,
        "size": 4,
    }


async def test_page_past_the_end_is_empty_with_the_true_total(ah: ActionHub) -> None:
    await ah.put_labels([{"label": f"l{i}", "weight": 1} for i in range(3)])
    assert await ah.labels(page=2) == {"items": [], "total": 3, "page": 2, "size": 50}
    assert await ah.labels(page=10**15, size=100) == {
        "items": [],
        "total": 3,
        "page": 10**15,
        "size": 100,
    }
    assert await ah.labels(page=99, search="l") == {"items": [], "total": 3, "page": 99, "size": 50}
    # A search long enough for the trigram index: counted alongside the page, or alone past it.
    await ah.put_labels([{"label": f"long-{i}", "weight": i} for i in range(5)])
    body = await ah.labels(page=2, size=2, search="ONG-")
    assert body == {
        "items": [{"label": "long-2", "weight": 2.0}, {"label": "long-3", "weight": 3.0}],
        "total": 5,
        "page": 2,
        "size": 2,
    }
    assert await ah.labels(page=4, size=2, search="ong-") == {
        "items": [],
        "total": 5,
        "page": 4,
        "size": 2,
    }
    assert await ah.labels(search="nowhere") == {"items": [], "total": 0, "page": 1, "size": 50}


@pytest.mark.parametrize(
    "params,loc,kind",
    [
        ({"page": 0}, ["query", "page"], "greater_than_equal"),
        ({"page": -1}, ["query", "page"], "greater_than_equal"),
        ({"page": "x"}, ["query", "page"], "int_parsing"),
        ({"size": 0}, ["query", "size"], "greater_than_equal"),
        ({"size": 101}, ["query", "size"], "less_than_equal"),
    ],
)
async def test_paging_out_of_range_is_422(
    ah: ActionHub, params: dict[str, Any], loc: list[str], kind: str
) -> None:
    r = await ah.http.get("/labels", params=params, headers=ah.headers())
    assert r.status_code == 422
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(loc, kind)]


async def test_search_is_case_folded_substring_with_literal_wildcards(ah: ActionHub) -> None:
    names = [
        "Summer Sale",
        "SALES-2024",
        "wholesale",
        "Straße",
        "STRASSE-x",
        "100%_off",
        "100x_off",
        "1000off",
        "a*b",
        "a?b",
        "a[b]",
        "fish",
    ]
    await ah.put_labels([{"label": n, "weight": 1} for n in names])

    async def found(search: str) -> list[str]:
        body = await ah.labels(search=search, size=100)
        assert body["total"] == len(body["items"])
        return [i["label"] for i in body["items"]]

    def expected(search: str) -> list[str]:
        return sorted(
            (n for n in names if search.casefold() in n.casefold()), key=lambda s: s.encode()
        )

    for search in [
        "sale",
        "SALE",
        "Sale",
        "strasse",
        "STRASSE",
        "straße",
        "ß",
        "%",
        "_",
        "%_",
        "0%_o",
        "00%",
        "*",
        "?",
        "[b]",
        "a[",
        "x",
        "2024",
        "ish",
        "nothing",
    ]:
        assert await found(search) == expected(search), search
    assert await found("sale") == ["SALES-2024", "Summer Sale", "wholesale"]
    assert await found("%") == ["100%_off"]
    assert await found("_") == ["100%_off", "100x_off"]


async def test_search_with_control_characters_matches_nothing(ah: ActionHub) -> None:
    await ah.put_labels([{"label": "abc", "weight": 1}])
    assert await ah.labels(search="a\u0000") == {"items": [], "total": 0, "page": 1, "size": 50}
    assert (await ah.labels(search=""))["total"] == 1  # empty search: no filter


async def test_search_pages(ah: ActionHub) -> None:
    await ah.put_labels(
        [{"label": f"item-{i:03d}", "weight": i} for i in range(120)]
        + [{"label": "other", "weight": 0}]
    )
    body = await ah.labels(search="ITEM-", page=3, size=50)
    assert body["total"] == 120 and body["page"] == 3 and body["size"] == 50
    assert [i["label"] for i in body["items"]] == [f"item-{i:03d}" for i in range(100, 120)]


# --- DELETE /labels/{label} -----------------------------------------------------------------


async def test_delete_label(ah: ActionHub) -> None:
    await ah.put_labels(
        [
            {"label": "a/b", "weight": 1},
            {"label": "100% off", "weight": 2},
            {"label": "keep", "weight": 3},
        ]
    )
    r = await ah.http.delete("/labels/a%2Fb", headers=ah.headers())
    assert r.status_code == 200 and r.json() == {"result": "Label 'a/b' deleted"}
    r = await ah.http.delete("/labels/100%25%20off", headers=ah.headers())
    assert r.status_code == 200
    assert await ah.all_labels() == {"keep": 3.0}
    assert (await ah.labels())["total"] == 1
    r = await ah.http.delete("/labels/a%2Fb", headers=ah.headers())
    assert r.status_code == 404 and r.json() == {"detail": "Label not found"}
    r = await ah.http.delete("/labels/KEEP", headers=ah.headers())  # case-sensitive
    assert r.status_code == 404


@pytest.mark.parametrize("path", ["/labels/a%00b", "/labels/%7F", "/assets/a%00", "/assets/%1B"])
async def test_control_characters_in_paths_are_422(ah: ActionHub, path: str) -> None:
    for method in ("GET", "DELETE") if path.startswith("/assets") else ("DELETE",):
        r = await ah.http.request(method, path, headers=ah.headers())
        assert r.status_code == 422
        assert (
            r.json()["detail"][0]["type"] == "value_error"
            and r.json()["detail"][0]["loc"][0] == "path"
        )
