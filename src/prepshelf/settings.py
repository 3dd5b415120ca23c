"""One settings object for every role; each field reads a PREPSHELF_* environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prepshelf.settings_work import OcrSettings, UpstreamSettings


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("prepshelf"))


class Settings(BaseSettings, OcrSettings, UpstreamSettings):
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
    parse_inline_max_bytes: int = Field(
        default=65536,
        ge=0,
        description="Plain-text files (text, Markdown, CSV, JSON) up to this size are parsed "
        "in the worker itself instead of the sandbox child (0: always the sandbox)",
    )
    max_attempts: int = 5
    retry_base_delay_s: float = 2.0
    retry_max_delay_s: float = 300.0
    heartbeat_interval_s: float = 5.0
    stall_timeout_s: float = 30.0
    sweep_interval_s: int = 10
    shutdown_grace_s: float = 0.5

    # --- remote embedder: an OpenAI-compatible embeddings API instead of the packaged model ---
    embedder: Literal["local", "remote"] = Field(
        default="local",
        description="local = packaged model; remote = OpenAI-compatible API; "
        "fake = shorthand for local with PREPSHELF_LOCAL_BACKEND=fake",
    )
    remote_embed_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API, e.g. http://host/v1"
    )
    remote_embed_model: str = "text-embedding-3-small"
    remote_embed_api_key: SecretStr | None = None
    remote_embed_dimensions: int | None = Field(default=None, gt=0)
    remote_embed_max_input_tokens: int = Field(
        default=510, gt=0, description="Chunk window (counted with the local tokenizer)"
    )
    remote_embed_batch_size: int = Field(default=64, gt=0, description="Texts per vendor call")
    remote_embed_concurrency: int = Field(default=4, gt=0)
    remote_embed_timeout_s: float = Field(default=60.0, gt=0)
    remote_embed_retries: int = Field(default=5, ge=0, description="Retries per vendor call")
    remote_embed_backoff_base_s: float = 0.5
    remote_embed_backoff_max_s: float = 30.0
    # --- idempotency keys ---
    idempotency_ttl_s: float = Field(
        default=24 * 3600, gt=0, description="How long an Idempotency-Key is remembered"
    )
    idempotency_wait_s: float = Field(
        default=30.0, description="How long a duplicate waits for the first request to finish"
    )
    # --- events, metrics and logs ---
    log_level: str = Field(
        default="INFO", description="Root log level (DEBUG shows library chatter)"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json = one object per line with job/file/store/batch ids"
    )
    metrics_dir: Path | None = Field(
        default=None, description="prometheus multiprocess dir; unset = <data_dir>/metrics"
    )
    audit_enabled: bool = Field(default=True, description="Record mutating API calls")
    events_keepalive_s: float = Field(
        default=15.0, gt=0, description="Seconds between SSE keep-alive comments"
    )
    events_retention_s: float = Field(
        default=7 * 24 * 3600, gt=0, description="How long job events are kept"
    )
    # --- archives and hostile input ---
    archive_max_total_bytes: int = Field(
        default=1024**3, gt=0, description="Uncompressed bytes one archive (with nested) may hold"
    )
    archive_max_members: int = Field(
        default=10_000, gt=0, description="Members one archive (with nested) may hold"
    )
    archive_max_ratio: float = Field(
        default=200.0, gt=1, description="Compression ratio a member may reach (bomb guard)"
    )
    archive_ratio_floor_bytes: int = Field(
        default=4 * 1024 * 1024, ge=0, description="Ratio is checked only past this many bytes"
    )
    archive_max_depth: int = Field(
        default=3, ge=0, description="Archives inside archives expanded at most this deep"
    )
    archive_max_name_component: int = Field(default=255, gt=0, description="Bytes per name part")
    archive_max_name_bytes: int = Field(default=1024, gt=0, description="Bytes per member path")
    # --- projects and keys ---
    key_cache_ttl_s: float = Field(
        default=2.0, ge=0, description="How long the API trusts a resolved key (revocation lag)"
    )
    # --- /v1/embeddings and /v1/batches ---
    embeddings_max_inputs: int = Field(
        default=2048,
        gt=0,
        description="Inputs per /v1/embeddings call (OpenAI's 2,048); more → 400",
    )
    embeddings_max_tokens: int = Field(
        default=300_000,
        gt=0,
        description="Tokens per /v1/embeddings call or batch line (OpenAI's 300,000); more → 400",
    )
    batch_slice_lines: int = Field(default=256, gt=0, description="Batch lines per checkpoint")
    batch_slice_inputs: int = Field(default=2048, gt=0, description="Inputs per batch slice")
    batch_completion_window_s: float = Field(
        default=24 * 3600, gt=0, description="How long the '24h' completion window lasts"
    )
    batch_turn_s: float = Field(
        default=2.0,
        ge=0,
        description="Fair share: after this long a batch gives its worker to a waiting batch "
        "at its next slice boundary (0 = at every slice)",
    )
    upstream_batch_concurrency: int = Field(
        default=16,
        gt=0,
        le=256,
        description="Requests of one upstream batch slice in flight at once (each upstream's "
        "max_concurrent still holds across all workers)",
    )
    upstream_max_wait_s: float = Field(
        default=30.0,
        gt=0,
        description="A batch line or a transcription segment waits this long at most for its "
        "turn at the upstream's limits; past it the job goes back on the shelf until then",
    )
    # --- blob storage, search and maintenance ---
    blob_url: str | None = Field(
        default=None, description="s3://bucket/prefix for S3-compatible storage; unset = data dir"
    )
    s3_endpoint_url: str | None = Field(default=None, description="e.g. http://minio:9000")
    s3_region: str | None = None
    s3_access_key_id: str | None = Field(default=None, description="unset = boto3's chain")
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_part_size_mb: int = Field(default=8, ge=5, le=512, description="Multipart part size")
    search_hybrid_default: bool = Field(
        default=False, description="Fuse full-text with vector search when a request says nothing"
    )
    maintenance_interval_s: int = Field(
        default=300, ge=60, description="How often maintenance runs (once per cluster), ≥ 60"
    )
    orphan_blob_grace_s: float = Field(
        default=3600, ge=0, description="Blobs without a file row older than this are deleted"
    )
    audit_retention_s: float = Field(default=90 * 24 * 3600, gt=0)
    embedding_cache_max_age_days: int = Field(
        default=30, ge=1, description="Embedding cache entries older than this are dropped"
    )
    # --- ingest throughput ---
    ingest_concurrency: int = Field(
        default=4,
        ge=1,
        description="Files one worker process works on at once: while one is in the model, "
        "others parse, write, or wait to share its next call (small files share batches)",
    )
    small_file_max_bytes: int = Field(
        default=65536,
        ge=0,
        description="Files up to this size are ingested in a lane of their own, so they never "
        "wait for a slot held by large files (0: one lane for every file)",
    )
    small_ingest_concurrency: int = Field(
        default=16,
        ge=1,
        description="Small files one worker process works on at once (their model calls are "
        "shared: more in flight, larger calls)",
    )
    parse_concurrency: int = Field(
        default=2, ge=1, description="Files one worker process parses at once (memory bound)"
    )
    embed_call_max_texts: int = Field(
        default=64,
        gt=0,
        description="Texts one local-model call takes from the jobs waiting for it (a call "
        "holds every text in it until it ends: short calls let another project's file in)",
    )
    embed_checkpoint_rows: int = Field(
        default=128, gt=0, description="Chunks embedded and written per checkpoint"
    )
    stage_write_delay_ms: int = Field(
        default=250,
        ge=0,
        description="An ingest job's stage is written once it has lasted this long, or with "
        "the job's next write; every stage's time is recorded either way (0: each at once)",
    )
    # --- search ---
    search_ef_search: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="HNSW candidate list per search: higher = better recall, slower (1..1000)",
    )
    # --- how the packaged model runs ---
    local_backend: Literal["torch", "onnx", "onnx-int8", "fake"] = Field(
        default="torch",
        description="Runs the local model: torch; onnx = onnxruntime, same vectors, exported "
        "once into <data_dir>/models; onnx-int8 = quantised, faster, vectors ≈ 0.99 cosine. "
        "onnxruntime takes PREPSHELF_TORCH_THREADS as its thread count. fake = no model: "
        "deterministic hashed word-piece vectors (keyword-like similarity) under the model's "
        "name, for tests and demos only; never for real retrieval",
    )
    # --- third-party client compatibility ---
    embeddings_token_ids: Literal["cl100k_base", "model"] = Field(
        default="cl100k_base",
        description="How /v1/embeddings reads token-id arrays: cl100k_base = OpenAI's encoding "
        "(what LangChain and other OpenAI-shaped clients send), decoded and re-tokenized for "
        "the model; model = ids of the served model's own vocabulary",
    )
    embeddings_long_input: Literal["split", "truncate", "error"] = Field(
        default="split",
        description="An /v1/embeddings input over the model's window: split = embed window-sized "
        "pieces and return their token-weighted, re-normalised mean; truncate = first window "
        "only; error = 400 context_length_exceeded",
    )
    embeddings_max_body_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="Request body limit of /v1/embeddings (300,000 token ids as JSON ≈ 2.4 MB)",
    )
    query_model_preload: bool = Field(
        default=True,
        description="The API loads its query model in the background right after start, so "
        "the first search is as fast as the next; false = on the first search",
    )
    # --- schedules, source syncs and evaluation runs ---
    schedule_scan_interval_s: int = Field(
        default=10,
        ge=1,
        le=59,
        description="How often the workers look for due schedules (seconds, 1..59): the "
        "longest a run starts after its due time",
    )
    schedule_min_interval_s: float = Field(
        default=60.0,
        ge=1.0,
        description="Shortest time between two due times a schedule's cron may ask for",
    )
    sync_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated folders and s3://bucket/prefix URLs that source syncs may "
        "read, each with everything below it; empty = syncs refused",
    )
    sync_max_files: int = Field(
        default=100_000, gt=0, description="Files one source sync may list; more fails the run"
    )
    run_poll_interval_s: float = Field(
        default=2.0,
        ge=1.0,
        description="How often a sync that waits for its files' ingest jobs looks at them",
    )
    eval_max_questions: int = Field(
        default=10_000, gt=0, description="Questions one eval set may hold"
    )
    eval_metrics_max_evals: int = Field(
        default=100,
        ge=0,
        description="/metrics exports the latest scores of at most this many evals "
        "(the most recently run)",
    )

    @model_validator(mode="before")
    @classmethod
    def _fake_embedder_shorthand(cls, data: object) -> object:
        # "fake" is a local backend (same tokenizer, same windows, no model), so the
        # shorthand becomes the pair every other module reads.
        if isinstance(data, dict) and data.get("embedder") == "fake":
            data = {**data, "embedder": "local", "local_backend": "fake"}
        return data

    @field_validator("sync_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [r.strip() for r in value.split(",") if r.strip()]
        return value

    # --- the front gate: limits for callers without a key (docs/security.md) ---
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A connection must send a request's complete headers within this time",
    )
    body_idle_timeout_s: float = Field(
        default=30.0, gt=0, description="Longest wait for the next piece of a request body (408)"
    )
    json_body_timeout_s: float = Field(
        default=60.0, gt=0, description="Whole time a JSON body may take to arrive (408)"
    )
    upload_timeout_s: float = Field(
        default=3600.0, gt=0, description="Whole time an upload body may take to arrive (408)"
    )
    rate_limit_per_s: float = Field(
        default=1000.0,
        ge=0,
        description="Requests per second per API key (token bucket refill); 0 = no rate limit",
    )
    rate_limit_burst: int = Field(
        default=2000, ge=1, description="Requests a key may send at once before the rate applies"
    )
    key_max_concurrent: int = Field(
        default=16,
        ge=0,
        description="Requests one API key may have running at once (event streams apart); "
        "0 = no limit",
    )
    key_max_waiting: int = Field(
        default=256,
        ge=0,
        description="Requests of one API key that may wait for a running slot (beyond: 429)",
    )
    key_max_wait_s: float = Field(
        default=30.0, gt=0, description="Longest wait for a running slot (then 429)"
    )
    key_max_streams: int = Field(
        default=8, ge=0, description="Event streams one API key may hold open; 0 = no limit"
    )
    key_recheck_s: float = Field(
        default=2.0, gt=0, description="How often an open event stream checks that its key lives"
    )
    auth_lookup_concurrency: int = Field(
        default=4,
        ge=1,
        description="Key lookups in the database at once (unknown keys never take the whole pool)",
    )
    public_cache_s: float = Field(
        default=1.0,
        ge=0,
        description="/metrics, /readyz and /openapi.json answers are served again for this long",
    )
    search_filter_max_depth: int = Field(
        default=8, ge=1, le=64, description="Nesting depth of and/or search filters"
    )
    search_filter_max_conditions: int = Field(
        default=100, ge=1, description="Filter objects (comparisons plus and/or) in one search"
    )

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
