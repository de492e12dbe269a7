"""Splice's SDK: the tool-call loop over an engine (the orchestrator lands here).

Errors from every layer share one tree, rooted at :class:`SpliceError`.
"""

from serving.errors import (
    ConfigError,
    DependencyMissingError,
    EngineError,
    ModelNotPreparedError,
    PromptTooLongError,
    ServerUnreachableError,
    SpliceError,
)

__all__ = [
    "SpliceError",
    "ConfigError",
    "DependencyMissingError",
    "EngineError",
    "ModelNotPreparedError",
    "PromptTooLongError",
    "ServerUnreachableError",
]
