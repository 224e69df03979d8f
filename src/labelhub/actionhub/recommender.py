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
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, text

from labelhub.core.keys import now_ms
from labelhub.core.models import json_list
from labelhub.core.sql import bulk

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


HALF_LIFE = text("SELECT half_life_ms FROM programs WHERE id = :pk")


def half_life(conn: Connection, pk: int) -> int:
    return int(conn.execute(HALF_LIFE, {"pk": pk}).scalar_one())


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
            labels[r.asset_id] = json_list(r.labels)
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
#
# Every step reads and writes for all the users of a call at once (a handful of statements per
# call, not per user): a POST /events of 1,000 events may bring 1,000 users.

USERS_IN = text(
    "SELECT user_id, events, pending, folded_id, ref_ts FROM ah_users "
    "WHERE program_pk = :pk AND user_id IN :users"
).bindparams(bindparam("users", expanding=True))
PENDING_EVENTS_IN = text(
    "SELECT e.user_id, e.id, e.event_ts, e.event_type, e.asset_id FROM ah_events e "
    "JOIN ah_users u ON u.program_pk = e.program_pk AND u.user_id = e.user_id "
    "WHERE e.program_pk = :pk AND e.user_id IN :users AND u.pending > 0 AND e.id > u.folded_id"
).bindparams(bindparam("users", expanding=True))
USER_ACTIONS_OF = text(
    "SELECT user_id, action_id, events, score_log FROM ah_user_actions "
    "WHERE program_pk = :pk AND user_id IN :users"
).bindparams(bindparam("users", expanding=True))
USER_ACTIONS_IN = text(
    "SELECT action_id, events, score_log FROM ah_user_actions "
    "WHERE program_pk = :pk AND user_id = :user AND action_id IN :ids"
).bindparams(bindparam("ids", expanding=True))
FIND_ACTIONS = text(
    "SELECT id, event_type, asset_id, users, pop_log FROM ah_actions "
    "WHERE program_pk = :pk AND event_type = :event_type AND asset_id IN :assets"
).bindparams(bindparam("assets", expanding=True))
NEW_ACTION = bulk(
    "INSERT INTO ah_actions (program_pk, event_type, asset_id, users, pop_log) "
    "VALUES (:pk, :event_type, :asset_id, 0, :pop_log)",
    "INSERT INTO ah_actions (program_pk, event_type, asset_id, users, pop_log) "
    "SELECT :pk, event_type, asset_id, 0, pop_log FROM {rows}",
    ("event_type", "text"),
    ("asset_id", "text"),
    ("pop_log", "float8"),
)
UPDATE_ACTION = bulk(
    "UPDATE ah_actions SET users = :users, pop_log = :pop_log WHERE id = :id",
    "UPDATE ah_actions a SET users = v.users, pop_log = v.pop_log FROM {rows} WHERE a.id = v.id",
    ("id", "integer"),
    ("users", "bigint"),
    ("pop_log", "float8"),
)
UPSERT_USER_ACTION = bulk(
    "INSERT INTO ah_user_actions (program_pk, user_id, action_id, events, score_log) "
    "VALUES (:pk, :user, :action_id, :events, :score_log) "
    "ON CONFLICT (program_pk, user_id, action_id) DO UPDATE "
    "SET events = excluded.events, score_log = excluded.score_log",
    "INSERT INTO ah_user_actions (program_pk, user_id, action_id, events, score_log) "
    'SELECT :pk, "user", action_id, events, score_log FROM {rows} '
    "ON CONFLICT (program_pk, user_id, action_id) DO UPDATE "
    "SET events = excluded.events, score_log = excluded.score_log",
    ("user", "text"),
    ("action_id", "integer"),
    ("events", "bigint"),
    ("score_log", "float8"),
)
ADD_COOCCURRENCE = bulk(
    "INSERT INTO ah_cooccurrence (a_id, b_id, users) VALUES (:a, :b, :n) "
    "ON CONFLICT (a_id, b_id) DO UPDATE SET users = ah_cooccurrence.users + excluded.users",
    "INSERT INTO ah_cooccurrence (a_id, b_id, users) SELECT a, b, n FROM {rows} "
    "ON CONFLICT (a_id, b_id) DO UPDATE SET users = ah_cooccurrence.users + excluded.users",
    ("a", "integer"),
    ("b", "integer"),
    ("n", "bigint"),
)
FOLDED = bulk(
    "UPDATE ah_users SET folded_id = :folded_id, ref_ts = :ref_ts, pending = 0 "
    "WHERE program_pk = :pk AND user_id = :user",
    "UPDATE ah_users u SET folded_id = v.folded_id, ref_ts = v.ref_ts, pending = 0 "
    'FROM {rows} WHERE u.program_pk = :pk AND u.user_id = v."user"',
    ("user", "text"),
    ("folded_id", "bigint"),
    ("ref_ts", "bigint"),
)

