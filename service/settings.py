"""Service settings, read from ``ALGOSPEAK_*`` environment variables."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be configured with; passed to ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="ALGOSPEAK_", env_file=None, extra="ignore")

    max_text_chars: int = Field(20_000, gt=0, description="Longest text accepted, in characters.")
    lexicon_path: Path | None = Field(None, description="Lexicon YAML replacing the built-in one.")
    log_level: str = Field("info", description="Python logging level for the service.")
