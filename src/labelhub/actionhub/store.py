"""ActionHub SQL: programs, their labels and their assets.

Writes are set-based: a ``PUT /labels`` of 10,000 labels is one ``INSERT ... ON CONFLICT DO
UPDATE`` fed by one parameter (a JSON array read with ``json_each`` on SQLite, arrays read with
``unnest`` on PostgreSQL), not a statement per label.

Search is a substring of the case-folded text (``str.casefold()``, computed here in Python so both
dialects compare the same strings), answered by trigram indexes: FTS5 ``trigram`` on SQLite
(``MATCH`` for candidates, ``instr`` for the exact test), ``pg_trgm`` GIN on PostgreSQL (``LIKE``
for candidates, ``strpos`` for the exact test). On SQLite a label row's rowid follows its label
(``order``), so a label search reads its count and its page from the FTS5 index alone.
Order is byte-wise on both dialects.
"""

from __future__ import annotations

import functools
import json
import re
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, bindparam, delete, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from labelhub.actionhub import fences, order, recommender
from labelhub.actionhub.schemas import FORBIDDEN
from labelhub.core.errors import Conflict, NotFound
from labelhub.core.keys import now_ms
from labelhub.core.memo import after_commit, forget, memo
from labelhub.core.models import HALF_LIFE_MS, Asset, Program, ProgramLabel, json_list
from labelhub.core.pagination import offset_of
from labelhub.core.sql import DIALECTS, Read, bulk, one_of

# Rows per multi-row statement: 1,000 assets of 6 columns stay far below both dialects'
# parameter limits (SQLite 32,766; PostgreSQL 65,535).
ROWS_PER_STATEMENT = 1_000
# Joins the folded fields of an asset's search text; no stored name may contain it.
FIELD_SEPARATOR = "\x1f"


# --- programs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramRow:
    program_id: str
    name: str
    created_at: int


def create_program(
    conn: Connection,
    program_id: str,
    name: str | None = None,
    half_life_ms: int = HALF_LIFE_MS,
) -> ProgramRow:
    forget(conn)
    created = now_ms()
    row = ProgramRow(program_id, name if name is not None else program_id, created)
    values: dict[str, Any] = {}
    if conn.dialect.name == "sqlite":  # the id is the band of its labels' rowids (order)
        try:
            free = order.free_program_id(conn)
        except OverflowError as error:
            raise Conflict(str(error)) from None
        if free is not None:
            values["id"] = free
    savepoint = conn.begin_nested()
    try:
        conn.execute(
            insert(Program).values(
                **values,
                program_id=program_id,
                name=row.name,
                created_at=created,
                half_life_ms=half_life_ms,
            )
        )
    except IntegrityError:
        savepoint.rollback()
        raise Conflict(f"Program {program_id!r} already exists") from None
    savepoint.commit()
    return row


def list_programs(conn: Connection) -> list[ProgramRow]:
    return [
        ProgramRow(r.program_id, r.name, r.created_at)
        for r in conn.execute(
            select(Program.program_id, Program.name, Program.created_at).order_by(
                Program.program_id
            )
        )
    ]


def delete_program(conn: Connection, program_id: str) -> None:
    """Remove a program with its labels and assets (foreign keys cascade)."""
    forget(conn)
    _committed_marks.pop(conn.engine, None)  # SQLite may give its id to the next program
    deleted = conn.execute(delete(Program).where(Program.program_id == program_id))
    if deleted.rowcount == 0:
        raise NotFound("Program not found")


PROGRAM_PK = select(Program.id).where(Program.program_id == bindparam("program_id"))


def program_pk(conn: Connection, program_id: str) -> int | None:
    cache = memo(conn)
    if ("program", program_id) not in cache:
        cache["program", program_id] = conn.execute(PROGRAM_PK, {"program_id": program_id}).scalar()
    found: int | None = cache["program", program_id]
    return found


PROGRAM_PKS = {
    dialect: select(Program.program_id, Program.id).where(
        one_of(Program.program_id, "program_ids", String, dialect)
    )
    for dialect in DIALECTS
}


def program_reads(conn: Connection, program_ids: Iterable[str]) -> list[Read]:
    """A read of several programs at once, for ``program_pk`` to find (None: no such program),
    to run with others (``read_together``)."""
    cache = memo(conn)
    wanted = sorted({p for p in program_ids if ("program", p) not in cache})
    if not wanted:
        return []

    def take(rows: Sequence[Any]) -> None:
        found = {row.program_id: row.id for row in rows}
        for program_id in wanted:
            cache["program", program_id] = found.get(program_id)

    return [Read(PROGRAM_PKS[conn.dialect.name], {"program_ids": wanted}, take)]


