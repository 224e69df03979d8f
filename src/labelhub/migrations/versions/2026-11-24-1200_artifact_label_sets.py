"""PostgreSQL: each artifact's labels as one array under a GIN index, for filtered listings.

A listing filtered by two labels found the rarest label's artifacts and probed the others' index
entries for each: at 1M artifacts, 10,000 probes for a label on 1% of them, 40 ms (W6,
bench/README.md). GIN keeps one posting list per label and intersects them, skipping through the
long ones. ``artifacts.search_labels`` holds ``"<registry id>:<label>"`` for each of the
artifact's labels (so one registry's entries are a posting list of their own, whatever other
registries carry the same label); ``har.store`` writes it with every label change, in the same
statement that touches the artifact. ``artifact_labels`` stays the record. SQLite: nothing
changes (no GIN; its probes are cheaper).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE artifacts ADD COLUMN search_labels text[] NOT NULL DEFAULT '{}'")
    op.execute(
        "UPDATE artifacts SET search_labels = found.labels FROM ("
        "SELECT artifact_id, array_agg(registry_id || ':' || label ORDER BY label) AS labels "
        "FROM artifact_labels GROUP BY artifact_id) AS found WHERE artifacts.id = found.artifact_id"
    )
    op.execute("CREATE INDEX ix_artifacts_search_labels ON artifacts USING gin (search_labels)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_artifacts_search_labels")
    op.execute("ALTER TABLE artifacts DROP COLUMN IF EXISTS search_labels")
