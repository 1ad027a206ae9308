"""Service settings, read from ``ALGOSPEAK_*`` environment variables."""

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with; passed to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="ALGOSPEAK_", env_file=None, extra="ignore")

    model_path: Path = Field(
        Path("models/default/algospeak.gguf"),
        description="The GGUF to serve (default: the model `make model` builds).",
    )
    lora_path: Path | None = Field(
        None, description="A GGUF LoRA adapter to apply on the model (instead of merging)."
    )
    threads: int = Field(os.cpu_count() or 1, gt=0, description="CPU threads for the model.")
    context_size: int = Field(2048, ge=256, description="Model context, in tokens.")
    max_text_chars: int = Field(20_000, gt=0, description="Longest text accepted, in characters.")
    max_batch: int = Field(64, gt=0, description="Most texts in one batch request.")
    queue_size: int = Field(64, ge=0, description="Requests that may wait for the model.")
    queue_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the model.")
    review_threshold: float = Field(0.5, ge=0, le=1, description="P(harmful) -> review.")
    block_threshold: float = Field(0.9, ge=0, le=1, description="P(harmful) -> block.")
    category_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Per-category overrides, e.g. {"child_safety": {"review": 0.2, "block": 0.5}}.',
    )
    lexicon_path: Path | None = Field(None, description="Lexicon YAML replacing the built-in one.")
    log_level: str = Field("info", description="Python logging level for the service.")
