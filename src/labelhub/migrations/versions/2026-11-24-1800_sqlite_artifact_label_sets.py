"""SQLite: each artifact's labels as one text of tokens under an FTS5 index, for filtered listings.

A listing filtered by two labels found the rarest label's artifacts and probed the other label's
index entries for each: at 1,000,000 artifacts, 10,000 probes (7 ms of the 15 ms statement) for
``label=prod&label=team-N`` (W6, bench/README.md). This is PostgreSQL's design (migration 0006)
on SQLite: ``artifacts.search_labels`` holds one token per label, ``r<registry id>x<hex of the
label's UTF-8>`` (so any label is one token of the ``ascii`` tokenizer, and one registry's
entries are a posting list of their own), and ``artifact_labels_fts`` indexes it; FTS5
intersects the posting lists, skipping through the long ones. ``har.store`` writes the text with
every label change, in the statement that touches the artifact; triggers keep the index in step
(an artifact is in it exactly when its text is not empty). ``artifact_labels`` stays the record.
PostgreSQL: nothing changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "artifact_labels_fts"
# An artifact is in the index exactly when its text is not empty.
_DROP = (
    f"INSERT INTO {FTS}({FTS}, rowid, search_labels) "
    "SELECT 'delete', old.id, old.search_labels WHERE old.search_labels <> ''"
)
_ADD = (
    f"INSERT INTO {FTS}(rowid, search_labels) "
    "SELECT new.id, new.search_labels WHERE new.search_labels <> ''"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("ALTER TABLE artifacts ADD COLUMN search_labels TEXT NOT NULL DEFAULT ''")
    op.execute(
        "UPDATE artifacts SET search_labels = found.labels FROM ("
        "SELECT artifact_id, group_concat('r' || registry_id || 'x' || hex(label), ' ') AS labels "
        "FROM artifact_labels GROUP BY artifact_id) AS found WHERE artifacts.id = found.artifact_id"
    )
    op.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5(search_labels, content='artifacts', "
        "content_rowid='id', tokenize='ascii', detail='none', columnsize=0)"
    )
    op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
    op.execute(f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON artifacts BEGIN {_ADD}; END")
    op.execute(f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON artifacts BEGIN {_DROP}; END")
    # Only a changed text touches the index (a label update that leaves the set as it was, or
    # one that only sets modifiedAt, does not).
    op.execute(
        f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF search_labels ON artifacts "
        f"WHEN old.search_labels <> new.search_labels BEGIN {_DROP}; {_ADD}; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {FTS}")
    op.execute("ALTER TABLE artifacts DROP COLUMN search_labels")
