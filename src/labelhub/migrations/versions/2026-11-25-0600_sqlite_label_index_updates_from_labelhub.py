"""SQLite: a changed label set reaches the label-set index from labelhub, not from a trigger.

Since 0009 the index holds, for each artifact, its label tokens and a token per pair of them (or,
past ``PAIRED`` labels, a token of its own), and the update trigger built the pairs in SQL
(``json_each``), twice for each changed label set: the old entry to delete, the new one to add.
A batch of 32 label replacements (W2, each replacing an artifact's 5 labels) spent 1.45 ms in
that trigger; with the entries built by labelhub (``har.store._indexed``) and written as they
are, 0.83 ms (bench/README.md). Holding the whole entry in the row instead (the pairs too) was
tried: a row of 5 labels grew from 90 to 459 bytes. So the update trigger goes, and the label
writes of ``har.store`` (the only writer of ``search_labels``) delete and add the entries
themselves. Inserts and deletes of artifacts keep their triggers.

Nothing is rewritten: the index and the rows stay as they are. Stop any older labelhub first: a
label update it made would change the row and leave the index as it was.

PostgreSQL: nothing changes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "artifact_labels_fts"
PAIRED = 16  # as 0009


def indexed(tokens: str) -> str:
    """SQL: what 0009's triggers put in the index for the label tokens ``tokens`` (0009's own)."""
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {FTS}_au")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    drop = (
        f"INSERT INTO {FTS}({FTS}, rowid, search_labels) "
        f"SELECT 'delete', old.id, {indexed('old.search_labels')} WHERE old.search_labels <> ''"
    )
    add = (
        f"INSERT INTO {FTS}(rowid, search_labels) "
        f"SELECT new.id, {indexed('new.search_labels')} WHERE new.search_labels <> ''"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF search_labels ON artifacts "
        f"WHEN old.search_labels <> new.search_labels BEGIN {drop}; {add}; END"
    )
