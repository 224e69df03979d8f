"""A seeded synthetic event stream with planted structure, for the recommendation benches.

* ``groups`` groups of users; each group has a *sequence* of ``sequence`` actions (event type,
  asset) drawn from the catalogue. A user of a group walks a stretch of the group's sequence
  (a random start, at least ``min_walk`` steps, each step skipped with probability ``skip``).
* Popular noise: ``popular`` actions drawn with Zipf-like weights (1/rank) are mixed in, one
  before each step with probability ``noise``; they are what a popularity ranking recommends.
* Time: each user starts at a random moment of a 60-day span and takes a step every 1-90 minutes.

The held-out split keeps each user's last ``held_out`` events apart: the training events are
ingested, and a user's recommendation *hits* when one of its held-out actions that the training
events do not already hold appears in the top 10.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

EVENT_TYPES = ("view", "purchase")
DAY_MS = 24 * 3600 * 1000
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Shape:
    users: int = 3_000
    assets: int = 2_000
    groups: int = 60
    sequence: int = 14
    min_walk: int = 6
    skip: float = 0.1
    popular: int = 40
    noise: float = 0.4
    held_out: int = 3
    seed: int = 7


Action = tuple[str, str]  # (event_type, asset_id)


@dataclass
class UserStream:
    user_id: str
    events: list[tuple[int, Action]] = field(default_factory=list)  # (epoch ms, action)


def asset_id(i: int) -> str:
    return f"asset-{i:05d}"


def generate(shape: Shape) -> list[UserStream]:
    rng = random.Random(shape.seed)

    def random_action() -> Action:
        return (rng.choice(EVENT_TYPES), asset_id(rng.randrange(shape.assets)))

    sequences = [[random_action() for _ in range(shape.sequence)] for _ in range(shape.groups)]
    popular = [random_action() for _ in range(shape.popular)]
    popular_weights = [1.0 / (rank + 1) for rank in range(shape.popular)]
    streams: list[UserStream] = []
    for u in range(shape.users):
        stream = UserStream(f"user-{u:06d}")
        walk = sequences[rng.randrange(shape.groups)]
        start = rng.randrange(shape.sequence - shape.min_walk + 1)
        length = rng.randint(shape.min_walk, shape.sequence - start)
        t = START_MS + rng.randrange(60 * DAY_MS)
        for step in walk[start : start + length]:
            if rng.random() < shape.noise:
                t += rng.randint(1, 90) * 60_000
                stream.events.append((t, rng.choices(popular, popular_weights)[0]))
            if rng.random() < shape.skip:
                continue
            t += rng.randint(1, 90) * 60_000
            stream.events.append((t, step))
        streams.append(stream)
    return streams


def split(
    streams: list[UserStream], held_out: int
) -> tuple[list[UserStream], dict[str, set[Action]]]:
    """Training streams (all but each user's last ``held_out`` events) and, per user, the
    held-out actions its training events do not already hold (users without any are left out)."""
    train: list[UserStream] = []
    test: dict[str, set[Action]] = {}
    for s in streams:
        head, tail = s.events[:-held_out], s.events[-held_out:]
        if not head:
            continue
        train.append(UserStream(s.user_id, head))
        seen = {a for _, a in head}
        fresh = {a for _, a in tail} - seen
        if fresh:
            test[s.user_id] = fresh
    return train, test


def event_bodies(streams: list[UserStream], batch: int) -> list[list[dict[str, object]]]:
    """The streams' events in time order, as ``POST /events`` bodies of ``batch`` events."""
    import datetime as dt

    flat = sorted((t, s.user_id, a) for s in streams for t, a in s.events)
    events = [
        {
            "user_id": user,
            "event_timestamp": dt.datetime.fromtimestamp(t / 1000, dt.UTC).isoformat(),
            "event_type": action[0],
            "asset_id": action[1],
            "labels": [],
        }
        for t, user, action in flat
    ]
    return [events[i : i + batch] for i in range(0, len(events), batch)]
