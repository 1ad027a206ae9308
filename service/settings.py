"""Service settings, read from ``ALGOSPEAK_*`` environment variables."""

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.engine import DEFAULT_CONTEXT


class Settings(BaseSettings):
    """Everything the service can be configured with; passed to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="ALGOSPEAK_", env_file=None, extra="ignore")

    model_path: Path | None = Field(
        None,
        description="The GGUF to serve; unset: the shipped default model (the base from its "
        "package with the adapter in models/default, prepared at first start into "
        "$ALGOSPEAK_HOME/models/default/algospeak.gguf).",
    )
    lora_path: Path | None = Field(
        None, description="A GGUF LoRA adapter to apply on the model (instead of merging)."
    )
    threads: int = Field(os.cpu_count() or 1, gt=0, description="CPU threads for the model.")
    context_size: int = Field(DEFAULT_CONTEXT, ge=256, description="Model context, in tokens.")
    max_text_chars: int = Field(20_000, gt=0, description="Longest text accepted, in characters.")
    max_batch: int = Field(64, gt=0, description="Most texts in one batch request.")
    queue_size: int = Field(64, ge=0, description="Requests that may wait for the model.")
    queue_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the model.")
    model_batch: int = Field(
        8, gt=0, le=64, description="Most waiting texts the model evaluates together."
    )
    reason_max_tokens: int = Field(
        48, gt=0, le=512, description='Longest model-written reason (explain: "reason"), in tokens.'
    )
    review_threshold: float = Field(0.5, ge=0, le=1, description="P(harmful) -> review.")
    block_threshold: float = Field(0.9, ge=0, le=1, description="P(harmful) -> block.")
    category_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Per-category overrides, e.g. {"child_safety": {"review": 0.2, "block": 0.5}}.',
    )
    lexicon_path: Path | None = Field(None, description="Lexicon YAML replacing the built-in one.")
    policy_path: Path | None = Field(
        None, description="The platform's policy YAML: extra/disabled codes, thresholds."
    )
    policy_check_s: float = Field(
        5.0, ge=0, description="How often each worker reloads a changed policy file; 0 = never."
    )
    log_level: str = Field("info", description="Python logging level for the service.")
    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line, with the request id; text: plain."
    )
    log_texts: bool = Field(
        False, description="Log raw texts; by default only their sha256 and length are logged."
    )

    # How the process serves (`python -m service`).
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in containers).")
    port: int = Field(8000, gt=0, lt=65536, description="Port to listen on.")
    workers: int = Field(
        1, gt=0, description="Server processes, each with its own copy of the model."
    )

    # Protection.
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated API keys; when any is set, requests must carry one."
    )
    api_keys_file: Path | None = Field(
        None, description="A file of API keys, one per line (# comments allowed)."
    )
    admin_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated keys for /admin/*; none = the admin API is off."
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, gt=0, description="Largest request body, checked before parsing."
    )
    rate_limit_per_minute: float = Field(
        600, ge=0, description="Requests per minute per API key (or client address); 0 = off."
    )
    rate_limit_burst: int = Field(60, gt=0, description="Requests a key may make at once.")
    request_timeout_s: float = Field(
        60.0, gt=0, description="Longest a request may take before it is answered 504."
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated origins allowed by CORS; none by default."
    )

    # The moderation-queue worker (`python -m service.worker`): Redis Streams in and out.
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="The Redis the worker reads posts from."
    )
    worker_stream: str = Field("algospeak:posts", description="Input stream of posts.")
    worker_group: str = Field(
        "algospeak", description="Consumer group; the workers of one group share the posts."
    )
    worker_consumer: str = Field(
        "",
        description="This worker's consumer name, unique in the group; empty: host name and "
        "process id. A worker restarted under the same name first takes back what it held.",
    )
    worker_results_stream: str = Field(
        "algospeak:results", description="Stream the worker writes each post's result to."
    )
    worker_review_stream: str = Field(
        "", description="Also write results whose action is review here; empty: do not."
    )
    worker_block_stream: str = Field(
        "", description="Also write results whose action is block here; empty: do not."
    )
    worker_dead_letter_stream: str = Field(
        "algospeak:dead-letter",
        description="Stream for posts that failed worker_max_attempts times, with the error.",
    )
    worker_prefetch: int = Field(
        1, gt=0, le=1000, description="Posts a worker reads at once (and holds until done)."
    )
    worker_poll_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Longest wait for new posts in one read; a stop signal waits at most this.",
    )
    worker_claim_idle_s: float = Field(
        60.0,
        gt=0,
        description="A post held this long without a result (its worker died or failed) is "
        "claimed by another worker; keep it well above the longest classification.",
    )
    worker_max_attempts: int = Field(
        3, gt=0, description="Attempts at a post before it goes to the dead-letter stream."
    )
    worker_result_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="How long a post id is remembered as done, so that it gets no second "
        "result; 0 = forever.",
    )
    worker_explain: bool | Literal["reason"] = Field(
        False, description='Explanations in results, as the API\'s explain (true or "reason").'
    )
    worker_metrics_port: int = Field(
        0, ge=0, lt=65536, description="Port of the worker's Prometheus metrics; 0 = off."
    )

    @field_validator("api_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
