"""ActionHub spec, *Assets*: POST/GET /assets, GET/DELETE /assets/{asset_id}, on both databases."""

from __future__ import annotations

from typing import Any

import pytest

from tests.actionhub_helpers import ActionHub


def result(created: int, updated: int) -> dict[str, str]:
    def n(count: int) -> str:
        return f"{count} asset{'' if count == 1 else 's'}"

    return {"result": f"{n(created)} created, {n(updated)} updated"}


async def one(ah: ActionHub, asset_id: str) -> dict[str, Any]:
    r = await ah.http.get(f"/assets/{asset_id}", headers=ah.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_create_then_patch_keeps_absent_fields(ah: ActionHub) -> None:
    r = await ah.post_assets(
        [
            {"asset_id": "shoe", "asset_name": "Red shoe", "labels": ["sale", "red"]},
            {"asset_id": "hat"},
        ]
    )
    assert r.status_code == 200 and r.json() == result(2, 0)
    assert await one(ah, "shoe") == {
        "asset_id": "shoe",
        "asset_name": "Red shoe",
        "labels": ["sale", "red"],
    }
    assert await one(ah, "hat") == {"asset_id": "hat", "asset_name": None, "labels": []}

    r = await ah.post_assets([{"asset_id": "shoe", "labels": ["new"]}])
    assert r.json() == result(0, 1)
    assert await one(ah, "shoe") == {
        "asset_id": "shoe",
        "asset_name": "Red shoe",
        "labels": ["new"],
    }
    r = await ah.post_assets([{"asset_id": "shoe", "asset_name": "Blue shoe"}])
    assert await one(ah, "shoe") == {
        "asset_id": "shoe",
        "asset_name": "Blue shoe",
        "labels": ["new"],
    }
    r = await ah.post_assets([{"asset_id": "shoe", "asset_name": None, "labels": []}])
    assert await one(ah, "shoe") == {"asset_id": "shoe", "asset_name": None, "labels": []}


async def test_items_apply_in_order_over_the_state_left_by_earlier_ones(ah: ActionHub) -> None:
    r = await ah.post_assets(
        [
            {"asset_id": "a", "asset_name": "first", "labels": ["x"]},
            {"asset_id": "a", "labels": ["y"]},
            {"asset_id": "b", "labels": ["z"]},
            {"asset_id": "a", "asset_name": "second"},
        ]
    )
    assert r.status_code == 200 and r.json() == result(2, 0)
    assert await one(ah, "a") == {"asset_id": "a", "asset_name": "second", "labels": ["y"]}
    r = await ah.post_assets(
        [
            {"asset_id": "b", "asset_name": "bee"},
            {"asset_id": "b", "asset_name": None},
            {"asset_id": "c"},
        ]
    )
    assert r.json() == result(1, 1)
    assert await one(ah, "b") == {"asset_id": "b", "asset_name": None, "labels": ["z"]}


async def test_asset_labels_need_not_be_program_labels_and_repeats_collapse(ah: ActionHub) -> None:
    r = await ah.post_assets([{"asset_id": "a", "labels": ["Sale", "sale", "Sale", "undefined"]}])
    assert r.status_code == 200
    assert (await one(ah, "a"))["labels"] == ["Sale", "sale", "undefined"]
    assert await ah.all_labels() == {}


async def test_1000_assets_in_one_request(ah: ActionHub) -> None:
    r = await ah.post_assets(
        [{"asset_id": f"a{i:04d}", "labels": [f"l{i % 7}"]} for i in range(1000)]
    )
    assert r.status_code == 200 and r.json() == result(1000, 0)
    assert (await ah.assets())["total"] == 1000


BAD_ASSETS: list[tuple[str, Any, list[Any], str]] = [
    ("id too long", {"asset_id": "x" * 65}, ["body", "assets", 1, "asset_id"], "string_too_long"),
    ("id empty", {"asset_id": ""}, ["body", "assets", 1, "asset_id"], "string_too_short"),
    ("id missing", {"asset_name": "n"}, ["body", "assets", 1, "asset_id"], "missing"),
    ("id control", {"asset_id": "a\u0000"}, ["body", "assets", 1, "asset_id"], "value_error"),
    (
        "name too long",
        {"asset_id": "a", "asset_name": "n" * 125},
        ["body", "assets", 1, "asset_name"],
        "string_too_long",
    ),
    (
        "name control",
        {"asset_id": "a", "asset_name": "x\u0085"},
        ["body", "assets", 1, "asset_name"],
        "value_error",
    ),
    (
        "label too long",
        {"asset_id": "a", "labels": ["l" * 65]},
        ["body", "assets", 1, "labels", 0],
        "string_too_long",
    ),
    (
        "label control",
        {"asset_id": "a", "labels": ["ok", "\u001b[31m"]},
        ["body", "assets", 1, "labels", 1],
        "value_error",
    ),
    (
        "labels null",
        {"asset_id": "a", "labels": None},
        ["body", "assets", 1, "labels"],
        "list_type",
    ),
    (
        "labels a string",
        {"asset_id": "a", "labels": "sale"},
        ["body", "assets", 1, "labels"],
        "list_type",
    ),
    ("id a number", {"asset_id": 7}, ["body", "assets", 1, "asset_id"], "string_type"),
]


@pytest.mark.parametrize("name,item,loc,kind", BAD_ASSETS, ids=[b[0] for b in BAD_ASSETS])
async def test_bad_asset_is_422_and_writes_nothing(
    ah: ActionHub, name: str, item: Any, loc: list[Any], kind: str
) -> None:
    await ah.post_assets([{"asset_id": "kept", "asset_name": "before"}])
    r = await ah.post_assets([{"asset_id": "kept", "asset_name": "after"}, item])
    assert r.status_code == 422
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(loc, kind)]
    body = await ah.assets()
    assert body == {
        "items": [{"asset_id": "kept", "asset_name": "before", "labels": []}],
        "total": 1,
        "page": 1,
        "size": 50,
    }


