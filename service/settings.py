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

    @field_validator("api_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
