"""Next-best-action recommendations: the model, its shared statistics and each user's pool.

The formulas, with a worked example, are in ``docs/recommendations.md``; in short, with ``h`` the
program's half-life and times ``t`` counted in half-lives (``t / h``):

* ``base_weight(u, a) = sum over u's events of a of 2^-(T_u - t)`` where ``T_u`` is the user's
  latest folded event: the user's own history of the action, by frequency and recency;
* ``sim(a -> b) = c(a -> b) / sqrt(n(a) * n(b))``: ``c`` counts users who took ``b`` for the first
  time while ``a`` was among their ``HISTORY`` strongest actions, ``n`` counts users per action;
* ``s(b) = sum over the user's HISTORY strongest actions a of base_weight(u, a) * sim(a -> b)
  + POPULARITY * popn(b)``, where ``popn`` is recency-weighted popularity scaled to 1 for the
  program's most popular action;
* ``growth_weight(b) = s(b) * factor(L)``, ``L`` the sum of the program's weights of the labels the
  asset of ``b`` carries, ``factor(L) = 1 + L`` for ``L >= 0`` and ``1 / (1 - L)`` below 0.

Folding a user's new events updates the statistics incrementally (cost proportional to the new
events times ``HISTORY``, never a rescan); the user's candidate pool (``POOL`` actions with their
label-free ``s``) is then recomputed and stored. Answers read the pool and apply the label factors
of the catalogue as it is at answer time.

Every write path runs under the process's single writer and, on PostgreSQL, the cluster-wide
write lock (``core/db.py``), so the read-modify-write of statistics here cannot interleave.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, bindparam, text

from labelhub.core.keys import now_ms

# The user's strongest actions considered per update and per recomputation.
HISTORY = 50
# Co-occurring actions read per history action (the most shared first).
NEIGHBOURS = 100
# The program's most popular actions every pool considers (the popularity fallback).
POPULAR = 100
# A pool keeps the best POOL actions and the best POOL actions the user has not taken.
POOL = 100
# Weight of popularity next to co-occurrence evidence (a perfect co-occurrence is worth 1).
POPULARITY = 0.01
# |L| is capped so the factor stays a finite float.
FACTOR_CAP = 1e12
# IN lists are cut to this many parameters.
CHUNK = 900


def factor(label_sum: float) -> float:
    """The label factor: 1 at 0, 2 at +1, 1/2 at -1; never decreasing."""
    capped = max(-FACTOR_CAP, min(FACTOR_CAP, label_sum))
    return 1.0 + capped if capped >= 0 else 1.0 / (1.0 - capped)


def label_sum(weights: Iterable[float]) -> float:
    values = list(weights)
    try:
        return math.fsum(values)
    except OverflowError:  # finite weights whose exact sum is past the float range
        return math.copysign(math.inf, math.fsum(v / 4 for v in values))


def log2_add(a: float | None, b: float) -> float:
    """log2(2^a + 2^b), exact where one term dwarfs the other."""
    if a is None:
        return b
    high, low = (a, b) if a >= b else (b, a)
    return high + math.log2(1.0 + 2.0 ** (low - high))


def days_in_ms(days: float) -> int:
    return max(1, round(days * 24 * 3600 * 1000))


def units(ts_ms: int, half_life_ms: int) -> float:
    return ts_ms / half_life_ms


# --- small SQL helpers ----------------------------------------------------------------------


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _json_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


ACTIONS_BY_ID = text(
    "SELECT id, event_type, asset_id, users, pop_log FROM ah_actions WHERE id IN :ids"
).bindparams(bindparam("ids", expanding=True))


@dataclass
class ActionRow:
    id: int
    event_type: str
    asset_id: str
    users: int
    pop_log: float


def actions_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, ActionRow]:
    found: dict[int, ActionRow] = {}
    for chunk in _chunks(sorted(set(ids))):
        for r in conn.execute(ACTIONS_BY_ID, {"ids": list(chunk)}):
            found[r.id] = ActionRow(r.id, r.event_type, r.asset_id, r.users, r.pop_log)
    return found


PROGRAM_MODEL = text("SELECT half_life_ms, catalogue_changed_at FROM programs WHERE id = :pk")


def half_life(conn: Connection, pk: int) -> int:
    return int(conn.execute(PROGRAM_MODEL, {"pk": pk}).one().half_life_ms)


ASSET_LABELS = text(
    "SELECT asset_id, asset_name, labels FROM assets WHERE program_pk = :pk AND asset_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
LABEL_WEIGHTS = text(
    "SELECT label, weight FROM program_labels WHERE program_pk = :pk AND label IN :labels"
).bindparams(bindparam("labels", expanding=True))


@dataclass(frozen=True)
class Catalogue:
    """What the asset catalogue says of some assets, now: names, labels, label factors."""

    names: dict[str, str | None]
    labels: dict[str, list[str]]
    factors: dict[str, float]

    def factor(self, asset_id: str) -> float:
        return self.factors.get(asset_id, 1.0)


def catalogue(conn: Connection, pk: int, asset_ids: Iterable[str]) -> Catalogue:
    names: dict[str, str | None] = {}
    labels: dict[str, list[str]] = {}
    for chunk in _chunks(sorted(set(asset_ids))):
        for r in conn.execute(ASSET_LABELS, {"pk": pk, "ids": list(chunk)}):
            names[r.asset_id] = r.asset_name
            labels[r.asset_id] = _json_list(r.labels)
    distinct = sorted({label for asset_labels in labels.values() for label in asset_labels})
    weights: dict[str, float] = {}
    for chunk in _chunks(distinct):
        for r in conn.execute(LABEL_WEIGHTS, {"pk": pk, "labels": list(chunk)}):
            weights[r.label] = r.weight
    factors = {
        asset: factor(label_sum(weights[label] for label in set(asset_labels) if label in weights))
        for asset, asset_labels in labels.items()
    }
    return Catalogue(names, labels, factors)


# --- folding events into the statistics -----------------------------------------------------

USER_STATE = text(
    "SELECT events, folded_id, ref_ts, pool, pool_at FROM ah_users "
    "WHERE program_pk = :pk AND user_id = :user"
)
PENDING_EVENTS = text(
    "SELECT id, event_ts, event_type, asset_id FROM ah_events "
    "WHERE program_pk = :pk AND user_id = :user AND id > :after ORDER BY event_ts, id"
)
TOP_HISTORY = text(
    "SELECT action_id, score_log FROM ah_user_actions WHERE program_pk = :pk AND user_id = :user "
    "ORDER BY score_log DESC, action_id LIMIT :n"
)
USER_ACTIONS_IN = text(
    "SELECT action_id, events, score_log FROM ah_user_actions "
    "WHERE program_pk = :pk AND user_id = :user AND action_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
FIND_ACTIONS = text(
    "SELECT id, event_type, asset_id, users, pop_log FROM ah_actions "
    "WHERE program_pk = :pk AND event_type = :event_type AND asset_id IN :assets"
).bindparams(bindparam("assets", expanding=True))
NEW_ACTION = text(
    "INSERT INTO ah_actions (program_pk, event_type, asset_id, users, pop_log) "
    "VALUES (:pk, :event_type, :asset_id, 0, :pop_log) RETURNING id"
)
UPDATE_ACTION = text("UPDATE ah_actions SET users = :users, pop_log = :pop_log WHERE id = :id")
UPSERT_USER_ACTION = text(
    "INSERT INTO ah_user_actions (program_pk, user_id, action_id, events, score_log) "
    "VALUES (:pk, :user, :action_id, :events, :score_log) "
    "ON CONFLICT (program_pk, user_id, action_id) DO UPDATE "
    "SET events = excluded.events, score_log = excluded.score_log"
)
ADD_COOCCURRENCE = text(
    "INSERT INTO ah_cooccurrence (a_id, b_id, users) VALUES (:a, :b, :n) "
    "ON CONFLICT (a_id, b_id) DO UPDATE SET users = ah_cooccurrence.users + excluded.users"
)
FOLDED = text(
    "UPDATE ah_users SET folded_id = :folded_id, ref_ts = :ref_ts, pending = 0 "
    "WHERE program_pk = :pk AND user_id = :user"
)


@dataclass
class _Pending:
    user: str
    events: list[Any]  # rows (id, event_ts, event_type, asset_id), by time then arrival
    folded_id: int
    ref_ts: int | None


def _actions(
    conn: Connection, pk: int, contributions: dict[tuple[str, str], list[float]]
) -> tuple[dict[tuple[str, str], ActionRow], dict[int, float]]:
    """The action rows of (event_type, asset_id) pairs, and each one's popularity (``pop_log``)
    after adding ``contributions`` (event times in half-lives). Missing rows are created with
    their final popularity and 0 users (``fold`` adds the users)."""
    found: dict[tuple[str, str], ActionRow] = {}
    by_type: dict[str, list[str]] = defaultdict(list)
    for event_type, asset_id in contributions:
        by_type[event_type].append(asset_id)
    for event_type, assets in sorted(by_type.items()):
        for chunk in _chunks(sorted(assets)):
            for r in conn.execute(
                FIND_ACTIONS, {"pk": pk, "event_type": event_type, "assets": list(chunk)}
            ):
                found[r.event_type, r.asset_id] = ActionRow(
                    r.id, r.event_type, r.asset_id, r.users, r.pop_log
                )
    pop: dict[int, float] = {}
    for pair in sorted(contributions):
        row = found.get(pair)
        total: float | None = row.pop_log if row is not None else None
        for u in contributions[pair]:
            total = log2_add(total, u)
        assert total is not None
        if row is None:
            new_id = conn.execute(
                NEW_ACTION,
                {"pk": pk, "event_type": pair[0], "asset_id": pair[1], "pop_log": total},
            ).scalar_one()
            row = found[pair] = ActionRow(new_id, pair[0], pair[1], 0, total)
        pop[row.id] = total
    return found, pop


def fold(conn: Connection, pk: int, users: Sequence[str]) -> list[str]:
    """Fold the users' pending events into the statistics; returns the users that exist."""
    h = half_life(conn, pk)
    pending: list[_Pending] = []
    for user in users:
        state = conn.execute(USER_STATE, {"pk": pk, "user": user}).first()
        if state is None:
            continue
        rows = conn.execute(
            PENDING_EVENTS, {"pk": pk, "user": user, "after": state.folded_id}
        ).all()
        pending.append(_Pending(user, list(rows), state.folded_id, state.ref_ts))
    contributions: dict[tuple[str, str], list[float]] = defaultdict(list)
    for p in pending:
        for r in p.events:
            contributions[r.event_type, r.asset_id].append(units(r.event_ts, h))
    if not contributions:
        return [p.user for p in pending]
    actions, pop = _actions(conn, pk, contributions)
    new_users: dict[int, int] = defaultdict(int)
    cooccurrence: dict[tuple[int, int], int] = defaultdict(int)
    for p in pending:
        if p.events:
            _fold_user(conn, pk, h, p, actions, new_users, cooccurrence)
    conn.execute(
        UPDATE_ACTION,
        [
            {"id": row.id, "users": row.users + new_users[row.id], "pop_log": pop[row.id]}
            for row in sorted(actions.values(), key=lambda row: row.id)
        ],
    )
    if cooccurrence:
        conn.execute(
            ADD_COOCCURRENCE,
            [{"a": a, "b": b, "n": n} for (a, b), n in sorted(cooccurrence.items())],
        )
    return [p.user for p in pending]


