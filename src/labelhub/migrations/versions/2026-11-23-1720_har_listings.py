"""HAR listings: folded artifact names, distinct registry labels and artifact counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def ordered(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length=length).with_variant(
        sa.String(length=length, collation="C"), "postgresql"
    )


def upgrade() -> None:
    op.add_column(
        "artifacts", sa.Column("name_folded", sa.Text(), server_default="", nullable=False)
    )
    op.add_column(
        "registries",
        sa.Column("artifact_count", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_table(
        "registry_labels",
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("label", ordered(255), nullable=False),
        sa.Column("label_folded", sa.Text(), nullable=False),
        sa.Column("artifacts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_registry_labels_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("registry_id", "label", name=op.f("pk_registry_labels")),
    )


def downgrade() -> None:
    op.drop_table("registry_labels")
    with op.batch_alter_table("registries") as batch:
        batch.drop_column("artifact_count")
    with op.batch_alter_table("artifacts") as batch:
        batch.drop_column("name_folded")
