"""The background worker: refreshes the recommendations of queued users.

The queue is a table (``ah_user_queue``), so queued work survives the process that queued it; every
labelhub process runs one worker, which takes the oldest queued users through the process's
writer (one transaction per round: the users' pools are stored and their queue rows deleted
together). A round that finds work is followed by the next at once; an empty round waits for a
local poke (a request queued users) or ``poll_seconds`` (work queued by another process, or left
by one that died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from labelhub.actionhub import recommender
from labelhub.core.db import Database

log = logging.getLogger("labelhub.worker")


class QueueWorker:
    def __init__(self, db: Database, *, poll_seconds: float, batch: int) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.processed = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="labelhub-queue-worker")

    async def stop(self) -> None:
        """Let the current round finish, then end. (Not ``Task.cancel()`` alone: Python 3.11's
        ``asyncio.wait_for`` can swallow a cancellation that meets its timeout.)"""
        if self._task is None:
            return
        self._stopping = True
        self.poke()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.db.settings.db_timeout * 2)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    def poke(self) -> None:
        """Called on the event loop by a request that queued users."""
        if self._wake is not None:
            self._wake.set()

    async def round(self) -> int:
        """One round: process up to ``batch`` queued users; returns how many."""
        taken = await self.db.write(recommender.process_queue, self.batch)
        self.processed += taken
        return taken

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                taken = await self.round()
            except Exception as error:  # the database is away: try again at the next poll
                log.warning("queue worker round failed: %s", error)
                taken = 0
            if taken:
                await asyncio.sleep(0)
                continue
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
