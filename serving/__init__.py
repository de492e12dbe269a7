"""Engines, model preparation and model serving.

The engine port itself (``SamplingParams``, ``GenerationChunk``, ``Engine``) and the
error tree live in ``agent``; they are re-exported here for convenience.

The light pieces import eagerly; the vLLM- and httpx-backed adapters load on first
use, so ``import serving`` never pulls in vLLM.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from agent.engine import Engine, Generation, GenerationChunk, SamplingParams
from agent.errors import (
    ConfigError,
    DependencyMissingError,
    EngineError,
    ModelNotPreparedError,
    PrepareError,
    PromptTooLongError,
    ServerUnreachableError,
    SpliceError,
)

if TYPE_CHECKING:
    from .factory import open_engine
    from .http_engine import HTTPEngine
    from .model_server import ModelServer
    from .scripted import ScriptedEngine
    from .vllm_engine import VLLMConfig, VLLMEngine

__all__ = [
    "Engine",
    "Generation",
    "GenerationChunk",
    "SamplingParams",
    "VLLMConfig",
    "VLLMEngine",
    "HTTPEngine",
    "ModelServer",
    "ScriptedEngine",
    "open_engine",
    "SpliceError",
    "ConfigError",
    "DependencyMissingError",
    "EngineError",
    "ModelNotPreparedError",
    "PrepareError",
    "PromptTooLongError",
    "ServerUnreachableError",
]

_LAZY = {
    "VLLMConfig": "vllm_engine",
    "VLLMEngine": "vllm_engine",
    "HTTPEngine": "http_engine",
    "ModelServer": "model_server",
    "ScriptedEngine": "scripted",
    "open_engine": "factory",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
