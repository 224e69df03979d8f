"""Deep pages from chunk counts (``actionhub.fences``) answer what skipping the offset would.

Chunks are made tiny here (4 keys, cut past 8) so that a few hundred labels and assets go
through every path: chunks cut again, emptied and dropped, keys below every fence, deletes, and
pages that start in any chunk. After each step every page of every size is compared with the
model (the keys sorted byte-wise), and the chunks with the rows they count, on both databases.
"""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from labelhub import cli
from labelhub.actionhub import fences, store
from labelhub.core.db import Database
from tests.actionhub_helpers import ActionHub

ALPHABET = [*"abcXYZ-_%", "\u00df", "\u00e9", "\U0001f600", "\u5b57"]


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fences, "CHUNK", 4)
    monkeypatch.setattr(fences, "SPLIT_AT", 8)
    monkeypatch.setattr(fences, "FROM_OFFSET", 6)


def bytewise(keys: Any) -> list[str]:
    return sorted(keys, key=lambda s: s.encode())


def chunks_hold_their_keys(
    database: Database, table: str, keys: list[str], program: str = "shop"
) -> None:
    """Each chunk counts exactly the keys from its fence to the next, none is empty or past
    SPLIT_AT, and every key is in a chunk."""
    _, kind = fences.KEYS[table]
    with database.transaction() as conn:
        rows = conn.execute(
            text(
                "SELECT fence, key_count FROM page_fences f JOIN programs p "
                "ON p.id = f.program_pk WHERE p.program_id = :program AND kind = :kind"
            ),
            {"kind": kind, "program": program},
        ).all()
    chunks = sorted(rows, key=lambda row: row.fence.encode())
    bounds = [*(row.fence.encode() for row in chunks[1:]), None][: len(chunks)]
    if keys:
        assert chunks and chunks[0].fence.encode() <= keys[0].encode(), (chunks, keys[0])
    for (fence, count), bound in zip(chunks, bounds, strict=True):
        inside = [
            k
            for k in keys
            if fence.encode() <= k.encode() and (bound is None or k.encode() < bound)
        ]
        assert count == len(inside), (table, fence, count, inside)
        assert 0 < count <= fences.SPLIT_AT, (table, fence, count)


