"""Labels in any arrival order list and search in label order (both databases); on SQLite each
label row's rowid follows its label within its program's band (``actionhub.order``), including
after gaps run out and rows are renumbered."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from labelhub.actionhub import order
from labelhub.actionhub import store as actionhub_store
from labelhub.core import db as dbmod
from tests.actionhub_helpers import ActionHub
from tests.conftest import property_profile


def order_holds(database: dbmod.Database) -> dict[str, int]:
    """SQLite: each program's label rows, read by rowid, are its labels in byte order, every
    rowid inside the program's band, and the FTS5 index holds exactly the rows (its integrity
    check against the table). Returns each label's rowid ({} on PostgreSQL)."""
    if database.dialect != "sqlite":
        return {}
    # The write lock up front, as labelhub's writes take it (BEGIN IMMEDIATE): the integrity
    # check reads the index before it asks to write, and SQLite answers a transaction that
    # asks for the write lock after reading SQLITE_BUSY at once, without waiting, when the
    # server's writer holds it (1 run in 8 once checkpoints moved to their own thread).
    with database.transaction(write=True) as conn:
        conn.exec_driver_sql(
            "INSERT INTO program_labels_fts (program_labels_fts, rank) "
            "VALUES ('integrity-check', 1)"
        )
        rows = conn.exec_driver_sql(
            "SELECT program_pk, rowid, label FROM program_labels ORDER BY rowid"
        ).all()
    listed: dict[int, list[str]] = {}
    for pk, rowid, label in rows:
        first, last = order.band(pk)
        assert first <= rowid <= last, (pk, rowid, label)
        listed.setdefault(pk, []).append(label)
    for labels in listed.values():
        assert labels == sorted(labels)  # code point order: the UTF-8 byte order
    return {label: rowid for _, rowid, label in rows}


async def _search(ah: ActionHub, search: str | None) -> tuple[list[str], int]:
    got: list[str] = []
    page, total = 1, -1
    while True:
        params = {"page": page, "size": 100} | ({"search": search} if search else {})
        body = await ah.labels(**params)
        assert total in (-1, body["total"])
        total = body["total"]
        got += [item["label"] for item in body["items"]]
        if len(body["items"]) < 100:
            return got, total
        page += 1


async def _answers_hold(ah: ActionHub, labels: set[str], searches: list[str]) -> None:
    for search in [None, *searches]:
        want = sorted(n for n in labels if search is None or search.casefold() in n.casefold())
        got, total = await _search(ah, search)
        assert (got, total) == (want, len(want)), search


@pytest.mark.parametrize("spacing", [order.SPACING, 2])
async def test_labels_keep_their_order_whatever_order_they_come_in(
    ah: ActionHub, database: dbmod.Database, monkeypatch: pytest.MonkeyPatch, spacing: int
) -> None:
    """Appends, prepends, a gap halved until it runs out, a request of hundreds of labels into
    one gap, random labels, deletions. With keys handed out 2 apart (not ``SPACING``) the
    gaps run out all the time."""
    monkeypatch.setattr(order, "SPACING", spacing)
    labels: set[str] = set()
    searches = ["k-0", "-00", "mzz", "mzb", "zzzz", "c-01", "m", "zz", "rnd"]

    async def put(*names: str) -> None:
        r = await ah.put_labels([{"label": n, "weight": 1.5} for n in names])
        assert r.status_code == 200, r.text
        labels.update(names)

    async def step() -> dict[str, int]:
        keys = order_holds(database)
        await _answers_hold(ah, labels, searches)
        return keys

    for start in range(0, 1500, 300):  # appended in order, in batches
        await put(*(f"k-{i:05d}" for i in range(start, start + 300)))
    await step()
    for i in reversed(range(40)):  # each before all the others
        await put(f"c-{i:05d}")
    await step()
    await put("m", "n")
    before = await step()
    for width in range(1, 64):  # each right after the last, before "n": the gap halves
        await put("m" + "z" * width)
    after = await step()
    if database.dialect == "sqlite":  # the gap ran out: rows around it were renumbered
        assert before["n"] != after["n"] or before["m"] != after["m"]
    # One request of 463 labels into the one gap between "mz" and "mzz", which has no room.
    await put(*("mz" + "a" * j for j in range(1, 63)), *(f"mzb{i:03d}" for i in range(401)))
    await step()
    rng = random.Random(11)
    for _ in range(4):
        await put(*(f"rnd-{rng.randrange(10**6):06d}" for _ in range(500)))
    for name in rng.sample(sorted(labels), 200):
        r = await ah.http.delete(f"/labels/{name}", headers=ah.headers())
        assert r.status_code == 200, r.text
        labels.discard(name)
    await put(*(f"mz{rng.choice('abz')}{rng.choice('abz')}" for _ in range(30)))
    await step()


PROGRAMS = itertools.count()
LABEL = st.text(alphabet="abz\u00e9\U0001f600", min_size=1, max_size=7)


@pytest.mark.parametrize("spacing", [order.SPACING, 2])
@property_profile(15)
@given(batches=st.lists(st.lists(LABEL, min_size=1, max_size=40), min_size=1, max_size=6))
async def test_any_batches_keep_label_order(
    client: httpx.AsyncClient,
    database: dbmod.Database,
    make_key: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    spacing: int,
    batches: list[list[str]],
) -> None:
    """Batches of short labels from a small alphabet: most fall between the same few labels.
    With keys handed out 2 apart (not ``SPACING``) nearly every gap runs out and is renumbered."""
    monkeypatch.setattr(order, "SPACING", spacing)
    program = f"p{next(PROGRAMS)}"
    database.run_write(actionhub_store.create_program, program)
    ah = ActionHub(client, make_key(f"program:{program}=write"), program, make_key)
    labels: set[str] = set()
    for batch in batches:
        r = await ah.put_labels([{"label": n, "weight": 1.0} for n in batch])
        assert r.status_code == 200, r.text
        labels.update(batch)
    order_holds(database)
    await _answers_hold(ah, labels, ["abz", "zzz", "\u00e9a\U0001f600", "aaa"])


def test_program_ids_stay_inside_the_bands(database: dbmod.Database) -> None:
    """SQLite: past the last band, a new program takes the smallest free id and its labels list
    in order. PostgreSQL takes its own ids."""
    top = (1 << order.BAND_BITS) - 1
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO programs (id, program_id, name, created_at) "
                "VALUES (:top, 'top', 'top', 0)"
            ),
            {"top": top},
        )
    database.run_write(actionhub_store.create_program, "next")
    pk = database.run_read(actionhub_store.program_pk, "next")
    assert pk is not None
    if database.dialect == "sqlite":
        assert pk < top
    names = [f"n-{i}" for i in range(50, 0, -1)]
    database.run_write(actionhub_store.upsert_labels, pk, [(n, 1.0) for n in names])
    order_holds(database)
    rows, total = database.run_read(actionhub_store.list_labels, pk, "n-", 1, 100)
    assert (total, [label for label, _ in rows]) == (50, sorted(names))
