"""The one storage core: every table both APIs use.

Timestamps are integer Unix epoch milliseconds (UTC) on both dialects: HAR answers in epoch
milliseconds, and integers sort and compare the same way on SQLite and PostgreSQL.
Substring search has dialect-specific indexes that the models do not declare (the migrations
create them, ``SEARCH_OBJECTS`` names them): SQLite FTS5 ``trigram`` tables kept by triggers, and
PostgreSQL ``pg_trgm`` GIN indexes. Label filters of artifact listings also have one: each
artifact's labels in ``artifacts.search_labels``, an array under a GIN index on PostgreSQL, a
text of tokens under an FTS5 index on SQLite.

Text that is sorted on the wire uses byte-wise order on both dialects (SQLite's BINARY collation,
PostgreSQL's "C" collation): for UTF-8 that is code-point order, the order of Python's ``sorted``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ms: int) -> datetime:
    """An epoch-milliseconds timestamp as an aware UTC datetime (exact, no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_epoch_ms(value: datetime) -> int:
    """An aware datetime as epoch milliseconds (sub-millisecond parts are dropped)."""
    return (value - EPOCH) // timedelta(milliseconds=1)


def json_list(value: Any) -> list[Any]:
    """A JSON array column read through ``text()``: a string on SQLite, already a list on
    PostgreSQL; NULL reads as an empty list."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


# 30 days: the default half-life of a program's events in recommendations.
HALF_LIFE_MS = 30 * 24 * 3600 * 1000

# Names of the search structures the migrations create outside the models (see the docstring).
SEARCH_OBJECTS = (
    "program_labels_fts",
    "assets_fts",
    "ix_program_labels_trgm",
    "ix_assets_trgm",
    # artifacts.search_labels and its index: PostgreSQL's GIN (migration 0006), SQLite's FTS5
    # (0008, with its triggers); har.store
    "search_labels",
    "ix_artifacts_search_labels",
    "artifact_labels_fts",
    # SQLite: the sort key of each artifact found in that index, read without its row (0009)
    "ix_artifacts_id_modified_at",
)


def is_search_object(name: str | None) -> bool:
    """True for the search structures (and FTS5's shadow tables) that the models leave out."""
    return name is not None and name.startswith(SEARCH_OBJECTS)


def ordered_text(length: int | None = None) -> String:
    """A string column that sorts byte-wise on both dialects."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# --- ActionHub ------------------------------------------------------------------------------


class Program(Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_id: Mapped[str] = mapped_column(ordered_text(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # Kept by every write that adds or removes labels/assets, so listings need no COUNT(*).
    label_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    asset_count: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Recommendations: the half-life of a past action's weight (ms), and when a label weight or
    # an asset last changed (users' candidate pools older than that are refreshed when read).
    half_life_ms: Mapped[int] = mapped_column(BigInteger, server_default=str(HALF_LIFE_MS))
    catalogue_changed_at: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ProgramLabel(Base):
    __tablename__ = "program_labels"

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    # str.casefold() of the label, computed in Python so both dialects search the same text.
    label_folded: Mapped[str] = mapped_column(Text, server_default="")
    weight: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Asset(Base):
    __tablename__ = "assets"

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    asset_name: Mapped[str | None] = mapped_column(String(124))
    # The asset's label names, as sent (a JSON array of strings).
    labels: Mapped[list[str]] = mapped_column(JSON)
    # Folded asset_id, asset_name and labels joined by U+001F (which none of them may contain).
    search_text: Mapped[str] = mapped_column(Text, server_default="")
    updated_at: Mapped[int] = mapped_column(BigInteger)


class PageFence(Base):
    """A key-ordered chunk of a program's label names (kind 0) or asset ids (kind 1): its first
    key (the lowest chunk's is "") and how many keys it holds, so a deep page is found from the
    counts rather than by skipping its offset (``actionhub.fences``)."""

    __tablename__ = "page_fences"

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    fence: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    key_count: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """One user event, as sent; append-only."""

    __tablename__ = "ah_events"
    __table_args__ = (
        Index(
            "ix_ah_events_program_pk_user_id_event_ts_id", "program_pk", "user_id", "event_ts", "id"
        ),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    program_pk: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ordered_text(64))
    event_ts: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(ordered_text(64))
    asset_id: Mapped[str] = mapped_column(ordered_text(64))
    labels: Mapped[list[str]] = mapped_column(JSON)


class EventUser(Base):
    """A user who has events: what has been folded into the statistics, and the user's
    precomputed candidate pool (``pool``: ``[[action id, label-free score], ...]``)."""

    __tablename__ = "ah_users"
    __table_args__ = (Index("ix_ah_users_program_pk_pending", "program_pk", "pending"),)

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger)
    # Events recorded but not yet folded into the statistics.
    pending: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The id of the last event folded into the statistics (events after it are pending).
    folded_id: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # The latest timestamp among folded events: "now" for the user's base weights.
    ref_ts: Mapped[int | None] = mapped_column(BigInteger)
    pool: Mapped[list[list[float]] | None] = mapped_column(JSON)
    pool_at: Mapped[int | None] = mapped_column(BigInteger)


class UserQueue(Base):
    """Users waiting for the background worker (durable: a dead process loses nothing)."""

    __tablename__ = "ah_user_queue"
    __table_args__ = (Index("ix_ah_user_queue_queued_at", "queued_at"),)

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    queued_at: Mapped[int] = mapped_column(BigInteger)


class Action(Base):
    """An (event_type, asset_id) pair of a program, with the statistics shared by its users."""

    __tablename__ = "ah_actions"
    __table_args__ = (
        UniqueConstraint("program_pk", "event_type", "asset_id"),
        Index("ix_ah_actions_program_pk_pop_log", "program_pk", "pop_log"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    program_pk: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(ordered_text(64))
    asset_id: Mapped[str] = mapped_column(ordered_text(64))
    # Distinct users who took it.
    users: Mapped[int] = mapped_column(BigInteger)
    # log2 of the sum over its events of 2^(t / half-life): recency-weighted popularity.
    pop_log: Mapped[float] = mapped_column(Double)


class UserAction(Base):
    """One user's history of one action: event count and log2 of the decayed sum."""

    __tablename__ = "ah_user_actions"
    __table_args__ = (
        Index(
            "ix_ah_user_actions_program_pk_user_id_score_log", "program_pk", "user_id", "score_log"
        ),
    )

    program_pk: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ordered_text(64), primary_key=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("ah_actions.id", ondelete="CASCADE"), primary_key=True
    )
    events: Mapped[int] = mapped_column(BigInteger)
    score_log: Mapped[float] = mapped_column(Double)


class CoOccurrence(Base):
    """How many users took action ``b`` for the first time after having taken ``a``."""

    __tablename__ = "ah_cooccurrence"
    __table_args__ = (Index("ix_ah_cooccurrence_a_id_users_b_id", "a_id", "users", "b_id"),)

    a_id: Mapped[int] = mapped_column(
        ForeignKey("ah_actions.id", ondelete="CASCADE"), primary_key=True
    )
    b_id: Mapped[int] = mapped_column(
        ForeignKey("ah_actions.id", ondelete="CASCADE"), primary_key=True
    )
    users: Mapped[int] = mapped_column(BigInteger)


# --- HAR ------------------------------------------------------------------------------------


class Space(Base):
    __tablename__ = "spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "acct", "acct/org" or "acct/org/proj".
    path: Mapped[str] = mapped_column(ordered_text(800), unique=True)
    account: Mapped[str] = mapped_column(ordered_text(255), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Registry(Base):
    __tablename__ = "registries"
    __table_args__ = (UniqueConstraint("account", "identifier"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    space_id: Mapped[int] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    account: Mapped[str] = mapped_column(ordered_text(255))
    identifier: Mapped[str] = mapped_column(ordered_text(255))
    package_type: Mapped[str] = mapped_column(String(16))
    registry_type: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    labels: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    modified_at: Mapped[int] = mapped_column(BigInteger)
    # Kept by artifact registration and deletion, so an unfiltered listing needs no COUNT(*).
    artifact_count: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        # artifact_type is "" outside HUGGINGFACE registries, so the triple is a real key.
        UniqueConstraint("registry_id", "name", "artifact_type"),
        Index("ix_artifacts_registry_id_modified_at", "registry_id", "modified_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(ordered_text(1024))
    # str.casefold() of the name, for search_term (computed in Python, as for labels).
    name_folded: Mapped[str] = mapped_column(Text, server_default="")
    artifact_type: Mapped[str] = mapped_column(String(16))
    latest_version: Mapped[str | None] = mapped_column(String(255))
    downloads_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    modified_at: Mapped[int] = mapped_column(BigInteger)


class ArtifactLabel(Base):
    """One row per (artifact, label): "which artifacts carry X" is an index lookup."""

    __tablename__ = "artifact_labels"
    __table_args__ = (
        Index(
            "ix_artifact_labels_registry_id_label_artifact_id",
            "registry_id",
            "label",
            "artifact_id",
        ),
    )

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(ordered_text(255), primary_key=True)
    # Denormalised from the artifact so registry-wide label lookups need no join.
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))


class RegistryLabel(Base):
    """The distinct labels of a registry with how many artifacts carry each: the label listing
    pages through this table, not through every artifact's labels."""

    __tablename__ = "registry_labels"
    # SQLite: the rows themselves in key order (migration 0012), so a registry's labels are one
    # range of the table.
    __table_args__ = {"sqlite_with_rowid": False}

    registry_id: Mapped[int] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(ordered_text(255), primary_key=True)
    label_folded: Mapped[str] = mapped_column(Text)
    artifacts: Mapped[int] = mapped_column(BigInteger)


# --- Keys -----------------------------------------------------------------------------------


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    # Hex SHA-256 of the secret; the secret itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class KeyGrant(Base):
    __tablename__ = "key_grants"

    key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    # "admin", "program:<program-id>" or "space:<account>[/<org>[/<project>]]".
    scope: Mapped[str] = mapped_column(String(1100), primary_key=True)
    role: Mapped[str] = mapped_column(String(8))