async def test_item_count_limits(ah: ActionHub) -> None:
    r = await ah.post_assets([])
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "too_short" and r.json()["detail"][0]["loc"] == [
        "body",
        "assets",
    ]
    r = await ah.post_assets([{"asset_id": f"a{i}"} for i in range(1001)])
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "too_long"
    r = await ah.http.post("/assets", json={}, headers=ah.headers())
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "assets"]
    r = await ah.raw("POST", "/assets", b'{"assets": [')
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    assert (await ah.assets())["total"] == 0


async def test_list_orders_by_asset_id_and_pages(ah: ActionHub) -> None:
    ids = ["b", "B", "a", "é", "10", "9", "z/z"]
    await ah.post_assets([{"asset_id": i} for i in ids])
    expected = sorted(ids, key=lambda s: s.encode())
    body = await ah.assets(size=3, page=2)
    assert body == {
        "items": [{"asset_id": i, "asset_name": None, "labels": []} for i in expected[3:6]],
        "total": 7,
        "page": 2,
        "size": 3,
    }
    assert await ah.assets(page=4, size=3) == {"items": [], "total": 7, "page": 4, "size": 3}
    r = await ah.http.get("/assets", params={"size": 101}, headers=ah.headers())
    assert r.status_code == 422


async def test_search_matches_id_name_or_any_label(ah: ActionHub) -> None:
    await ah.post_assets(
        [
            {"asset_id": "SKU-1", "asset_name": "Red Shoe", "labels": ["Summer"]},
            {"asset_id": "sku-2", "asset_name": "Blue Hat", "labels": ["winter", "50%_off"]},
            {"asset_id": "other", "asset_name": None, "labels": ["Straße"]},
        ]
    )

    async def ids(search: str) -> list[str]:
        body = await ah.assets(search=search)
        assert body["total"] == len(body["items"])
        return [i["asset_id"] for i in body["items"]]

    assert await ids("sku") == ["SKU-1", "sku-2"]
    assert await ids("SHOE") == ["SKU-1"]
    assert await ids("summer") == ["SKU-1"]
    assert await ids("%_") == ["sku-2"]
    assert await ids("%") == ["sku-2"]
    assert await ids("strasse") == ["other"]
    assert await ids("hat") == ["sku-2"]
    assert await ids("shoesummer") == []  # never across fields
    assert await ids("nothing") == []
    # The search text follows updates.
    await ah.post_assets([{"asset_id": "SKU-1", "labels": ["autumn"]}])
    assert await ids("summer") == []
    assert await ids("autumn") == ["SKU-1"]


async def test_get_and_delete_one(ah: ActionHub) -> None:
    await ah.post_assets([{"asset_id": "a/b c%", "asset_name": "n"}, {"asset_id": "keep"}])
    r = await ah.http.get("/assets/a%2Fb%20c%25", headers=ah.headers())
    assert r.status_code == 200 and r.json() == {
        "asset_id": "a/b c%",
        "asset_name": "n",
        "labels": [],
    }
    r = await ah.http.delete("/assets/a%2Fb%20c%25", headers=ah.headers())
    assert r.status_code == 200 and r.json() == {"result": "Asset 'a/b c%' deleted"}
    for method in ("GET", "DELETE"):
        r = await ah.http.request(method, "/assets/a%2Fb%20c%25", headers=ah.headers())
        assert r.status_code == 404 and r.json() == {"detail": "Asset not found"}
    assert (await ah.assets())["total"] == 1