def _fold_user(
    conn: Connection,
    pk: int,
    h: int,
    p: _Pending,
    actions: dict[tuple[str, str], ActionRow],
    new_users: dict[int, int],
    cooccurrence: dict[tuple[int, int], int],
) -> None:
    """One user's pending events, in time order: the user's history of each action, and for an
    action taken for the first time, one more user for it and for each (window action -> it)."""
    ids = sorted({actions[r.event_type, r.asset_id].id for r in p.events})
    known: dict[int, tuple[int, float]] = {}  # action id -> (events, score_log)
    for chunk in _chunks(ids):
        for r in conn.execute(USER_ACTIONS_IN, {"pk": pk, "user": p.user, "ids": list(chunk)}):
            known[r.action_id] = (r.events, r.score_log)
    window = {
        r.action_id: r.score_log
        for r in conn.execute(TOP_HISTORY, {"pk": pk, "user": p.user, "n": HISTORY})
    }
    touched: set[int] = set()
    for r in p.events:
        action = actions[r.event_type, r.asset_id].id
        u = units(r.event_ts, h)
        before = known.get(action)
        if before is None:
            new_users[action] += 1
            for other in window:
                if other != action:
                    cooccurrence[other, action] += 1
            known[action] = (1, u)
        else:
            known[action] = (before[0] + 1, log2_add(before[1], u))
        touched.add(action)
        window[action] = known[action][1]
        if len(window) > HISTORY:
            del window[min(window, key=lambda a: (window[a], -a))]
    conn.execute(
        UPSERT_USER_ACTION,
        [
            {
                "pk": pk,
                "user": p.user,
                "action_id": a,
                "events": known[a][0],
                "score_log": known[a][1],
            }
            for a in sorted(touched)
        ],
    )
    latest = max(r.event_ts for r in p.events)
    conn.execute(
        FOLDED,
        {
            "pk": pk,
            "user": p.user,
            "folded_id": max(r.id for r in p.events),
            "ref_ts": latest if p.ref_ts is None else max(p.ref_ts, latest),
        },
    )


