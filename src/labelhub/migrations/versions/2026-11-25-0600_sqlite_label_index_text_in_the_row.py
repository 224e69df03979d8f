"""SQLite: ``artifacts.search_labels`` holds the whole text of the label-set index's entry.

Since 0009 the index holds, for each artifact, its label tokens and a token per pair of them (or,
past ``PAIRED`` labels, a token of its own), and its triggers built the pairs in SQL from the
label tokens the row held, twice for a changed label set (the old entry to delete, the new one to
add). A batch of 32 label replacements (W2, each replacing an artifact's 5 labels) spent 1.45 ms
in those triggers; with the text built by labelhub (``har.store._indexed``) and copied as it is,
0.83 ms (bench/README.md). So the row now holds that text, and the triggers copy it.

Each row's text becomes what 0009's triggers gave the index for it, built by the same SQL, so
what the index holds is unchanged and each later delete gives it back exactly. Downgrading keeps
the label tokens alone (every token without a ``y``, the mark of a pair, and without the final
``m`` of the many-labels token: label tokens end in hex digits) and 0009's triggers.

PostgreSQL: nothing changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 06:00:00
"""

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "artifact_labels_fts"
PAIRED = 16  # as 0009


def _each(tokens: str) -> str:
    return f"""json_each('["' || replace({tokens}, ' ', '","') || '"]')"""


def indexed(tokens: str) -> str:
    """SQL: what 0009's triggers put in the index for the label tokens ``tokens`` (0009's own)."""
    pairs = (
        "SELECT ' ' || group_concat(a.value || 'y' || substr(b.value, instr(b.value, 'x') + 1), "
        f"' ') FROM {_each(tokens)} AS a JOIN {_each(tokens)} AS b ON a.value < b.value"
    )
    return (
        f"CASE WHEN length({tokens}) - length(replace({tokens}, ' ', '')) >= {PAIRED} "
        f"THEN {tokens} || ' ' || substr({tokens}, 1, instr({tokens}, 'x') - 1) || 'm' "
        f"ELSE {tokens} || coalesce(({pairs}), '') END"
    )


def label_tokens(text: str) -> str:
    """SQL: the label tokens of the index text ``text`` (in their order: they come first)."""
    return (
        f"(SELECT group_concat(value, ' ') FROM {_each(text)} "
        "WHERE instr(value, 'y') = 0 AND substr(value, -1) <> 'm')"
    )


def _drop_triggers() -> None:
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")


def _triggers(held: Callable[[str], str]) -> None:
    """The index's triggers, the entry of a row being ``held(<its search_labels>)`` (SQL)."""
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
    op.execute(
        f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF search_labels ON artifacts "
        f"WHEN old.search_labels <> new.search_labels BEGIN {drop}; {add}; END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _drop_triggers()  # the rewrite leaves the index as it is
    op.execute(
        f"UPDATE artifacts SET search_labels = {indexed('search_labels')} WHERE search_labels <> ''"
    )
    _triggers(lambda text: text)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _drop_triggers()
    op.execute(
        f"UPDATE artifacts SET search_labels = {label_tokens('search_labels')} "
        "WHERE search_labels <> ''"
    )
    _triggers(indexed)