ADD_TO_COUNTS = text(
    "UPDATE programs SET label_count = label_count + :labels, "
    "asset_count = asset_count + :assets, catalogue_changed_at = CASE "
    "WHEN catalogue_changed_at > :mark THEN catalogue_changed_at ELSE :mark END WHERE id = :pk"
)
# A catalogue mark is dated this far ahead, so the writes of the next second need no mark of
# their own (pools computed meanwhile count as stale too: one needless refresh at most).
MARK_AHEAD_MS = 1_000
# Per engine (so per process and database): program -> the latest committed mark.
_committed_marks: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()


def _add_to_counts(conn: Connection, pk: int, *, labels: int = 0, assets: int = 0) -> None:
    """Keep the program's counts, and mark its catalogue changed: recommendation pools computed
    at or before the mark are refreshed when next read. A re-weight covered by a mark this
    process committed (or wrote in this transaction) that is still ahead of now writes nothing:
    an UPDATE of the program per PUT /labels cost W1 a third of its throughput."""
    now = now_ms()
    marks = _committed_marks.setdefault(conn.engine, {})
    pending = memo(conn)
    if not (labels or assets) and max(marks.get(pk, 0), pending.get(("mark", pk), 0)) >= now:
        return
    mark = now + MARK_AHEAD_MS
    conn.execute(ADD_TO_COUNTS, {"pk": pk, "labels": labels, "assets": assets, "mark": mark})
    pending["mark", pk] = mark
    after_commit(conn, lambda: marks.__setitem__(pk, max(marks.get(pk, 0), mark)))


# --- search patterns ------------------------------------------------------------------------


