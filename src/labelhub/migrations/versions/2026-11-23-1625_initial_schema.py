"""Initial schema: programs, labels, assets, spaces, registries, artifacts, keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:25:49.088313
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


def ordered(length: int) -> sa.types.TypeEngine[str]:
    """Text that sorts byte-wise on both dialects (see labelhub.core.models.ordered_text)."""
    return sa.String(length=length).with_variant(
        sa.String(length=length, collation="C"), "postgresql"
    )


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_keys_secret_hash")),
    )
    op.create_table(
        "programs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("program_id", ordered(64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_programs")),
        sa.UniqueConstraint("program_id", name=op.f("uq_programs_program_id")),
    )
    op.create_table(
        "spaces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("path", ordered(800), nullable=False),
        sa.Column("account", ordered(255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spaces")),
        sa.UniqueConstraint("path", name=op.f("uq_spaces_path")),
    )
    op.create_index(op.f("ix_spaces_account"), "spaces", ["account"])

    op.create_table(
        "assets",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("asset_id", ordered(64), nullable=False),
        sa.Column("asset_name", sa.String(length=124), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_pk"],
            ["programs.id"],
            name=op.f("fk_assets_program_pk_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_pk", "asset_id", name=op.f("pk_assets")),
    )
    op.create_table(
        "key_grants",
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=1100), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_key_grants_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", "scope", name=op.f("pk_key_grants")),
    )
    op.create_table(
        "program_labels",
        sa.Column("program_pk", sa.Integer(), nullable=False),
        sa.Column("label", ordered(64), nullable=False),
        sa.Column("weight", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_pk"],
            ["programs.id"],
            name=op.f("fk_program_labels_program_pk_programs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("program_pk", "label", name=op.f("pk_program_labels")),
    )
    op.create_table(
        "registries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("space_id", sa.Integer(), nullable=False),
        sa.Column("account", ordered(255), nullable=False),
        sa.Column("identifier", ordered(255), nullable=False),
        sa.Column("package_type", sa.String(length=16), nullable=False),
        sa.Column("registry_type", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("modified_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name=op.f("fk_registries_space_id_spaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("account", "identifier", name=op.f("uq_registries_account_identifier")),
        sa.UniqueConstraint("uuid", name=op.f("uq_registries_uuid")),
    )
    op.create_index(op.f("ix_registries_space_id"), "registries", ["space_id"])

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("name", ordered(1024), nullable=False),
        sa.Column("artifact_type", sa.String(length=16), nullable=False),
        sa.Column("latest_version", sa.String(length=255), nullable=True),
        sa.Column("downloads_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("modified_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_artifacts_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint(
            "registry_id",
            "name",
            "artifact_type",
            name=op.f("uq_artifacts_registry_id_name_artifact_type"),
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_artifacts_uuid")),
    )
    op.create_index(
        op.f("ix_artifacts_registry_id_modified_at"), "artifacts", ["registry_id", "modified_at"]
    )

    op.create_table(
        "artifact_labels",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("label", ordered(255), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_artifact_labels_artifact_id_artifacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_artifact_labels_registry_id_registries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("artifact_id", "label", name=op.f("pk_artifact_labels")),
    )
    op.create_index(
        op.f("ix_artifact_labels_registry_id_label_artifact_id"),
        "artifact_labels",
        ["registry_id", "label", "artifact_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_artifact_labels_registry_id_label_artifact_id"), table_name="artifact_labels"
    )

    op.drop_table("artifact_labels")
    op.drop_index(op.f("ix_artifacts_registry_id_modified_at"), table_name="artifacts")

    op.drop_table("artifacts")
    op.drop_index(op.f("ix_registries_space_id"), table_name="registries")

    op.drop_table("registries")
    op.drop_table("program_labels")
    op.drop_table("key_grants")
    op.drop_table("assets")
    op.drop_index(op.f("ix_spaces_account"), table_name="spaces")

    op.drop_table("spaces")
    op.drop_table("programs")
    op.drop_table("api_keys")
