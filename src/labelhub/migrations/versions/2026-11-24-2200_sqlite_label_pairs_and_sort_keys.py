"""SQLite: the label-set index also holds each pair of an artifact's labels as one token, and
the artifacts' sort keys get an index of their own.

A listing filtered by two labels asked FTS5 for the artifacts holding both label tokens, and
FTS5 intersects their posting lists by reading them: ``label=prod&label=team-N`` at 1,000,000
artifacts decoded prod's 333,334 entries to find 3,300 (2.7 ms of the statement's 7.7; W6,
bench/README.md). Now the index also holds, for an artifact of 2 to ``PAIRED`` labels, one token
per pair of them: ``r<registry id>x<hex of the first label>y<hex of the second>``, the two
label tokens (``har.store._search_label``) in text order, the second without its
``r<registry id>x``. A filter of two labels reads that pair's posting list alone (0.2 ms); more
labels read a pair per two of them. An artifact of more than ``PAIRED`` labels (the pairs grow
with their square; an artifact may hold 1,000) holds a token ``r<registry id>m`` instead, and the
filters also ask for those artifacts by their label tokens, as before.

The pairs are written by the index's triggers from ``artifacts.search_labels`` (still the label
tokens alone, the record of what the index holds): they are not stored in the row. The index is
contentless, as FTS5 reads an external content table back in a statement that cannot use
``json_each``; the triggers give it the old tokens to delete. They cost a write that changes an
artifact's label set about 35 us in SQL; one that leaves it as it was (W2) nothing.

The matches are then sorted by their sort key, which was read from each one's row (1 us a row,
3,300 of them); ``ix_artifacts_id_modified_at`` holds ``lastModified`` by id in far fewer pages
(that sort 4.0 -> 3.1 ms). It is one more index entry to move with each ``modifiedAt``.

PostgreSQL: nothing changes. Its GIN index takes a new entry for every element of the array on
every update of the row, pairs included, and its matches are read from the table whatever index
finds them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 22:00:00
"""

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "artifact_labels_fts"
SORT_KEYS = "ix_artifacts_id_modified_at"
# har.store.PAIRED: artifacts of up to this many labels hold their pairs.
PAIRED = 16


def indexed(tokens: str) -> str:
    """SQL: what the index holds for an artifact whose label tokens are the text ``tokens``."""
    each = f"""json_each('["' || replace({tokens}, ' ', '","') || '"]')"""
    pairs = (
        "SELECT ' ' || group_concat(a.value || 'y' || substr(b.value, instr(b.value, 'x') + 1), "
        f"' ') FROM {each} AS a JOIN {each} AS b ON a.value < b.value"
    )
    return (
        f"CASE WHEN length({tokens}) - length(replace({tokens}, ' ', '')) >= {PAIRED} "
        f"THEN {tokens} || ' ' || substr({tokens}, 1, instr({tokens}, 'x') - 1) || 'm' "
        f"ELSE {tokens} || coalesce(({pairs}), '') END"
    )


def _drop_index() -> None:
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {FTS}")


def _triggers(held: Callable[[str], str]) -> None:
    """The triggers that keep the index in step with ``artifacts.search_labels``, which the index
    holds as ``held(<its label tokens>)`` (SQL). An artifact is in the index exactly when it has
    labels."""
    drop = (
        f"INSERT INTO {FTS}({FTS}, rowid, search_labels) "
        f"SELECT 'delete', old.id, {held('old.search_labels')} WHERE old.search_labels <> ''"
    )
    add = (
        f"INSERT INTO {FTS}(rowid, search_labels) "
        f"SELECT new.id, {held('new.search_labels')} WHERE new.search_labels <> ''"
    )
    op.execute(f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON artifacts BEGIN {add}; END")
    op.execute(f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON artifacts BEGIN {drop}; END")
    # Only a changed label set touches the index (a label update that leaves the set as it was,
    # or one that only sets modifiedAt, does not).
    op.execute(
        f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF search_labels ON artifacts "
        f"WHEN old.search_labels <> new.search_labels BEGIN {drop}; {add}; END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _drop_index()
    op.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(search_labels, content='', tokenize='ascii', "
        "detail='none', columnsize=0)"
    )
    op.execute(
        f"INSERT INTO {FTS}(rowid, search_labels) "
        f"SELECT id, {indexed('search_labels')} FROM artifacts WHERE search_labels <> ''"
    )
    _triggers(indexed)
    op.execute(f"CREATE INDEX {SORT_KEYS} ON artifacts (id, modified_at)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"DROP INDEX IF EXISTS {SORT_KEYS}")
    _drop_index()  # back to 0008's index of the label tokens, read from the rows
    op.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(search_labels, content='artifacts', "
        "content_rowid='id', tokenize='ascii', detail='none', columnsize=0)"
    )
    op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
    _triggers(lambda tokens: tokens)