# --- candidate pools ------------------------------------------------------------------------

POPULAR_ACTIONS = text(
    "SELECT id, event_type, asset_id, users, pop_log FROM ah_actions WHERE program_pk = :pk "
    "ORDER BY pop_log DESC, id DESC LIMIT :n"
)
TAKEN_IN = text(
    "SELECT action_id, score_log FROM ah_user_actions "
    "WHERE program_pk = :pk AND user_id = :user AND action_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
PENDING_PAIRS = text(
    "SELECT DISTINCT event_type, asset_id FROM ah_events "
    "WHERE program_pk = :pk AND user_id = :user AND id > :after"
)
STORE_POOL = text(
    "UPDATE ah_users SET pool = :pool, pool_at = :now WHERE program_pk = :pk AND user_id = :user"
).bindparams(bindparam("pool", type_=JSON))
DEQUEUE = text("DELETE FROM ah_user_queue WHERE program_pk = :pk AND user_id = :user")


@functools.cache
def _neighbours_statement(count: int) -> Any:
    """The NEIGHBOURS most shared successors of each of ``count`` actions, in one statement."""
    parts = [
        f"SELECT * FROM (SELECT a_id, b_id, users FROM ah_cooccurrence WHERE a_id = :a{i} "
        f"ORDER BY users DESC, b_id DESC LIMIT {NEIGHBOURS}) q{i}"
        for i in range(count)
    ]
    return text(" UNION ALL ".join(parts))


def candidates(
    conn: Connection, pk: int, user: str, h: int, ref_ts: int | None
) -> tuple[dict[int, float], dict[int, ActionRow]]:
    """Each candidate action's label-free score ``s`` (see the module docstring), with its row."""
    history: dict[int, float] = {}
    if ref_ts is not None:
        now = units(ref_ts, h)
        history = {
            r.action_id: 2.0 ** (r.score_log - now)
            for r in conn.execute(TOP_HISTORY, {"pk": pk, "user": user, "n": HISTORY})
        }
    shared: list[Any] = []
    if history:
        params = {f"a{i}": a for i, a in enumerate(history)}
        shared = list(conn.execute(_neighbours_statement(len(history)), params))
    popular = [
        ActionRow(r.id, r.event_type, r.asset_id, r.users, r.pop_log)
        for r in conn.execute(POPULAR_ACTIONS, {"pk": pk, "n": POPULAR})
    ]
    if not popular:
        return {}, {}
    top = popular[0].pop_log
    stats = {row.id: row for row in popular}
    missing = (set(history) | {r.b_id for r in shared}) - stats.keys()
    stats.update(actions_by_id(conn, missing))
    scores: dict[int, float] = defaultdict(float)
    for r in shared:
        a, b = stats[r.a_id], stats[r.b_id]
        scores[r.b_id] += history[r.a_id] * r.users / math.sqrt(a.users * b.users)
    for row in popular:
        scores[row.id] += 0.0  # every popular action is a candidate
    return {
        b: co + POPULARITY * 2.0 ** min(0.0, stats[b].pop_log - top) for b, co in scores.items()
    }, stats


def _ranked(scores: dict[int, float], stats: dict[int, ActionRow], cat: Catalogue) -> list[int]:
    """Action ids by growth weight, highest first; ties by event type, then asset id."""
    return sorted(
        scores,
        key=lambda b: (
            -scores[b] * cat.factor(stats[b].asset_id),
            stats[b].event_type,
            stats[b].asset_id,
        ),
    )


def refresh_pool(conn: Connection, pk: int, user: str) -> None:
    """Recompute and store the user's pool: the POOL best actions and the POOL best untaken."""
    state = conn.execute(USER_STATE, {"pk": pk, "user": user}).one()
    scores, stats = candidates(conn, pk, user, half_life(conn, pk), state.ref_ts)
    cat = catalogue(conn, pk, {stats[b].asset_id for b in scores})
    order = _ranked(scores, stats, cat)
    taken = _taken(conn, pk, user, order)
    keep = set(order[:POOL]) | set([b for b in order if b not in taken][:POOL])
    pool = [[b, scores[b]] for b in order if b in keep]
    conn.execute(STORE_POOL, {"pk": pk, "user": user, "pool": pool, "now": now_ms()})


def _taken(conn: Connection, pk: int, user: str, ids: Sequence[int]) -> dict[int, float]:
    """Of ``ids``, the actions the user's folded events took, with their ``score_log``."""
    found: dict[int, float] = {}
    for chunk in _chunks(sorted(ids)):
        for r in conn.execute(TAKEN_IN, {"pk": pk, "user": user, "ids": list(chunk)}):
            found[r.action_id] = r.score_log
    return found


def process(conn: Connection, pk: int, users: Sequence[str]) -> list[str]:
    """Fold the users' pending events, recompute their pools, take them off the queue.
    Returns the users that exist (the others are ignored)."""
    existing = fold(conn, pk, users)
    for user in existing:
        refresh_pool(conn, pk, user)
    conn.execute(DEQUEUE, [{"pk": pk, "user": user} for user in users])
    return existing


# --- answers --------------------------------------------------------------------------------

USER_MODEL = text(
    "SELECT u.folded_id, u.pending, u.ref_ts, u.pool, u.pool_at, p.half_life_ms, "
    "p.catalogue_changed_at "
    "FROM ah_users u JOIN programs p ON p.id = u.program_pk "
    "WHERE u.program_pk = :pk AND u.user_id = :user"
)


@dataclass(frozen=True)
class Recommendation:
    event_type: str
    asset_id: str
    asset_name: str | None
    growth_weight: float
    base_weight: float


@dataclass(frozen=True)
class Recommendations:
    actions: list[Recommendation]
    # The pool predates a label or asset change: the caller queues a refresh.
    stale: bool


def recommend(
    conn: Connection, pk: int, user: str, limit: int, allow_repeats: bool
) -> Recommendations | None:
    """The user's best ``limit`` actions by growth weight; ``None`` for an unknown user."""
    state = conn.execute(USER_MODEL, {"pk": pk, "user": user}).first()
    if state is None:
        return None
    h = int(state.half_life_ms)
    if state.pool is None:  # events never processed: the fallback, computed now
        scores, stats = candidates(conn, pk, user, h, state.ref_ts)
    else:
        scores = {int(b): float(s) for b, s in _json_list(state.pool)}
        stats = actions_by_id(conn, scores)
        scores = {b: s for b, s in scores.items() if b in stats}
    cat = catalogue(conn, pk, {stats[b].asset_id for b in scores})
    taken = _taken(conn, pk, user, list(scores))
    pending: set[tuple[str, str]] = set()
    if state.pending and not allow_repeats:
        pending = {
            (r.event_type, r.asset_id)
            for r in conn.execute(PENDING_PAIRS, {"pk": pk, "user": user, "after": state.folded_id})
        }
    now = units(state.ref_ts, h) if state.ref_ts is not None else 0.0
    chosen: list[Recommendation] = []
    for b in _ranked(scores, stats, cat):
        row = stats[b]
        if not allow_repeats and (b in taken or (row.event_type, row.asset_id) in pending):
            continue
        chosen.append(
            Recommendation(
                row.event_type,
                row.asset_id,
                cat.names.get(row.asset_id),
                scores[b] * cat.factor(row.asset_id),
                2.0 ** (taken[b] - now) if b in taken else 0.0,
            )
        )
        if len(chosen) == limit:
            break
    stale = state.pool_at is not None and state.pool_at < state.catalogue_changed_at
    return Recommendations(chosen, stale)


# --- the durable queue ----------------------------------------------------------------------

NEXT_QUEUED = text(
    "SELECT program_pk, user_id FROM ah_user_queue ORDER BY queued_at, program_pk, user_id LIMIT :n"
)
QUEUE_DEPTH = text("SELECT count(*) FROM ah_user_queue")


def process_queue(conn: Connection, limit: int) -> int:
    """Process up to ``limit`` queued users, oldest first; returns how many were taken. The rows
    leave the queue in the same transaction that stores their pools: a process that dies midway
    leaves them queued for the next one."""
    rows = conn.execute(NEXT_QUEUED, {"n": limit}).all()
    by_program: dict[int, list[str]] = defaultdict(list)
    for r in rows:
        by_program[r.program_pk].append(r.user_id)
    for pk, users in sorted(by_program.items()):
        process(conn, pk, users)
    return len(rows)


def queue_depth(conn: Connection) -> int:
    return int(conn.execute(QUEUE_DEPTH).scalar_one())


PENDING_USERS = text(
    "SELECT user_id FROM ah_users WHERE program_pk = :pk AND pending > 0 ORDER BY user_id LIMIT :n"
)
COUNT_PENDING_USERS = text("SELECT count(*) FROM ah_users WHERE program_pk = :pk AND pending > 0")


def pending_users(conn: Connection, pk: int) -> int:
    return int(conn.execute(COUNT_PENDING_USERS, {"pk": pk}).scalar_one())


def process_pending(conn: Connection, pk: int, limit: int) -> int:
    """Process up to ``limit`` users of the program that have pending events; how many."""
    users = list(conn.execute(PENDING_USERS, {"pk": pk, "n": limit}).scalars())
    if users:
        process(conn, pk, users)
    return len(users)