# A user's history: action id -> (events, score_log).
Taken = dict[int, tuple[int, float]]


def _users_rows(
    conn: Connection, statement: Any, pk: int, users: Iterable[str], **extra: Any
) -> Iterator[Any]:
    for chunk in _chunks(sorted(set(users))):
        yield from conn.execute(statement, {"pk": pk, "users": list(chunk), **extra})


def _histories(conn: Connection, pk: int, users: Iterable[str]) -> dict[str, Taken]:
    """Every action each user has taken (one index range per user)."""
    found: dict[str, Taken] = defaultdict(dict)
    for r in _users_rows(conn, USER_ACTIONS_OF, pk, users):
        found[r.user_id][r.action_id] = (r.events, r.score_log)
    return found


def strongest(taken: Taken) -> dict[int, float]:
    """The HISTORY actions of highest ``score_log`` (ties: the lower id): action -> score_log."""
    best = sorted(taken.items(), key=lambda item: (-item[1][1], item[0]))[:HISTORY]
    return {a: score for a, (_, score) in best}


def _actions(
    conn: Connection, pk: int, contributions: dict[tuple[str, str], list[float]]
) -> tuple[dict[tuple[str, str], ActionRow], dict[int, float]]:
    """The action rows of (event_type, asset_id) pairs, and each one's popularity (``pop_log``)
    after adding ``contributions`` (event times in half-lives). Missing rows are created with
    their final popularity and 0 users (``fold`` adds the users)."""

    def find(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], ActionRow]:
        found: dict[tuple[str, str], ActionRow] = {}
        by_type: dict[str, list[str]] = defaultdict(list)
        for event_type, asset_id in pairs:
            by_type[event_type].append(asset_id)
        for event_type, assets in sorted(by_type.items()):
            for chunk in _chunks(sorted(assets)):
                params = {"pk": pk, "event_type": event_type, "assets": list(chunk)}
                for r in conn.execute(FIND_ACTIONS, params):
                    found[r.event_type, r.asset_id] = ActionRow(
                        r.id, r.event_type, r.asset_id, r.users, r.pop_log
                    )
        return found

    found = find(contributions)
    totals: dict[tuple[str, str], float] = {}
    for pair in sorted(contributions):
        row = found.get(pair)
        total: float | None = row.pop_log if row is not None else None
        for u in contributions[pair]:
            total = log2_add(total, u)
        assert total is not None
        totals[pair] = total
    missing = sorted(contributions.keys() - found.keys())
    if missing:
        NEW_ACTION.run(
            conn,
            [{"event_type": t, "asset_id": a, "pop_log": totals[t, a]} for t, a in missing],
            pk=pk,
        )
        found.update(find(missing))
    return found, {found[pair].id: total for pair, total in totals.items()}


def _load(
    conn: Connection, pk: int, users: Iterable[str]
) -> tuple[int, dict[str, Any], dict[str, Taken]]:
    """What processing the users starts from: the program's half-life, the users' rows (those
    that exist) and every action each has taken."""
    states = {r.user_id: r for r in _users_rows(conn, USERS_IN, pk, users)}
    return half_life(conn, pk), states, _histories(conn, pk, states)


def user_events(conn: Connection, pk: int, user: str) -> int | None:
    """How many events the user has, None for an unknown user."""
    for r in _users_rows(conn, USERS_IN, pk, [user]):
        return int(r.events)
    return None


