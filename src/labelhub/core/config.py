"""Settings: one object, read from ``LABELHUB_*`` environment variables and handed around.

Nothing reads the environment at import time; ``Settings()`` is built by the CLI (or by a test)
and passed to ``create_app`` and to the database layer.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from labelhub.core.errors import Invalid

KEY_PATTERN = re.compile(r"^lh_[A-Za-z0-9_-]{43}$")

Dialect = Literal["sqlite", "postgresql"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELHUB_", extra="ignore")

    database_url: str = "sqlite:///./labelhub.db"
    admin_key: SecretStr | None = None
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1)
    # Seconds: connecting to the database, waiting for a lock, answering /readyz.
    db_timeout: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    # SQLite: how much of the database file each connection reads through one shared memory map
    # (PRAGMA mmap_size) rather than copying pages into its own small cache; 0 turns it off.
    sqlite_mmap_mb: int = Field(default=1024, ge=0, le=1 << 20)
    # SQLite: seconds the writer is idle after a write before it merges the search indexes'
    # segments (labelhub.core.tidy); 0 turns it off.
    sqlite_tidy_idle: float = Field(default=2.0, ge=0)
    # Most transactions the single writer folds into one commit.
    write_batch_max: int = Field(default=256, ge=1)
    # Threads that run read transactions (few: the work holds the GIL; see Database.read).
    read_threads: int = Field(default=4, ge=1, le=256)
    # The background worker that refreshes queued users' recommendations (one per process).
    worker: bool = True
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_batch: int = Field(default=16, ge=1, le=1000)
    log_level: str = "info"
    # Answer the busiest well-formed requests without entering FastAPI (labelhub.core.fast).
    fast_routes: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        database_dialect(value)
        return value


def database_dialect(url: str) -> Dialect:
    """The dialect a database URL names; ``Invalid`` for anything labelhub does not speak."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise Invalid(
                "LABELHUB_DATABASE_URL: an SQLite URL must name a file, e.g. sqlite:///./labelhub.db"
            )
        return "sqlite"
    if scheme in {"postgresql", "postgres", "postgresql+psycopg"}:
        return "postgresql"
    raise Invalid(
        f"LABELHUB_DATABASE_URL: unsupported scheme {scheme or url!r}; "
        "use sqlite:///PATH or postgresql://user@host:port/db"
    )


def check_admin_key(value: str) -> str:
    if not KEY_PATTERN.fullmatch(value):
        raise Invalid(
            "LABELHUB_ADMIN_KEY is not a labelhub key (lh_ followed by 43 url-safe characters)"
        )
    return value