def _like_contains(folded: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching ``folded`` anywhere (``%``, ``_`` taken literally)."""
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _searchable(search: str | None) -> str | None:
    """The folded search text, "" for a search nothing can match, None for no search."""
    if not search:
        return None
    if FORBIDDEN.search(search):
        return ""  # stored names hold no control characters: nothing matches
    return search.casefold()


def _covering_trigrams(text: str) -> list[str]:
    """Trigrams of ``text`` (3 characters or more) that together cover every character: one
    every 3 characters, and the last 3 when the length is not a multiple of 3; distinct, in
    order."""
    trigrams = [text[i : i + 3] for i in range(0, len(text) - 2, 3)]
    if len(text) % 3:
        trigrams.append(text[-3:])
    return list(dict.fromkeys(trigrams))


# The runs of a folded search that pg_trgm indexes as words on any database locale: it splits
# text at characters that are not letters or digits, and which characters are letters beyond
# ASCII is the locale's call.
_PG_TRGM_WORD = re.compile(r"[a-z0-9]{3,}")


def _pg_index_pattern(folded: str) -> str | None:
    """A ``LIKE`` pattern that every text containing ``folded`` matches and from which pg_trgm
    takes few trigrams, all from inside words: the search's words of 3 characters or more, in
    order, cut into pieces of 3 joined by ``%`` (``hazel-falcon-`` -> ``%haz%el%fal%con%``:
    trigrams ``haz fal con``; a piece of 1 or 2 gives none); None when the search has no such
    word."""
    pieces = [w[i : i + 3] for w in _PG_TRGM_WORD.findall(folded) for i in range(0, len(w), 3)]
    return "%" + "%".join(pieces) + "%" if pieces else None


def _search_filter(
    conn: Connection, table: str, column: str, folded: str
) -> tuple[str, str, dict[str, Any]]:
    """FROM and WHERE fragments (alias ``t``) selecting rows whose ``column`` contains ``folded``.

    Both dialects ask their trigram index for few trigrams that every match holds, not for all
    of the search's overlapping ones, and test the rows found for the search itself: every row
    that contains the search holds those trigrams, so nothing is missed, and an index lookup
    costs with each trigram it intersects, the common ones most.

    SQLite: a search of 3 characters or more asks the FTS5 trigram index for the rows holding
    every trigram of a set that covers the search end to end (``_covering_trigrams``), driven
    from the index to the rows by rowid, and ``instr`` keeps the rows that hold the search itself
    (W5 at 1M labels, SQL alone: a search with 1,000 matches 9.2 -> 5.6 ms against a phrase of all
    the overlapping trigrams, one with a single match 0.54 -> 0.35). Reading the matches' rowids
    from the index first, not walking the program's rows and probing the index, is what keeps a
    search with 20,000 matches among 1,000,000 labels near 20 ms rather than 90. A shorter search
    has no trigram: ``instr`` alone scans the program's rows.

    PostgreSQL: pg_trgm makes trigrams of words (runs of letters and digits), padded at their
    ends, so ``LIKE '%hazel-river-%'`` asks the GIN index for ten trigrams, four of them common
    word ends and starts (``"el "``, ``"  r"``). Instead the index is asked with a pattern of the
    search's words cut in pieces of 3 (``_pg_index_pattern``: ``%haz%el%riv%er%``, two trigrams)
    and ``strpos`` tests for the search itself. W5 at 1M labels, SQL alone, medians over 25 of
    the bench's searches of each kind, alternated with the other forms: 1,000 matches
    11.8 -> 5.1 ms (the GIN scan of ``hazel-river-`` 9.4 -> 3.0), 1 match 1.1 -> 0.8, 20,000
    matches 32.3 -> 30.8 (the heap reads are its cost). Pieces whose last one takes the 1 or 2
    characters left over (more trigrams, 7.1 ms) or a ``LIKE`` per covering trigram (7.7 ms)
    were slower. A search without such a word keeps the one ``LIKE`` of itself.
    """
    if conn.dialect.name == "sqlite":
        exact = f"instr(t.{column}, :needle) > 0"
        if len(folded) < 3:
            return f"{table} t", exact, {"needle": folded}
        query = " AND ".join(_fts_phrase(t) for t in _covering_trigrams(folded))
        return (
            f"{table}_fts AS f CROSS JOIN {table} AS t ON t.rowid = f.rowid",
            f"f.{column} MATCH :trigrams AND {exact}",
            {"trigrams": query, "needle": folded},
        )
    pattern = _pg_index_pattern(folded)
    if pattern is None:
        return (
            f"{table} t",
            f"t.{column} LIKE :pattern ESCAPE '\\'",
            {"pattern": _like_contains(folded)},
        )
    return (
        f"{table} t",
        f"t.{column} LIKE :pattern AND strpos(t.{column}, :needle) > 0",
        {"pattern": pattern, "needle": folded},
    )


@functools.cache
def _kept_count_statement(kept_count: Any) -> Any:
    return select(kept_count).where(Program.id == bindparam("pk"))


def _page(
    conn: Connection,
    table: str,
    key: str,
    columns: str,
    pk: int,
    kept_count: Any,
    folded: str | None,
    page: int,
    size: int,
    search_column: str,
    ordered: bool = False,
) -> tuple[Sequence[Any], int]:
    """One page of ``table`` rows of a program, ordered by ``key``, and the number of matches.

    ``ordered``: on SQLite the table's rowids follow ``key`` within the program's band (``order``),
    so a search of 3 characters or more is answered from the FTS5 index alone.

    Without a search the page's first key is found in the primary key index: a near page by
    skipping its offset there, a deep one from the chunk counts of ``fences`` (the skip grew
    with the offset); then ``size`` rows are read. The total is ``kept_count``, the program's
    column that every write keeps (read only then: a search counts its matches).
    """
    offset = offset_of(page, size)
    params: dict[str, Any] = {"pk": pk, "size": size, "offset": offset}
    if folded is None:
        total = int(conn.execute(_kept_count_statement(kept_count), {"pk": pk}).scalar_one())
        if offset >= total:
            return [], total
        skip = (
            "",
            f"(SELECT {key} FROM {table} WHERE program_pk = :pk ORDER BY {key} "
            "LIMIT 1 OFFSET :offset)",
        )
        starts = [skip] if offset < fences.FROM_OFFSET else [fences.page_start(table), skip]
        for with_clause, start in starts:  # the skip when the chunks do not add up (fences)
            rows = conn.execute(
                text(
                    f"{with_clause}SELECT {columns} FROM {table} t WHERE t.program_pk = :pk "
                    f"AND t.{key} >= {start} ORDER BY t.{key} LIMIT :size"
                ),
                {**params, "total": total},
            ).all()
            if rows:
                break
        return rows, total
    if folded == "":
        return [], 0
    if ordered and conn.dialect.name == "sqlite" and len(folded) >= 3:
        return _ordered_search_page(conn, table, columns, pk, folded, size, offset)
    source, where, extra = _search_filter(conn, table, search_column, folded)
    params.update(extra)
    # One pass finds the matches (MATERIALIZED: on PostgreSQL the planner may otherwise walk the
    # primary key in order and test every row), then the page is sorted out of them and they are
    # counted: a separate count(*) statement ran the search twice, and a window over all of them
    # (count(*) OVER ()) carried every match through the sort (W5 at 1M labels, a search with
    # 20,000 matches, SQL alone: SQLite 33 -> 28 ms, PostgreSQL 30 -> 24 ms).
    matches = f"FROM {source} WHERE t.program_pk = :pk AND {where}"
    query = (
        f"WITH m AS MATERIALIZED (SELECT {columns} {matches}) "
        f"SELECT p.*, c.matches_in_all FROM "
        f"(SELECT * FROM m t ORDER BY t.{key} LIMIT :size OFFSET :offset) AS p "
        f"CROSS JOIN (SELECT count(*) AS matches_in_all FROM m) AS c ORDER BY p.{key}"
    )
    return _counted_page(conn, query, matches, params)


def _counted_page(
    conn: Connection, query: str, matches: str, params: dict[str, Any]
) -> tuple[Sequence[Any], int]:
    """Run a page ``query`` whose rows carry ``matches_in_all``; a page past the last match has
    no row to carry it, so the matches (``FROM ... WHERE`` text) are counted on their own."""
    rows = conn.execute(text(query), params).all()
    if rows:
        return rows, int(rows[0].matches_in_all)
    if params["offset"] == 0:
        return [], 0
    return [], conn.execute(text(f"SELECT count(*) {matches}"), params).scalar_one()


def _ordered_search_page(
    conn: Connection, table: str, columns: str, pk: int, folded: str, size: int, offset: int
) -> tuple[Sequence[Any], int]:
    """SQLite, rowids in key order (``order``): the matches of a search of 3 characters or more
    are the rowids of the program's band that hold it as a phrase of trigrams (with
    ``case_sensitive 1`` that is exactly "contains", as ``instr``), so the index counts them and
    lists the page's rowids in page order; only the page's rows are read. W5 at 1M labels, SQL
    alone: a search with 20,000 matches 18.7 -> 2.1 ms, with 1,000 3.1 -> 0.8, with one
    0.25 -> 0.9 (a phrase of five trigrams reads their positions)."""
    first, last = order.band(pk)
    params = {
        "phrase": _fts_phrase(folded),
        "first": first,
        "last": last,
        "size": size,
        "offset": offset,
    }
    matches = f"FROM {table}_fts WHERE {table}_fts MATCH :phrase AND rowid BETWEEN :first AND :last"
    # A page that is not full holds the last matches, so they number its offset and its rows,
    # and the index is not asked twice (SQLite evaluates an uncorrelated subquery once, and one
    # in a CASE branch not taken never): W5 at 1M labels, SQL alone, a search with one match
    # 1.6 -> 0.8 ms.
    query = (
        f"WITH f AS MATERIALIZED (SELECT rowid AS r {matches} ORDER BY rowid "
        "LIMIT :size OFFSET :offset) "
        f"SELECT {columns}, CASE WHEN (SELECT count(*) FROM f) < :size THEN "
        ":offset + (SELECT count(*) FROM f) "
        f"ELSE (SELECT count(*) {matches}) END AS matches_in_all "
        f"FROM f CROSS JOIN {table} AS t ON t.rowid = f.r ORDER BY f.r"
    )
    return _counted_page(conn, query, matches, params)


def _fts_phrase(folded: str) -> str:
    """An FTS5 string (one phrase) of ``folded``."""
    return '"' + folded.replace('"', '""') + '"'


# --- labels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upserted:
    created: int
    updated: int


# A write batch's labels: on SQLite, which already exist (a JSON array of names per program,
# driven through the primary key), then executemany of the inserts and of the re-weights, fed as
# plain tuples (no statement text or JSON per row). On PostgreSQL one upsert over the rows given
# as one JSON array (json.dumps is C; four arrays cost psycopg twice the client CPU to send, W1's
# batches of 320 labels 0.9-1.5 ms against 0.5); RETURNING says which rows were new.
EXISTING_LABELS_SQLITE = (
    "SELECT l.label FROM json_each(?) AS j CROSS JOIN program_labels AS l "
    "ON l.program_pk = ? AND l.label = j.value"
)
INSERT_LABEL_SQLITE = (
    "INSERT INTO program_labels (rowid, program_pk, label, label_folded, weight, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
REWEIGHT_LABEL_SQLITE = (
    "UPDATE program_labels SET weight = ?, updated_at = ? WHERE program_pk = ? AND label = ?"
)
UPSERT_LABELS_POSTGRESQL = text(
    "INSERT INTO program_labels (program_pk, label, label_folded, weight, updated_at) "
    "SELECT CAST(r->>0 AS integer), r->>1, r->>2, CAST(r->>3 AS float8), :now "
    "FROM json_array_elements(CAST(:rows AS json)) AS r "
    "ON CONFLICT (program_pk, label) DO UPDATE "
    "SET weight = excluded.weight, updated_at = excluded.updated_at "
    "RETURNING program_pk, label, (xmax = 0) AS inserted"
)


def _by_program(keys: Iterable[tuple[int, str]]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for pk, name in keys:
        found.setdefault(pk, []).append(name)
    return found


def _index_new(
    conn: Connection, table: str, column: str, key: str, pk: int, names: Sequence[str]
) -> None:
    """SQLite: add rows this transaction inserted to the table's FTS5 index, in one statement
    (migration 0005: one trigger call per row cost seven times as much)."""
    if names:
        conn.exec_driver_sql(
            f"INSERT INTO {table}_fts (rowid, {column}) SELECT rowid, {column} FROM {table} "
            f"WHERE program_pk = ? AND {key} IN (SELECT value FROM json_each(?))",
            (pk, json.dumps(list(names), ensure_ascii=False)),
        )


def _insert_labels_sqlite(
    conn: Connection, pk: int, names: list[str], weights: dict[tuple[int, str], float], now: int
) -> None:
    """SQLite: insert a program's new labels at rowids in label order (``order``), and index
    them. Labels whose gap has no room wait until the others are written; each of those gaps
    then renumbers rows around it, and its labels are written before the next."""

    def write(keys: dict[str, int]) -> None:
        if not keys:
            return
        conn.exec_driver_sql(
            INSERT_LABEL_SQLITE,
            [(key, pk, n, n.casefold(), weights[pk, n], now) for n, key in keys.items()],
        )
        _index_new(conn, "program_labels", "label_folded", "label", pk, list(keys))

    keys, crowded = order.place(conn, pk, names)
    write(keys)
    for gap in crowded:
        write(order.settle(conn, pk, gap))


def upsert_labels(conn: Connection, pk: int, items: Iterable[tuple[str, float]]) -> Upserted:
    """Add or re-weight labels; items apply in order, so a repeated label's last weight wins."""
    return upsert_label_sets(conn, [(pk, items)])[0]