def fold(
    conn: Connection, pk: int, h: int, states: dict[str, Any], histories: dict[str, Taken]
) -> dict[str, int | None]:
    """Fold the users' pending events into the statistics, and into ``histories`` (updated in
    place). Returns each user's reference time (its latest folded event) after the fold."""
    refs: dict[str, int | None] = {user: state.ref_ts for user, state in states.items()}
    events: dict[str, list[Any]] = defaultdict(list)
    pending = [user for user, state in states.items() if state.pending]
    for r in _users_rows(conn, PENDING_EVENTS_IN, pk, pending):
        events[r.user_id].append(r)
    contributions: dict[tuple[str, str], list[float]] = defaultdict(list)
    for user in sorted(events):
        events[user].sort(key=lambda r: (r.event_ts, r.id))  # time order, then arrival
        for r in events[user]:
            contributions[r.event_type, r.asset_id].append(units(r.event_ts, h))
    if not contributions:
        return refs
    actions, pop = _actions(conn, pk, contributions)
    new_users: dict[int, int] = defaultdict(int)
    cooccurrence: dict[tuple[int, int], int] = defaultdict(int)
    user_rows: list[dict[str, Any]] = []
    folded: list[dict[str, Any]] = []
    for user in sorted(events):
        taken = histories[user]
        window = strongest(taken)
        touched: set[int] = set()
        for r in events[user]:
            action = actions[r.event_type, r.asset_id].id
            u = units(r.event_ts, h)
            before = taken.get(action)
            if before is None:  # the user's first time: one more user, one more (a -> it)
                new_users[action] += 1
                for other in window:
                    if other != action:
                        cooccurrence[other, action] += 1
                taken[action] = (1, u)
            else:
                taken[action] = (before[0] + 1, log2_add(before[1], u))
            touched.add(action)
            window[action] = taken[action][1]
            if len(window) > HISTORY:
                del window[min(window, key=lambda a: (window[a], -a))]
        user_rows += [
            {"user": user, "action_id": a, "events": n, "score_log": score}
            for a in sorted(touched)
            for n, score in [taken[a]]
        ]
        latest = max(r.event_ts for r in events[user])
        ref = refs[user]
        refs[user] = latest if ref is None else max(ref, latest)
        folded.append(
            {
                "user": user,
                "folded_id": max(r.id for r in events[user]),
                "ref_ts": refs[user],
            }
        )
    UPSERT_USER_ACTION.run(conn, user_rows, pk=pk)
    FOLDED.run(conn, folded, pk=pk)
    UPDATE_ACTION.run(
        conn,
        [
            {"id": row.id, "users": row.users + new_users[row.id], "pop_log": pop[row.id]}
            for row in sorted(actions.values(), key=lambda row: row.id)
        ],
    )
    ADD_COOCCURRENCE.run(
        conn, [{"a": a, "b": b, "n": n} for (a, b), n in sorted(cooccurrence.items())]
    )
    return refs


# --- candidate pools ------------------------------------------------------------------------

POPULAR_ACTIONS = text(
    "SELECT id, event_type, asset_id, users, pop_log FROM ah_actions WHERE program_pk = :pk "
    "ORDER BY pop_log DESC, id DESC LIMIT :n"
)
PENDING_PAIRS = text(
    "SELECT DISTINCT event_type, asset_id FROM ah_events "
    "WHERE program_pk = :pk AND user_id = :user AND id > :after"
)
STORE_POOL = bulk(
    "UPDATE ah_users SET pool = :pool, pool_at = :now WHERE program_pk = :pk AND user_id = :user",
    "UPDATE ah_users u SET pool = CAST(v.pool AS json), pool_at = :now FROM {rows} "
    'WHERE u.program_pk = :pk AND u.user_id = v."user"',
    ("user", "text"),
    ("pool", "text"),
    json_params=("pool",),
)
DEQUEUE = bulk(
    "DELETE FROM ah_user_queue WHERE program_pk = :pk AND user_id = :user",
    'DELETE FROM ah_user_queue q USING {rows} WHERE q.program_pk = :pk AND q.user_id = v."user"',
    ("user", "text"),
)
# Actions whose successors one statement reads.
NEIGHBOUR_BATCH = 64


