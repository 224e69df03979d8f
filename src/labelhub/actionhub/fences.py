"""Deep pages of a program's labels and assets, found without skipping their offset.

A page at offset N of ``GET /labels`` (or ``GET /assets``) walked N entries of the key index to
reach its first row: at 1,000,000 labels the middle page took 11 ms of SQL on SQLite and 22 ms on
PostgreSQL, against 0.02 ms for the first (bench/README.md, W5). ``page_fences`` cuts each
program's keys (label names, asset ids) into key-ordered chunks. A chunk's row holds its first
key, the fence (the lowest chunk's is "", below every key), and how many keys it holds. A
deep page adds up the counts to its offset (about 500 rows at 1,000,000 keys) and skips less
than one chunk of the index: 0.4 ms at any depth.

Every write that adds or removes keys keeps the counts, in its own transaction (``added``,
``removed``). A chunk that grows past ``SPLIT_AT`` keys is cut again into chunks of ``CHUNK``
from its keys; one left empty is dropped. Deleting the program cascades. Writes are serialized
(the single writer, and on PostgreSQL its lock), so no two transactions move the counts at once.
Chunks that do not add up to the program's kept count are not used (``page_start``) and are cut
again when the schema is next brought to head (``recount``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Connection, text

# Keys per chunk when a chunk is cut, and the size past which it is cut: a deep page skips at
# most SPLIT_AT index entries after summing about total / CHUNK chunk counts.
CHUNK = 2048
SPLIT_AT = 2 * CHUNK
# Pages at this offset or deeper are found from the counts. Summing them costs about the same at
# any depth (1,000,000 labels, about 500 chunks: 0.44 ms on SQLite, 0.10 ms on PostgreSQL), a skip
# grows with the offset (8,192: 0.15 / 0.37 ms; 32,768: 0.55 / 1.19 ms); nearer pages skip.
FROM_OFFSET = 4 * CHUNK
# The tables whose pages are fenced: their key column and their kind in page_fences.
KEYS = {"program_labels": ("label", 0), "assets": ("asset_id", 1)}
# Each kind's kept count, the column of ``programs`` its chunks must add up to.
KEPT = {0: "label_count", 1: "asset_count"}

_SOURCE = {
    "sqlite": "json_each(:keys) AS j",
    "postgresql": "json_array_elements_text(CAST(:keys AS json)) AS j(value)",
}
# The chunk a key falls in: the greatest fence at or below it ("" when there is none yet).
_CHUNK_OF = (
    "coalesce((SELECT max(f.fence) FROM page_fences f WHERE f.program_pk = :pk "
    "AND f.kind = :kind AND f.fence <= {key}), '')"
)
_ADD = {
    dialect: text(
        f"WITH chunked AS (SELECT {_CHUNK_OF.format(key='j.value')} AS fence FROM {source}) "
        "INSERT INTO page_fences (program_pk, kind, fence, key_count) "
        "SELECT :pk, :kind, fence, count(*) FROM chunked WHERE true GROUP BY fence "
        "ON CONFLICT (program_pk, kind, fence) "
        "DO UPDATE SET key_count = page_fences.key_count + excluded.key_count "
        "RETURNING fence, key_count"
    )
    for dialect, source in _SOURCE.items()
}
_REMOVE = text(
    "UPDATE page_fences SET key_count = key_count - 1 WHERE program_pk = :pk AND kind = :kind "
    f"AND fence = {_CHUNK_OF.format(key=':key')} RETURNING fence, key_count"
)
_DROP = text("DELETE FROM page_fences WHERE program_pk = :pk AND kind = :kind AND fence = :fence")
_DROP_ALL = text("DELETE FROM page_fences WHERE program_pk = :pk AND kind = :kind")
_NEXT_FENCE = text(
    "SELECT min(fence) FROM page_fences WHERE program_pk = :pk AND kind = :kind AND fence > :fence"
)


def added(conn: Connection, table: str, pk: int, keys: Sequence[str]) -> None:
    """Count ``keys``, new in ``table`` for program ``pk`` in this transaction, in their chunks."""
    if not keys:
        return
    kind = KEYS[table][1]
    params = {"pk": pk, "kind": kind, "keys": json.dumps(list(keys), ensure_ascii=False)}
    for fence, count in conn.execute(_ADD[conn.dialect.name], params).all():
        if count > SPLIT_AT:
            _split(conn, table, pk, fence)


def removed(conn: Connection, table: str, pk: int, key: str) -> None:
    """Uncount ``key``, deleted from ``table`` for program ``pk`` in this transaction."""
    kind = KEYS[table][1]
    for fence, count in conn.execute(_REMOVE, {"pk": pk, "kind": kind, "key": key}).all():
        if count <= 0:
            conn.execute(_DROP, {"pk": pk, "kind": kind, "fence": fence})


def _split(conn: Connection, table: str, pk: int, fence: str) -> None:
    """Cut the chunk starting at ``fence`` again, up to the next fence."""
    bound = conn.execute(_NEXT_FENCE, {"pk": pk, "kind": KEYS[table][1], "fence": fence}).scalar()
    _cut(conn, table, pk, fence, bound)


def _cut(conn: Connection, table: str, pk: int, fence: str, bound: str | None) -> None:
    """Count the keys from ``fence`` up to ``bound`` (None: to the last) in chunks of ``CHUNK``,
    in key order: the first keeps ``fence``, each other starts at its first key (migration 0007
    cut every program's keys the same way)."""
    key, kind = KEYS[table]
    below = f" AND {key} < :bound" if bound is not None else ""
    conn.execute(
        text(
            "INSERT INTO page_fences (program_pk, kind, fence, key_count) "
            f"SELECT :pk, {kind}, CASE WHEN chunk = 0 THEN :fence ELSE min({key}) END, count(*) "
            f"FROM (SELECT {key}, (row_number() OVER (ORDER BY {key}) - 1) / :chunk AS chunk "
            f"FROM {table} WHERE program_pk = :pk AND {key} >= :fence{below}) AS numbered "
            "WHERE true GROUP BY chunk "
            "ON CONFLICT (program_pk, kind, fence) DO UPDATE SET key_count = excluded.key_count"
        ),
        {"pk": pk, "fence": fence, "bound": bound, "chunk": CHUNK},
    )


_DRIFTED = text(
    " UNION ALL ".join(
        f"SELECT p.id, {kind} AS kind FROM programs p WHERE p.{kept} <> coalesce(("
        f"SELECT sum(f.key_count) FROM page_fences f WHERE f.program_pk = p.id AND f.kind = {kind}"
        "), 0)"
        for kind, kept in KEPT.items()
    )
)


def recount(conn: Connection) -> int:
    """Cut again the chunks of every program whose chunks do not add up to its kept count (keys
    written by a labelhub older than migration 0007); how many were cut. Run where the schema is
    brought to head (``labelhub serve``, ``labelhub db upgrade``), in a write transaction."""
    tables = {kind: table for table, (_, kind) in KEYS.items()}
    drifted = conn.execute(_DRIFTED).all()
    for pk, kind in drifted:
        conn.execute(_DROP_ALL, {"pk": pk, "kind": kind})
        _cut(conn, tables[kind], pk, "", None)
    return len(drifted)


def page_start(table: str) -> tuple[str, str]:
    """A ``WITH`` clause and the SQL for the first key of the page at ``:offset`` of program
    ``:pk``'s ``table`` keys: the chunk holding that offset, by the running count of the chunks,
    then the rest of the way in the key index. The caller's statement reads the counts and the
    rows in one snapshot.

    The chunks are trusted only when they add up to ``:total``, the program's kept count (a
    writer that does not keep them, such as a labelhub older than migration 0007, leaves them
    short): otherwise the start is NULL, the statement finds no row, and the caller skips."""
    key, kind = KEYS[table]
    chosen = (
        "chosen AS (SELECT fence, before FROM (SELECT fence, key_count, "
        "sum(key_count) OVER (ORDER BY fence) - key_count AS before, "
        "sum(key_count) OVER () AS counted "
        f"FROM page_fences WHERE program_pk = :pk AND kind = {kind}) AS w "
        "WHERE counted = :total AND before + key_count > :offset ORDER BY fence LIMIT 1)"
    )
    start = (
        f"(SELECT {key} FROM {table} WHERE program_pk = :pk "
        f"AND {key} >= (SELECT fence FROM chosen) ORDER BY {key} "
        "LIMIT 1 OFFSET coalesce((SELECT CAST(:offset - before AS BIGINT) FROM chosen), 0))"
    )
    return f"WITH {chosen} ", start