async def pages_match(ah: ActionHub, path: str, field: str, keys: list[str]) -> None:
    for size in (1, 3, 7):
        for page in range(1, len(keys) // size + 3):
            r = await ah.http.get(path, params={"page": page, "size": size}, headers=ah.headers())
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == len(keys)
            want = keys[(page - 1) * size : page * size]
            assert [item[field] for item in body["items"]] == want, (path, page, size)


@pytest.mark.usefixtures("tiny_chunks")
async def test_deep_pages_match_the_model_through_inserts_splits_and_deletes(
    ah: ActionHub, database: Database
) -> None:
    rng = random.Random(20261124)

    def word() -> str:
        return "".join(rng.choices(ALPHABET, k=rng.randint(1, 6)))

    labels: set[str] = set()
    assets: set[str] = set()
    for step in range(12):
        batch = {word() for _ in range(rng.choice([1, 5, 30, 90]))}
        r = await ah.put_labels([{"label": label, "weight": step} for label in batch])
        assert r.status_code == 200, r.text
        labels |= batch
        fresh = {f"{word()}{step}" for _ in range(rng.choice([1, 20, 60]))}
        r = await ah.post_assets([{"asset_id": a} for a in fresh])
        assert r.status_code == 200, r.text
        assets |= fresh
        for gone in rng.sample(bytewise(labels), min(len(labels), rng.randint(0, 25))):
            r = await ah.http.delete(f"/labels/{quote(gone, safe='')}", headers=ah.headers())
            assert r.status_code == 200, r.text
            labels.discard(gone)
        for gone in rng.sample(bytewise(assets), min(len(assets), rng.randint(0, 15))):
            r = await ah.http.delete(f"/assets/{quote(gone, safe='')}", headers=ah.headers())
            assert r.status_code == 200, r.text
            assets.discard(gone)
        chunks_hold_their_keys(database, "program_labels", bytewise(labels))
        chunks_hold_their_keys(database, "assets", bytewise(assets))
        if step % 4 == 3:
            await pages_match(ah, "/labels", "label", bytewise(labels))
            await pages_match(ah, "/assets", "asset_id", bytewise(assets))
    assert len(labels) > 10 * fences.SPLIT_AT and len(assets) > 10 * fences.SPLIT_AT


@pytest.mark.usefixtures("tiny_chunks")
async def test_deleting_every_key_leaves_no_chunk_and_new_keys_start_again(
    ah: ActionHub, database: Database
) -> None:
    names = [f"n{i:03d}" for i in range(40)]
    assert (await ah.put_labels([{"label": n, "weight": 1} for n in names])).status_code == 200
    for name in names:
        assert (await ah.http.delete(f"/labels/{name}", headers=ah.headers())).status_code == 200
    chunks_hold_their_keys(database, "program_labels", [])
    late = ["m", "a", "z", *(f"k{i}" for i in range(20))]
    assert (await ah.put_labels([{"label": n, "weight": 2} for n in late])).status_code == 200
    chunks_hold_their_keys(database, "program_labels", bytewise(late))
    await pages_match(ah, "/labels", "label", bytewise(late))


async def test_deep_pages_at_real_chunk_size(ah: ActionHub, database: Database) -> None:
    """Pages from FROM_OFFSET on come from the counts: the same rows as nearer pages skip to."""
    names = [f"label-{i:05d}" for i in range(fences.FROM_OFFSET + 2 * fences.SPLIT_AT + 123)]
    for start in range(0, len(names), 5_000):
        batch = names[start : start + 5_000]
        r = await ah.put_labels([{"label": n, "weight": 0.5} for n in batch])
        assert r.status_code == 200
    chunks_hold_their_keys(database, "program_labels", names)
    pages = [1, fences.FROM_OFFSET // 100, fences.FROM_OFFSET // 100 + 1, len(names) // 100 + 1]
    pages += range(pages[2] + 1, pages[2] + 60, 7)
    for page in pages:
        body = await ah.labels(page=page, size=100)
        assert [i["label"] for i in body["items"]] == names[(page - 1) * 100 : page * 100]
    database.run_write(store.delete_program, "shop")
    with database.transaction() as conn:
        assert conn.execute(text("SELECT count(*) FROM page_fences")).scalar_one() == 0


@pytest.mark.usefixtures("tiny_chunks")
async def test_chunks_that_do_not_add_up_are_not_trusted(
    ah: ActionHub, dialect: str, database: Database
) -> None:
    """Labels written by something that does not keep the chunks (a labelhub older than migration
    0007 on the same database): the kept count moves, the chunks do not, and deep pages skip
    to their offset as before rather than answer from the wrong chunk."""
    names = [f"n{i:03d}" for i in range(60)]
    assert (await ah.put_labels([{"label": n, "weight": 1} for n in names])).status_code == 200
    other = [f"o{i:03d}" for i in range(30)]

    def other_program(conn: Any) -> None:
        store.create_program(conn, "other")
        store.upsert_labels(conn, store.program_pk(conn, "other"), [(n, 1.0) for n in other])

    database.run_write(other_program)
    older = [f"m{i:03d}" for i in range(25)]
    with database.transaction(write=True) as conn:
        pk = store.program_pk(conn, "shop")
        for name in older:
            conn.execute(
                text(
                    "INSERT INTO program_labels (program_pk, label, label_folded, weight, "
                    "updated_at) VALUES (:pk, :label, :folded, 1, 0)"
                ),
                {"pk": pk, "label": name, "folded": name},
            )
        conn.execute(
            text("UPDATE programs SET label_count = label_count + :n WHERE id = :pk"),
            {"n": len(older), "pk": pk},
        )
        conn.execute(
            text(
                "INSERT INTO assets (program_pk, asset_id, labels, search_text, updated_at) "
                "VALUES (:pk, 'a-older', '[]', 'a-older', 0)"
            ),
            {"pk": pk},
        )
        conn.execute(
            text("UPDATE programs SET asset_count = asset_count + 1 WHERE id = :pk"), {"pk": pk}
        )
    everything = bytewise([*names, *older])
    await pages_match(ah, "/labels", "label", everything)
    await pages_match(ah, "/assets", "asset_id", ["a-older"])
    # Where the schema is brought to head (labelhub serve, db upgrade) they are counted again.
    assert cli.migrate(database) is None
    chunks_hold_their_keys(database, "program_labels", everything)
    chunks_hold_their_keys(database, "program_labels", other, "other")
    chunks_hold_their_keys(database, "assets", ["a-older"])
    with database.transaction(write=True) as conn:
        assert fences.recount(conn) == 0
    await pages_match(ah, "/labels", "label", everything)
