"""The one settings object, read from PLEDGEFLOW_* environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pledgeflow.parameters import CHUNK_SIZE_MAX, CHUNK_SIZE_MIN


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / 'pledgeflow.db'}"


class Settings(BaseSettings):
    """Configuration of pledgeflow; every field is an environment variable `PLEDGEFLOW_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="PLEDGEFLOW_", extra="ignore")

    database_url: SecretStr = Field(
        default_factory=lambda: SecretStr(_default_database_url()),
        description="SQLAlchemy URL; PostgreSQL in production, an SQLite file by default.",
    )
    redis_url: SecretStr | None = Field(
        default=None, description="Redis for task results and locks; unset means local storage."
    )
    # Measured (README, Benchmarks): 10,000-row chunks amortize pandera's fixed cost per call
    # and keep an upload at ~100 chunk tasks per million rows; two chunk tasks at once keep
    # both cores busy (one parsing under the GIL, one waiting on PostgreSQL) at ~300 MB RSS.
    chunk_size: int = Field(
        default=10_000, ge=CHUNK_SIZE_MIN, le=CHUNK_SIZE_MAX, description="Rows per chunk."
    )
    task_concurrency: int = Field(
        default=2, ge=1, le=64, description="Chunk tasks running at once in one flow run."
    )
    db_pool_size: int = Field(
        default=0,
        ge=0,
        description="Connections one process may open; 0 derives it (chunk tasks + 1).",
    )
    write_path: Literal["auto", "portable"] = Field(
        default="auto",
        description="How a chunk's rows are loaded into the writers' temporary tables: `auto` "
        "by COPY on PostgreSQL (executemany elsewhere); `portable` by executemany everywhere. "
        "The statements that write the tables are the same either way.",
    )
    chunk_lease_seconds: int = Field(
        default=600, ge=1, description="A PROCESSING chunk older than this may be reclaimed."
    )
    mapping_wait_seconds: int = Field(
        default=3600,
        ge=1,
        description="How long a deployment run suspended for a mapping (unknown layout) can "
        "be resumed.",
    )
    transient_retry_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a transient database error (lost connection, restart, failover, "
        "too many clients, deadlock) is retried, with capped exponential backoff and jitter, "
        "before the chunk or step fails; data errors fail at once.",
    )
    redis_key_prefix: str = Field(
        default="pledgeflow", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of Redis keys."
    )
    result_ttl_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Expiry of task results kept in Redis."
    )
    row_cache_ttl_seconds: int = Field(
        default=86_400,
        ge=0,
        description="How long a chunk's mapped rows stay in Redis, so that importing the same "
        "content again skips mapping and validation; 0 turns the cache off.",
    )
    skip_unchanged_chunks: bool = Field(
        default=True,
        description="Complete a chunk without writing when an earlier completed import of the "
        "project wrote the same rows and nothing newer has written since (`chunk_skip`).",
    )
    max_file_bytes: int = Field(
        default=1 << 30, ge=1, description="Largest file `import` accepts, in bytes."
    )
    max_rows: int = Field(default=5_000_000, ge=1, description="Most data rows in one upload.")
    max_columns: int = Field(default=1000, ge=1, description="Most columns in a header row.")
    max_cell_chars: int = Field(default=131_072, ge=16, description="Longest cell, in characters.")
    dask_address: str | None = Field(
        default=None,
        description="Address of an existing Dask cluster to run chunk tasks on (tcp://host:8786);"
        " unset runs them on a thread pool in the flow's process.",
    )
    shop_fair_share: int = Field(
        default=1,
        ge=1,
        description="Unfinished runs a shop may have before the webhook queues its next "
        "uploads in the lower-priority bulk lane.",
    )
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC key of the webhook.")
    webhook_previous_secret: SecretStr | None = Field(
        default=None,
        description="The webhook's previous HMAC key, still accepted while the web app switches.",
    )
    webhook_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=64,
        description="Largest webhook body, in bytes; a larger one is refused (413) unread.",
    )

    @property
    def webhook_secrets(self) -> list[str]:
        """The keys a webhook request may be signed with: the current one, then the previous."""
        return [
            secret.get_secret_value()
            for secret in (self.webhook_secret, self.webhook_previous_secret)
            if secret is not None and secret.get_secret_value()
        ]

    import_root: Path | None = Field(
        default=None,
        description="The folder imports read files from: a path must resolve inside it. "
        "Required by runs of the import-file deployment; the CLI applies it when set.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        # SQLAlchemy has no `postgres` dialect (the name some hosts hand out).
        if value.get_secret_value().startswith(("postgres://", "postgres+")):
            raise ValueError(
                "postgres:// is not a scheme SQLAlchemy knows; write postgresql+psycopg://"
            )
        return value

    @property
    def pool_size(self) -> int:
        """Connections per process: one for each concurrent chunk task, one for the flow."""
        return self.db_pool_size or self.task_concurrency + 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once."""
    return Settings()
