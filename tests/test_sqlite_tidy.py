"""SQLite: the writer merges the search indexes' segments into one while it is idle
(``labelhub.core.tidy``); searches answer the same, writes go first, an index that grew little
is left alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from labelhub.core import tidy
from labelhub.core.config import Settings
from labelhub.core.db import Database
from tests.actionhub_helpers import ActionHub

IDLE = 0.3


@pytest.fixture
def dialect() -> str:
    return "sqlite"  # PostgreSQL's GIN indexes have no segments to merge


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(database_url=db_url, db_timeout=2.0, sqlite_tidy_idle=IDLE)


def segments(database: Database, table: str = "program_labels_fts") -> list[int]:
    with database.transaction() as conn:
        return tidy.segment_pages(conn, table)


async def eventually(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.05)


async def put_in_transactions(ah: ActionHub, prefix: str, count: int, each: int) -> None:
    """``count`` label writes one after another: one transaction, so one segment, each (at
    four of a size FTS5 merges them itself)."""
    for i in range(count):
        labels = [{"label": f"{prefix}-{i}-{j:04d}", "weight": j} for j in range(each)]
        assert (await ah.put_labels(labels)).status_code == 200


async def searched(ah: ActionHub, search: str) -> tuple[int, list[str]]:
    body = await ah.labels(search=search, size=100)
    return body["total"], [item["label"] for item in body["items"]]


async def test_an_idle_writer_merges_the_segments_and_searches_answer_the_same(
    ah: ActionHub, database: Database
) -> None:
    await put_in_transactions(ah, "alpha", 3, 400)
    before = [await searched(ah, s) for s in ("alpha-1-00", "pha-2-03", "-0-0399", "zzz")]
    assert before[0][0] == 100 and before[2] == (1, ["alpha-0-0399"]) and before[3] == (0, [])
    await eventually(lambda: len(segments(database)) == 1)
    assert database.writer.tidy_steps > 0
    assert [await searched(ah, s) for s in ("alpha-1-00", "pha-2-03", "-0-0399", "zzz")] == before
    with database.transaction(write=True) as conn:
        for table in tidy.fts5_tables(conn):
            conn.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('integrity-check')")


async def test_an_index_that_grew_little_is_left_alone(ah: ActionHub, database: Database) -> None:
    await put_in_transactions(ah, "base", 1, 2000)
    await eventually(lambda: database.writer.tidy_steps == 0 and len(segments(database)) == 1)
    await put_in_transactions(ah, "small", 1, 5)
    assert len(segments(database)) == 2
    await asyncio.sleep(IDLE * 4)
    pages = segments(database)
    assert len(pages) == 2 and min(pages) < tidy.GROWTH * max(pages), pages
    assert database.writer.tidy_steps == 0
    await put_in_transactions(ah, "more", 2, 1000)  # now a fifth and more of the largest
    await eventually(lambda: len(segments(database)) == 1)


@pytest.fixture
async def slow_steps(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[float]]:
    """Merge steps of one page each, every step's start recorded."""
    starts: list[float] = []
    step = tidy.merge_step

    def recorded(conn: Any, table: str) -> bool:
        starts.append(time.monotonic())
        time.sleep(0.01)
        return step(conn, table)

    monkeypatch.setattr(tidy, "STEP_PAGES", 1)
    monkeypatch.setattr(tidy, "merge_step", recorded)
    yield starts


async def test_writes_go_first_and_the_merge_goes_on_after_them(
    ah: ActionHub, database: Database, client: httpx.AsyncClient, slow_steps: list[float]
) -> None:
    await put_in_transactions(ah, "gamma", 3, 1500)  # FTS5 merges a fourth itself
    await eventually(lambda: len(slow_steps) >= 3)  # merging, a page at a time
    took = []
    for i in range(5):
        started = time.monotonic()
        labels = [{"label": f"during-{i}", "weight": i}]
        assert (await ah.put_labels(labels)).status_code == 200
        took.append(time.monotonic() - started)
    assert max(took) < 0.5, took  # one step (10 ms) at most ahead of each write
    steps = len(slow_steps)
    await eventually(lambda: len(segments(database)) == 1, seconds=60)
    assert len(slow_steps) > steps  # went on after the writes
    assert (await searched(ah, "during-"))[0] == 5
    assert (await searched(ah, "gamma-2-1499")) == (1, ["gamma-2-1499"])