def upsert_label_sets(
    conn: Connection, sets: Sequence[tuple[int, Iterable[tuple[str, float]]]]
) -> list[Upserted]:
    """``upsert_labels`` for several requests at once (a write batch), in their order.

    The result is what running them one after another would give: one statement writes every
    label's last weight, and each request's created/updated counts are worked out from the labels
    that existed before the batch plus those the requests ahead of it created.
    """
    latest = [(pk, dict(items)) for pk, items in sets]
    merged: dict[tuple[int, str], float] = {}
    for pk, labels in latest:
        for label, weight in labels.items():
            merged[pk, label] = weight
    if not merged:
        return [Upserted(0, 0) for _ in latest]
    now = now_ms()
    if conn.dialect.name == "postgresql":
        returned = conn.execute(
            UPSERT_LABELS_POSTGRESQL,
            {
                "now": now,
                # repr of each weight: the float8 PostgreSQL reads back is the same double
                "rows": json.dumps(
                    [(pk, label, label.casefold(), w) for (pk, label), w in merged.items()],
                    ensure_ascii=False,
                ),
            },
        ).all()
        existed = {(pk, label) for pk, label, inserted in returned if not inserted}
        for pk, names in _by_program((pk, label) for pk, label, new in returned if new).items():
            fences.added(conn, "program_labels", pk, names)
    else:
        existed = set()
        for pk, names in _by_program(merged).items():
            found = conn.exec_driver_sql(
                EXISTING_LABELS_SQLITE, (json.dumps(names, ensure_ascii=False), pk)
            )
            existed.update((pk, label) for (label,) in found)
        new = _by_program(key for key in merged if key not in existed)
        for pk, names in new.items():
            _insert_labels_sqlite(conn, pk, names, merged, now)
            fences.added(conn, "program_labels", pk, names)
        if existed:
            conn.exec_driver_sql(
                REWEIGHT_LABEL_SQLITE,
                [(merged[key], now, *key) for key in existed],
            )
    results: list[Upserted] = []
    created_per_program: Counter[int] = Counter()
    for pk, labels in latest:
        created = 0
        for label in labels:
            if (pk, label) not in existed:
                existed.add((pk, label))
                created += 1
        created_per_program[pk] += created
        results.append(Upserted(created, len(labels) - created))
    for pk in dict.fromkeys(pk for pk, labels in latest if labels):
        _add_to_counts(conn, pk, labels=created_per_program[pk])
    return results


