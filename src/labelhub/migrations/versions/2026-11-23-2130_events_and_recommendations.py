"""ActionHub events and recommendations: events, users, the durable work queue, actions and
their shared statistics; programs gain a half-life and a catalogue change mark.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HALF_LIFE_MS = 30 * 24 * 3600 * 1000


def ordered(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length=length).with_variant(
        sa.String(length=length, collation="C"), "postgresql"
    )


def program_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["program_pk"],
        ["programs.id"],
        name=op.f(f"fk_{table}_program_pk_programs"),
        ondelete="CASCADE",
    )


def action_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        ["ah_actions.id"],
        name=op.f(f"fk_{table}_{column}_ah_actions"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(
            sa.Column(
                "half_life_ms", sa.BigInteger(), server_default=str(HALF_LIFE_MS), nullable=False
            )
        )
        batch.add_column(
            sa.Column("catalogue_changed_at", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.create_table(
        "ah_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", ordered(64), nullable=False),
        sa.Column("event_ts", sa.BigInteger(), nullable=False),
        sa.Column("event_type", ordered(64), nullable=False),
        sa.Column("asset_id", ordered(64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        program_fk("ah_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ah_events")),
    )
    op.create_index(
        "ix_ah_events_program_pk_user_id_event_ts_id",
        "ah_events",
        ["program_pk", "user_id", "event_ts", "id"],
    )
    op.create_table(
        "ah_users",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", ordered(64), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("folded_id", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("ref_ts", sa.BigInteger(), nullable=True),
        sa.Column("pool", sa.JSON(), nullable=True),
        sa.Column("pool_at", sa.BigInteger(), nullable=True),
        program_fk("ah_users"),
        sa.PrimaryKeyConstraint("program_pk", "user_id", name=op.f("pk_ah_users")),
    )
    op.create_index("ix_ah_users_program_pk_pending", "ah_users", ["program_pk", "pending"])
    op.create_table(
        "ah_user_queue",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", ordered(64), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=False),
        program_fk("ah_user_queue"),
        sa.PrimaryKeyConstraint("program_pk", "user_id", name=op.f("pk_ah_user_queue")),
    )
    op.create_index("ix_ah_user_queue_queued_at", "ah_user_queue", ["queued_at"])
    op.create_table(
        "ah_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("event_type", ordered(64), nullable=False),
        sa.Column("asset_id", ordered(64), nullable=False),
        sa.Column("users", sa.BigInteger(), nullable=False),
        sa.Column("pop_log", sa.Double(), nullable=False),
        program_fk("ah_actions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ah_actions")),
        sa.UniqueConstraint(
            "program_pk",
            "event_type",
            "asset_id",
            name=op.f("uq_ah_actions_program_pk_event_type_asset_id"),
        ),
    )
    op.create_index("ix_ah_actions_program_pk_pop_log", "ah_actions", ["program_pk", "pop_log"])
    op.create_table(
        "ah_user_actions",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", ordered(64), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("score_log", sa.Double(), nullable=False),
        action_fk("ah_user_actions", "action_id"),
        program_fk("ah_user_actions"),
        sa.PrimaryKeyConstraint(
            "program_pk", "user_id", "action_id", name=op.f("pk_ah_user_actions")
        ),
    )
    op.create_index(
        "ix_ah_user_actions_program_pk_user_id_score_log",
        "ah_user_actions",
        ["program_pk", "user_id", "score_log"],
    )
    op.create_table(
        "ah_cooccurrence",
        sa.Column("a_id", sa.Integer(), nullable=False),
        sa.Column("b_id", sa.Integer(), nullable=False),
        sa.Column("users", sa.BigInteger(), nullable=False),
        action_fk("ah_cooccurrence", "a_id"),
        action_fk("ah_cooccurrence", "b_id"),
        sa.PrimaryKeyConstraint("a_id", "b_id", name=op.f("pk_ah_cooccurrence")),
    )
    op.create_index(
        "ix_ah_cooccurrence_a_id_users_b_id", "ah_cooccurrence", ["a_id", "users", "b_id"]
    )


def downgrade() -> None:
    for table in (
        "ah_cooccurrence",
        "ah_user_actions",
        "ah_actions",
        "ah_user_queue",
        "ah_users",
        "ah_events",
    ):
        op.drop_table(table)
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("catalogue_changed_at")
        batch.drop_column("half_life_ms")
