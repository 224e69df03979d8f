"""Search answers exactly what the spec's model says, on both databases.

The model: an item matches when ``search.casefold()`` is a substring of ``label.casefold()``;
matches are ordered byte-wise. Labels and searches are drawn (seeded) from an alphabet full of
characters that wildcards, escapes, collations and case folding trip over.
"""

from __future__ import annotations

import random

from labelhub.core.db import Database
from tests.actionhub_helpers import ActionHub

# ASCII wildcards and escapes, then: sharp s, capital sharp s, dotted capital I, dotless i,
# sigma (capital, small, final), precomposed and combining e-acute, the fi ligature, angstrom,
# an emoji, a mathematical fraktur A (astral plane) and a CJK ideograph.
ALPHABET = [
    *'aAbB%_*?[]\\^$.-/ "',
    *"\u00df\u1e9e\u0130\u0131\u03a3\u03c3\u03c2\u00e9",
    "e\u0301",
    *"\ufb01\u212b\U0001f600\U0001d504\u5b57",
]


def expected(labels: list[str], search: str) -> list[str]:
    needle = search.casefold()
    return sorted(
        (label for label in labels if needle in label.casefold()), key=lambda s: s.encode()
    )


async def test_search_matches_the_model(ah: ActionHub) -> None:
    rng = random.Random(20261123)
    labels = sorted({"".join(rng.choices(ALPHABET, k=rng.randint(1, 12))) for _ in range(400)})
    r = await ah.put_labels([{"label": label, "weight": i} for i, label in enumerate(labels)])
    assert r.status_code == 200
    searches = ["".join(rng.choices(ALPHABET, k=rng.randint(1, 4))) for _ in range(120)]
    searches += [label[:3] for label in rng.sample(labels, 60)]
    for search in searches:
        want = expected(labels, search)
        got: list[str] = []
        page = 1
        while True:
            body = await ah.labels(search=search, page=page, size=100)
            assert body["total"] == len(want), (search, body["total"], len(want))
            got += [item["label"] for item in body["items"]]
            if len(body["items"]) < 100:
                break
            page += 1
        assert got == want, search


async def test_asset_search_matches_the_model(ah: ActionHub) -> None:
    rng = random.Random(7)

    def word() -> str:
        return "".join(rng.choices(ALPHABET, k=rng.randint(1, 8)))

    assets = {}
    for i in range(150):
        asset_id = f"{word()}{i}"
        assets[asset_id] = (rng.choice([None, word()]), [word() for _ in range(rng.randint(0, 3))])
    r = await ah.post_assets(
        [{"asset_id": a, "asset_name": n, "labels": ls} for a, (n, ls) in assets.items()]
    )
    assert r.status_code == 200
    for _ in range(80):
        search = "".join(rng.choices(ALPHABET, k=rng.randint(1, 3)))
        needle = search.casefold()
        want = sorted(
            (
                a
                for a, (n, ls) in assets.items()
                if needle in a.casefold()
                or (n is not None and needle in n.casefold())
                or any(needle in label.casefold() for label in ls)
            ),
            key=lambda s: s.encode(),
        )
        body = await ah.assets(search=search, size=100)
        assert body["total"] == len(want), search
        assert [item["asset_id"] for item in body["items"]] == want[:100], search


async def test_search_indexes_stay_in_step_with_their_tables(
    ah: ActionHub, dialect: str, database: Database
) -> None:
    """SQLite: inserts are indexed by the store in bulk (migration 0005), updates and deletes by
    triggers; after a mix of all three, FTS5's own integrity check finds nothing amiss. Searches
    find what the writes left, on both databases."""
    for round_ in range(3):
        labels = [{"label": f"l{round_}-{i}", "weight": i} for i in range(50)]
        labels += [{"label": f"l0-{i}", "weight": -i} for i in range(0, 50, 3)]
        assert (await ah.put_labels(labels)).status_code == 200
        assets = [{"asset_id": f"a{i}", "labels": [f"x{round_}"]} for i in range(round_, 40)]
        assert (await ah.post_assets(assets)).status_code == 200
        r = await ah.http.delete(f"/labels/l{round_}-7", headers=ah.headers())
        assert r.status_code == 200
    if dialect == "sqlite":
        with database.transaction(write=True) as conn:
            for fts in ("program_labels_fts", "assets_fts"):
                conn.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
    body = await ah.labels(search="l2-4")
    assert [item["label"] for item in body["items"]] == [
        "l2-4",
        *(f"l2-{i}" for i in range(40, 50)),
    ]
    assert (await ah.assets(search="x2"))["total"] == 38


async def test_a_label_holding_the_pieces_of_a_search_apart_is_no_match(ah: ActionHub) -> None:
    """The trigram index is asked for rows holding trigrams that cover the search (on
    PostgreSQL: its words); a label holding all of them, but apart or out of order, is not a
    match."""
    searches = ["abcdef", "abcdefg", "abcd", "ab\"cd'ef%_", "zel-riv", "hazel river", "été-à"]
    labels = [
        "abcdef",
        "x-abcdefg-y",
        "def-abc",
        "abc-def-efg",
        "abc_cdef",
        "bcd-abc",
        "ABCD",
        "ab\"cd'ef%_",
        "ef%_ ab\"cd'",
        "cd'ab\"ef%_",
        "hazel-river-1",
        "river-hazel",
        "hazel_river",
        "Hazel River",
        "hazel  river",
        "ÉTÉ-À-b",
        "été-a",
    ]
    r = await ah.put_labels([{"label": label, "weight": i} for i, label in enumerate(labels)])
    assert r.status_code == 200
    for search in searches:
        body = await ah.labels(search=search, size=100)
        assert [item["label"] for item in body["items"]] == expected(labels, search), search
        assert body["total"] == len(expected(labels, search))


async def test_every_page_counts_every_match(ah: ActionHub) -> None:
    """A page that is not full holds the last matches, so the count is its offset plus its rows
    (no second count on SQLite); a full page, the page after the last and a page far past it
    count them all. Sizes that divide the matches and sizes that do not, searches with and
    without trigrams."""
    labels = [f"item-{i:03d}" for i in range(30)] + [f"other-{i}" for i in range(7)]
    r = await ah.put_labels([{"label": label, "weight": i} for i, label in enumerate(labels)])
    assert r.status_code == 200
    for search in ("item-", "it", "item-01", "item-029", "other-", "nothing"):
        want = expected(labels, search)
        for size in (1, 2, 5, 7, 10, 30, 31, 100):
            for page in range(1, len(want) // size + 3):
                body = await ah.labels(search=search, page=page, size=size)
                assert body["total"] == len(want), (search, size, page)
                items = [item["label"] for item in body["items"]]
                assert items == want[(page - 1) * size : page * size], (search, size, page)
            body = await ah.labels(search=search, page=1000, size=size)
            assert (body["total"], body["items"]) == (len(want), []), (search, size)