def list_labels(
    conn: Connection, pk: int, search: str | None, page: int, size: int
) -> tuple[list[tuple[str, float]], int]:
    rows, total = _page(
        conn,
        "program_labels",
        "label",
        "t.label, t.weight",
        pk,
        Program.label_count,
        _searchable(search),
        page,
        size,
        "label_folded",
        ordered=True,
    )
    return [(r.label, r.weight) for r in rows], total


def delete_label(conn: Connection, pk: int, label: str) -> None:
    deleted = conn.execute(
        delete(ProgramLabel).where(ProgramLabel.program_pk == pk, ProgramLabel.label == label)
    )
    if deleted.rowcount == 0:
        raise NotFound("Label not found")
    fences.removed(conn, "program_labels", pk, label)
    _add_to_counts(conn, pk, labels=-1)


# --- assets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetPatch:
    """An asset item as sent: ``None`` for a field that was left out."""

    asset_id: str
    asset_name: tuple[str | None] | None = None  # (value,) when sent, so null can be told apart
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AssetRow:
    asset_id: str
    asset_name: str | None
    labels: list[str]


def asset_search_text(asset_id: str, asset_name: str | None, labels: Sequence[str]) -> str:
    return FIELD_SEPARATOR.join(
        [
            asset_id.casefold(),
            (asset_name or "").casefold(),
            *(label.casefold() for label in labels),
        ]
    )