@functools.cache
def _neighbours_statement(count: int) -> Any:
    """The NEIGHBOURS most shared successors of each of ``count`` actions, in one statement."""
    parts = [
        f"SELECT * FROM (SELECT a_id, b_id, users FROM ah_cooccurrence WHERE a_id = :a{i} "
        f"ORDER BY users DESC, b_id DESC LIMIT {NEIGHBOURS}) q{i}"
        for i in range(count)
    ]
    return text(" UNION ALL ".join(parts))


@dataclass
class Shared:
    """Statistics read once and reused by the transactions of one bulk refresh (``labelhub
    events process``): successors, action rows and the popular list of a program. Writes made
    meanwhile by others are not seen; the pools are as fresh as the start of the run."""

    neighbours: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    stats: dict[int, ActionRow] = field(default_factory=dict)
    popular: list[ActionRow] | None = None


def _neighbours(
    conn: Connection, ids: Iterable[int], known: dict[int, list[tuple[int, int]]]
) -> dict[int, list[tuple[int, int]]]:
    """Action id -> its NEIGHBOURS most shared successors as (successor id, users); ``known``
    holds (and receives) what was read before."""
    missing = sorted(set(ids) - known.keys())
    for a in missing:
        known[a] = []
    for start in range(0, len(missing), NEIGHBOUR_BATCH):
        chunk = missing[start : start + NEIGHBOUR_BATCH]
        params = {f"a{i}": a for i, a in enumerate(chunk)}
        for r in conn.execute(_neighbours_statement(len(chunk)), params):
            known[r.a_id].append((r.b_id, r.users))
    return known


def candidates(
    conn: Connection,
    pk: int,
    h: int,
    refs: dict[str, int | None],
    windows: dict[str, dict[int, float]],
    shared: Shared | None = None,
) -> tuple[dict[str, dict[int, float]], dict[int, ActionRow]]:
    """For each user, each candidate action's label-free score ``s``, and the actions' rows.
    ``refs``: the time base weights are taken at (None: no folded events); ``windows``: the
    user's strongest actions with their ``score_log``; ``shared``: statistics to reuse."""
    cache = shared or Shared()
    weights = {
        user: {a: 2.0 ** (score - units(ref, h)) for a, score in windows.get(user, {}).items()}
        for user, ref in refs.items()
        if ref is not None
    }
    history = {a for w in weights.values() for a in w}
    successors = _neighbours(conn, history, cache.neighbours)
    if cache.popular is None:
        cache.popular = [
            ActionRow(r.id, r.event_type, r.asset_id, r.users, r.pop_log)
            for r in conn.execute(POPULAR_ACTIONS, {"pk": pk, "n": POPULAR})
        ]
    popular = cache.popular
    if not popular:
        return {user: {} for user in refs}, {}
    top = popular[0].pop_log
    wanted = history | {b for a in history for b, _ in successors[a]} | {r.id for r in popular}
    cache.stats.update((row.id, row) for row in popular)
    cache.stats.update(actions_by_id(conn, wanted - cache.stats.keys()))
    stats = {a: cache.stats[a] for a in wanted}
    users_of = {a: row.users for a, row in stats.items()}
    popularity = {a: POPULARITY * 2.0 ** min(0.0, row.pop_log - top) for a, row in stats.items()}
    fallback = {row.id: 0.0 for row in popular}
    scores: dict[str, dict[int, float]] = {}
    for user in refs:
        co = dict(fallback)
        for a, weight in weights.get(user, {}).items():
            n_a = users_of[a]
            for b, users in successors[a]:
                co[b] = co.get(b, 0.0) + weight * users / math.sqrt(n_a * users_of[b])
        scores[user] = {b: value + popularity[b] for b, value in co.items()}
    return scores, stats


def _ranked(scores: dict[int, float], stats: dict[int, ActionRow], cat: Catalogue) -> list[int]:
    """Action ids by growth weight, highest first; ties by event type, then asset id."""
    factors = cat.factors
    keyed = [
        (-s * factors.get(stats[b].asset_id, 1.0), stats[b].event_type, stats[b].asset_id, b)
        for b, s in scores.items()
    ]
    keyed.sort()
    return [k[3] for k in keyed]


