"""Where Splice keeps its files, from the environment (``SPLICE_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SpliceSettings", "splice_home"]


class SpliceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPLICE_", extra="ignore")

    home: Path = Field(
        default=Path("~/.cache/splice"),
        description="Cache directory for the prepared model and other artefacts.",
    )


def splice_home() -> Path:
    return SpliceSettings().home.expanduser()
