"""One settings object for every role; each field reads a PREPSHELF_* environment variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("prepshelf"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PREPSHELF_", extra="ignore")

    # Where things live.
    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Blobs, keys, embedded DB"
    )
    database_url: str | None = Field(
        default=None, description="External PostgreSQL with pgvector; unset = embedded server"
    )

    # Front desk.
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated accepted API keys"
    )
    max_upload_bytes: int = 512 * 1024 * 1024
    max_json_body_bytes: int = 1024 * 1024
    poll_after_ms: int = 500
    db_pool_size: int = 10

    # Workers.
    workers: int = 1
    worker_nice: int = 10
    torch_threads: int | None = None
    embed_batch_size: int = 32
    model_dir: Path | None = Field(default=None, description="sentence-transformers model dir")
    model_id: str = "all-MiniLM-L6-v2"
    parse_timeout_s: float = 300.0
    parse_memory_limit_mb: int = 3072
    max_attempts: int = 5
    retry_base_delay_s: float = 2.0
    retry_max_delay_s: float = 300.0
    heartbeat_interval_s: float = 5.0
    stall_timeout_s: float = 30.0
    sweep_interval_s: int = 10
    shutdown_grace_s: float = 0.5

    # --- remote embedder settings (job-design issue) ---
    # --- idempotency settings (job-design issue) ---
    # --- events, metrics and logging settings (visibility issue) ---
    # --- archive and hostile-input settings (hostile-input issue) ---
    # --- projects and keys settings (hostile-input issue) ---
    # --- embeddings and batches settings (bulk-embedding issue) ---
    # --- blob storage, search and maintenance settings (scale issue) ---

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "postgres"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