def _merge(patches: Iterable[AssetPatch]) -> dict[str, AssetPatch]:
    """Fold items with the same asset_id, in order: later fields win, absent fields carry over."""
    merged: dict[str, AssetPatch] = {}
    for patch in patches:
        before = merged.get(patch.asset_id)
        if before is None:
            merged[patch.asset_id] = patch
            continue
        merged[patch.asset_id] = AssetPatch(
            patch.asset_id,
            patch.asset_name if patch.asset_name is not None else before.asset_name,
            patch.labels if patch.labels is not None else before.labels,
        )
    return merged


def _apply(patch: AssetPatch, base: AssetRow | None) -> AssetRow:
    name = (
        patch.asset_name[0] if patch.asset_name is not None else (base.asset_name if base else None)
    )
    labels = list(patch.labels) if patch.labels is not None else (base.labels if base else [])
    return AssetRow(patch.asset_id, name, labels)


def _asset_values(pk: int, row: AssetRow, now: int) -> dict[str, Any]:
    return {
        "program_pk": pk,
        "asset_id": row.asset_id,
        "asset_name": row.asset_name,
        "labels": row.labels,
        "search_text": asset_search_text(row.asset_id, row.asset_name, row.labels),
        "updated_at": now,
    }


# SQLite: the stored assets among those sent (driven from the JSON array through the primary
# key), then executemany of the inserts and of the rewrites, fed as plain tuples: a statement of
# 1,000 rows of VALUES compiled afresh for every request cost more than writing them.
STORED_ASSETS_SQLITE = (
    "SELECT a.asset_id, a.asset_name, a.labels FROM json_each(?) AS j CROSS JOIN assets AS a "
    "ON a.program_pk = ? AND a.asset_id = j.value"
)
INSERT_ASSET_SQLITE = (
    "INSERT INTO assets (program_pk, asset_id, asset_name, labels, search_text, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
REWRITE_ASSET_SQLITE = (
    "UPDATE assets SET asset_name = ?, labels = ?, search_text = ?, updated_at = ? "
    "WHERE program_pk = ? AND asset_id = ?"
)


def _asset_tuple(row: AssetRow, now: int) -> tuple[Any, ...]:
    search_text = asset_search_text(row.asset_id, row.asset_name, row.labels)
    return (row.asset_name, json.dumps(row.labels), search_text, now)


def upsert_assets(conn: Connection, pk: int, patches: Sequence[AssetPatch]) -> Upserted:
    """Create unknown assets and patch known ones (fields sent replace the stored ones)."""
    merged = _merge(patches)
    if conn.dialect.name == "sqlite":
        created, known = _upsert_assets_sqlite(conn, pk, merged)
    else:
        created, known = _upsert_assets_postgresql(conn, pk, merged)
    _add_to_counts(conn, pk, assets=created)
    return Upserted(created, known)


def _upsert_assets_sqlite(
    conn: Connection, pk: int, merged: dict[str, AssetPatch]
) -> tuple[int, int]:
    now = now_ms()
    ids = json.dumps(list(merged), ensure_ascii=False)
    stored = {
        asset_id: AssetRow(asset_id, name, json_list(labels))
        for asset_id, name, labels in conn.exec_driver_sql(STORED_ASSETS_SQLITE, (ids, pk))
    }
    fresh = [a for a in merged if a not in stored]
    if fresh:
        rows = [_apply(merged[a], None) for a in fresh]
        conn.exec_driver_sql(
            INSERT_ASSET_SQLITE, [(pk, r.asset_id, *_asset_tuple(r, now)) for r in rows]
        )
        _index_new(conn, "assets", "search_text", "asset_id", pk, fresh)
        fences.added(conn, "assets", pk, fresh)
    if stored:
        rows = [_apply(merged[a], base) for a, base in stored.items()]
        conn.exec_driver_sql(
            REWRITE_ASSET_SQLITE, [(*_asset_tuple(r, now), pk, r.asset_id) for r in rows]
        )
    return len(fresh), len(stored)


def _upsert_assets_postgresql(
    conn: Connection, pk: int, merged: dict[str, AssetPatch]
) -> tuple[int, int]:
    """Three set-based statements per 1,000 assets.

    1. Insert every asset as if new (``ON CONFLICT DO NOTHING``): what comes back was created.
       This waits for a concurrent insert of the same asset to commit first.
    2. Read the others, locked (``FOR UPDATE``).
    3. Write them back with the sent fields applied over what was stored.
    """
    now = now_ms()
    created: set[str] = set()
    known: list[str] = []
    ids = list(merged)
    for start in range(0, len(ids), ROWS_PER_STATEMENT):
        chunk = ids[start : start + ROWS_PER_STATEMENT]
        fresh = [_asset_values(pk, _apply(merged[a], None), now) for a in chunk]
        inserted = set(
            conn.execute(
                postgresql.insert(Asset)
                .values(fresh)
                .on_conflict_do_nothing()
                .returning(Asset.asset_id)
            ).scalars()
        )
        created |= inserted
        stale = [a for a in chunk if a not in inserted]
        if not stale:
            continue
        known += stale
        query = (
            select(Asset.asset_id, Asset.asset_name, Asset.labels)
            .where(Asset.program_pk == pk, Asset.asset_id.in_(stale))
            .with_for_update()
        )
        stored = {
            r.asset_id: AssetRow(r.asset_id, r.asset_name, r.labels) for r in conn.execute(query)
        }
        rows = [_asset_values(pk, _apply(merged[a], stored.get(a)), now) for a in stale]
        statement = postgresql.insert(Asset).values(rows)
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[Asset.program_pk, Asset.asset_id],
                set_={
                    "asset_name": statement.excluded.asset_name,
                    "labels": statement.excluded.labels,
                    "search_text": statement.excluded.search_text,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
    fences.added(conn, "assets", pk, list(created))
    return len(created), len(known)


def list_assets(
    conn: Connection, pk: int, search: str | None, page: int, size: int
) -> tuple[list[AssetRow], int]:
    rows, total = _page(
        conn,
        "assets",
        "asset_id",
        "t.asset_id, t.asset_name, t.labels",
        pk,
        Program.asset_count,
        _searchable(search),
        page,
        size,
        "search_text",
    )
    return [AssetRow(r.asset_id, r.asset_name, json_list(r.labels)) for r in rows], total


def get_asset(conn: Connection, pk: int, asset_id: str) -> AssetRow:
    row = conn.execute(
        select(Asset.asset_id, Asset.asset_name, Asset.labels).where(
            Asset.program_pk == pk, Asset.asset_id == asset_id
        )
    ).first()
    if row is None:
        raise NotFound("Asset not found")
    return AssetRow(row.asset_id, row.asset_name, row.labels)


def delete_asset(conn: Connection, pk: int, asset_id: str) -> None:
    deleted = conn.execute(delete(Asset).where(Asset.program_pk == pk, Asset.asset_id == asset_id))
    if deleted.rowcount == 0:
        raise NotFound("Asset not found")
    fences.removed(conn, "assets", pk, asset_id)
    _add_to_counts(conn, pk, assets=-1)


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventIn:
    user_id: str
    event_ts: int  # Unix epoch milliseconds, UTC
    event_type: str
    asset_id: str
    labels: list[str]


@dataclass(frozen=True)
class Recorded:
    events: int
    users: list[str]  # distinct, sorted
    processed: int  # users whose recommendations were recomputed in this transaction
    queued: int  # users handed to the background worker


INSERT_EVENT_SQLITE = (
    "INSERT INTO ah_events (program_pk, user_id, event_ts, event_type, asset_id, labels) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
INSERT_EVENTS_POSTGRESQL = text(
    "INSERT INTO ah_events (program_pk, user_id, event_ts, event_type, asset_id, labels) "
    "SELECT :pk, u, t, e, a, CAST(l AS json) FROM unnest(CAST(:users AS text[]), "
    "CAST(:times AS bigint[]), CAST(:types AS text[]), CAST(:assets AS text[]), "
    "CAST(:labels AS text[])) WITH ORDINALITY AS i(u, t, e, a, l, n) ORDER BY i.n"
)
COUNT_USER_EVENTS = bulk(
    "INSERT INTO ah_users (program_pk, user_id, events, pending) VALUES (:pk, :user, :n, :n) "
    "ON CONFLICT (program_pk, user_id) DO UPDATE "
    "SET events = ah_users.events + excluded.events, pending = ah_users.pending + excluded.pending",
    "INSERT INTO ah_users (program_pk, user_id, events, pending) "
    'SELECT :pk, "user", n, n FROM {rows} '
    "ON CONFLICT (program_pk, user_id) DO UPDATE "
    "SET events = ah_users.events + excluded.events, pending = ah_users.pending + excluded.pending",
    ("user", "text"),
    ("n", "bigint"),
)
ENQUEUE = bulk(
    "INSERT INTO ah_user_queue (program_pk, user_id, queued_at) VALUES (:pk, :user, :now) "
    "ON CONFLICT (program_pk, user_id) DO NOTHING",
    "INSERT INTO ah_user_queue (program_pk, user_id, queued_at) "
    'SELECT :pk, "user", :now FROM {rows} ON CONFLICT (program_pk, user_id) DO NOTHING',
    ("user", "text"),
)


def record_events(
    conn: Connection, pk: int, events: Sequence[EventIn], process: bool, queue: bool
) -> Recorded:
    """Append the events (one transaction) and, when asked, bring their users' recommendations
    up to date: now (``queue=False``) or through the durable queue (``queue=True``)."""
    labels = [json.dumps(e.labels, ensure_ascii=False) for e in events]
    if conn.dialect.name == "postgresql":
        conn.execute(
            INSERT_EVENTS_POSTGRESQL,
            {
                "pk": pk,
                "users": [e.user_id for e in events],
                "times": [e.event_ts for e in events],
                "types": [e.event_type for e in events],
                "assets": [e.asset_id for e in events],
                "labels": labels,
            },
        )
    else:
        conn.exec_driver_sql(
            INSERT_EVENT_SQLITE,
            [
                (pk, e.user_id, e.event_ts, e.event_type, e.asset_id, label_text)
                for e, label_text in zip(events, labels, strict=True)
            ],
        )
    counts = Counter(e.user_id for e in events)
    users = sorted(counts)
    COUNT_USER_EVENTS.run(conn, [{"user": u, "n": counts[u]} for u in users], pk=pk)
    processed = queued = 0
    if process and queue:
        enqueue_users(conn, pk, users)
        queued = len(users)
    elif process:
        processed = len(recommender.process(conn, pk, users))
    return Recorded(len(events), users, processed, queued)


@dataclass(frozen=True)
class HistoryRow:
    event_ts: int
    event_type: str
    asset_id: str
    asset_name: str | None
    event_labels: list[str]
    asset_labels: list[str]


USER_EXISTS = text("SELECT 1 FROM ah_users WHERE program_pk = :pk AND user_id = :user")
USER_EVENTS = text(
    "SELECT event_ts, event_type, asset_id, labels FROM ah_events "
    "WHERE program_pk = :pk AND user_id = :user ORDER BY event_ts DESC, id DESC LIMIT :n"
)


def require_user(conn: Connection, pk: int, user: str) -> None:
    if conn.execute(USER_EXISTS, {"pk": pk, "user": user}).first() is None:
        raise NotFound("User not found")


def user_history(conn: Connection, pk: int, user: str, limit: int) -> list[HistoryRow]:
    """The user's latest ``limit`` events, oldest first; asset names and labels as the catalogue
    has them now."""
    require_user(conn, pk, user)
    rows = list(conn.execute(USER_EVENTS, {"pk": pk, "user": user, "n": limit}))[::-1]
    cat = recommender.catalogue(conn, pk, {r.asset_id for r in rows})
    return [
        HistoryRow(
            r.event_ts,
            r.event_type,
            r.asset_id,
            cat.names.get(r.asset_id),
            json_list(r.labels),
            cat.labels.get(r.asset_id, []),
        )
        for r in rows
    ]


def rebase_user(conn: Connection, pk: int, user: str) -> int:
    """Fold the user's pending events and recompute the pool now; returns the user's events."""
    events = recommender.user_events(conn, pk, user)
    if events is None:
        raise NotFound("User not found")
    recommender.process(conn, pk, [user])
    return events


def recommend(
    conn: Connection, pk: int, user: str, limit: int, allow_repeats: bool
) -> tuple[int, recommender.Recommendations]:
    """The program's key (to queue a refresh of a stale pool) and the user's best actions."""
    found = recommender.recommend(conn, pk, user, limit, allow_repeats)
    if found is None:
        raise NotFound("User not found")
    return pk, found


def enqueue_users(conn: Connection, pk: int, users: Sequence[str]) -> None:
    """Put users on the durable queue of the background worker (kept if already there)."""
    ENQUEUE.run(conn, [{"user": u} for u in users], pk=pk, now=now_ms())
