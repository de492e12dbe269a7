"""``splice serve``: Splice as an OpenAI-compatible chat model (FastAPI)."""

from .app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