def refresh_pools(
    conn: Connection,
    pk: int,
    h: int,
    refs: dict[str, int | None],
    histories: dict[str, Taken],
    shared: Shared | None = None,
) -> None:
    """Recompute and store each user's pool: the POOL best actions and the POOL best untaken."""
    windows = {user: strongest(histories.get(user, {})) for user in refs}
    scores, stats = candidates(conn, pk, h, refs, windows, shared)
    cat = catalogue(conn, pk, {row.asset_id for row in stats.values()})
    now = now_ms()
    pools = []
    for user in sorted(refs):
        mine, taken = scores[user], histories.get(user, {})
        order = _ranked(mine, stats, cat)
        untaken = [b for b in order if b not in taken]
        keep = set(order[:POOL]) | set(untaken[:POOL])
        pool = [[b, mine[b]] for b in order if b in keep]
        pools.append({"user": user, "pool": pool})
    STORE_POOL.run(conn, pools, pk=pk, now=now)


def process(conn: Connection, pk: int, users: Sequence[str]) -> list[str]:
    """Fold the users' pending events, recompute their pools, take them off the queue.
    Returns the users that exist (the others are ignored)."""
    h, states, histories = _load(conn, pk, users)
    refs = fold(conn, pk, h, states, histories)
    refresh_pools(conn, pk, h, refs, histories)
    DEQUEUE.run(conn, [{"user": user} for user in users], pk=pk)
    return sorted(states)


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
        by_user, stats = candidates(conn, pk, h, {user: state.ref_ts}, {})
        scores = by_user[user]
    else:
        scores = {int(b): float(s) for b, s in json_list(state.pool)}
        stats = actions_by_id(conn, scores)
        scores = {b: s for b, s in scores.items() if b in stats}
    cat = catalogue(conn, pk, {stats[b].asset_id for b in scores})
    taken: dict[int, float] = {}
    for chunk in _chunks(sorted(scores)):
        params = {"pk": pk, "user": user, "ids": list(chunk)}
        taken.update((r.action_id, r.score_log) for r in conn.execute(USER_ACTIONS_IN, params))
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
    # <=: a pool computed in the same millisecond as the mark may predate the change.
    stale = state.pool_at is not None and state.pool_at <= state.catalogue_changed_at
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


PENDING_USERS = text("SELECT user_id FROM ah_users WHERE program_pk = :pk AND pending > 0 LIMIT :n")
COUNT_PENDING_USERS = text("SELECT count(*) FROM ah_users WHERE program_pk = :pk AND pending > 0")
USERS_AFTER = text(
    "SELECT user_id FROM ah_users WHERE program_pk = :pk AND user_id > :after "
    "ORDER BY user_id LIMIT :n"
)
COUNT_USERS = text("SELECT count(*) FROM ah_users WHERE program_pk = :pk")


def pending_users(conn: Connection, pk: int) -> int:
    return int(conn.execute(COUNT_PENDING_USERS, {"pk": pk}).scalar_one())


def user_count(conn: Connection, pk: int) -> int:
    return int(conn.execute(COUNT_USERS, {"pk": pk}).scalar_one())


def fold_pending(conn: Connection, pk: int, limit: int) -> int:
    """Fold the pending events of up to ``limit`` users of the program (their pools are left
    for ``refresh_after``); returns how many users."""
    users = list(conn.execute(PENDING_USERS, {"pk": pk, "n": limit}).scalars())
    if users:
        fold(conn, pk, *_load(conn, pk, users))
    return len(users)


STATISTICS_TABLES = ("ah_events", "ah_users", "ah_actions", "ah_user_actions", "ah_cooccurrence")


def analyze(conn: Connection) -> None:
    """Refresh PostgreSQL's planner statistics of the recommendation tables (after a bulk fold,
    before autovacuum would: without them the planner scans whole tables for IN lists)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE " + ", ".join(STATISTICS_TABLES))


def refresh_after(
    conn: Connection, pk: int, after: str, limit: int, shared: Shared | None = None
) -> str | None:
    """Recompute the pools of the next ``limit`` users after ``after`` (by user id); returns
    the last user done, None when there are no more."""
    users = list(conn.execute(USERS_AFTER, {"pk": pk, "after": after, "n": limit}).scalars())
    if not users:
        return None
    h, states, histories = _load(conn, pk, users)
    refs = {user: state.ref_ts for user, state in states.items()}
    refresh_pools(conn, pk, h, refs, histories, shared)
    return str(users[-1])
