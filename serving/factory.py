"""Pick an engine: a running server when a URL is given, in-process vLLM otherwise."""

from __future__ import annotations

from agent.engine import Engine

from .vllm_engine import VLLMConfig

__all__ = ["open_engine"]


async def open_engine(url: str | None = None, config: VLLMConfig | None = None) -> Engine:
    if url:
        from .http_engine import HTTPEngine

        return await HTTPEngine.connect(url, model=config.model if config else None)
    from .vllm_engine import VLLMEngine

    return VLLMEngine.start(config)
