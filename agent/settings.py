"""Every ``SPLICE_*`` setting, read from the environment in this one module.

``SpliceSettings`` holds the general ones (``SPLICE_HOME``, ``SPLICE_LOG_LEVEL``,
``SPLICE_WEB_CONFIG``); ``WebSettings`` the web-search ones (``SPLICE_WEB_*``, an
optional TOML file, and the backends' own ``BRAVE_API_KEY`` / ``TAVILY_API_KEY``).
Nothing here writes ``os.environ``: the one place that must (vLLM reads its own
variables) is ``serving.environment``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

__all__ = ["SpliceSettings", "WebSettings", "USER_AGENT", "splice_home", "load"]

_S = TypeVar("_S", bound=BaseSettings)


class SpliceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPLICE_", extra="ignore")

    home: Path = Field(
        default=Path("~/.cache/splice"),
        description="Cache directory for the prepared model, indexes and web cache.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "ERROR", description="Log level of Splice and the libraries it drives (-v: INFO)."
    )
    web_config: Path = Field(
        default=Path("~/.config/splice/web.toml"),
        description="Optional TOML file of web-search settings.",
    )
    api_key: str | None = Field(
        None, description="Key `splice serve` requires as `Authorization: Bearer …`."
    )


def load(cls: type[_S], **overrides: Any) -> _S:
    """Read a settings class from the environment; a bad value is a one-line
    ConfigError naming the variable, not a validation traceback."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        prefix = cls.model_config.get("env_prefix", "")
        name = (prefix + str(err["loc"][0])).upper() if err.get("loc") else prefix + "*"
        raise ConfigError(f"{name}: {err['msg']} (got {err.get('input')!r})") from None


def splice_home() -> Path:
    return load(SpliceSettings).home.expanduser()


USER_AGENT = "Splice/0.1 (agentic RAG research fetcher; +https://github.com/splice-rag/splice)"


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPLICE_WEB_", extra="ignore")

    backend: Literal["searxng", "brave", "tavily", "ddgs"] = "searxng"
    searxng_url: str = "http://127.0.0.1:8888"
    brave_url: str = "https://api.search.brave.com/res/v1/web/search"
    tavily_url: str = "https://api.tavily.com/search"
    brave_api_key: str | None = Field(
        None, validation_alias=AliasChoices("SPLICE_WEB_BRAVE_API_KEY", "BRAVE_API_KEY")
    )
    tavily_api_key: str | None = Field(
        None, validation_alias=AliasChoices("SPLICE_WEB_TAVILY_API_KEY", "TAVILY_API_KEY")
    )

    results: int = Field(5, description="Search results asked of the backend.")
    pages: int = Field(3, description="Top results whose pages are fetched and read.")

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    total_timeout_s: float = 20.0
    extract_timeout_s: float = 10.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    max_retries: int = 2
    max_retry_wait_s: float = 10.0
    concurrency: int = 16
    per_host: int = 4
    user_agent: str = USER_AGENT
    respect_robots: bool = True
    allow_private: bool = False
    allow_hosts: list[str] = Field(default_factory=list)

    cache_dir: Path | None = None  # default: SPLICE_HOME/web-cache
    cache_ttl_s: float = 24 * 3600
    no_cache: bool = False
    mode: Literal["live", "record", "replay"] = "live"
    cassette_dir: Path | None = None  # record/replay store; default SPLICE_HOME/web-cassette

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = load(SpliceSettings).web_config.expanduser()
        if path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
