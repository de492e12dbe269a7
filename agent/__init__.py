"""Splice's SDK: the special-token tool loop over an engine.

Errors from every layer share one tree, rooted at :class:`SpliceError`.
"""

from .engine import Engine, GenerationChunk, SamplingParams
from .errors import (
    ConfigError,
    DependencyMissingError,
    EngineError,
    ModelNotPreparedError,
    PromptTooLongError,
    ServerUnreachableError,
    SpliceError,
)
from .loop import Budgets
from .protocols import HermesProtocol, Message, Protocol, SearchR1Protocol, SpliceProtocol
from .sdk import Agent, ChatSession
from .tools import InMemoryRetriever, Passage, Retriever, Tool, ToolError, tool
from .trace import Answer, AnswerEvent, Citation, TokenEvent, ToolCallEvent, ToolResultEvent

__all__ = [
    "Agent",
    "Engine",
    "GenerationChunk",
    "SamplingParams",
    "ChatSession",
    "Answer",
    "Citation",
    "Budgets",
    "Message",
    "Protocol",
    "SpliceProtocol",
    "HermesProtocol",
    "SearchR1Protocol",
    "Tool",
    "tool",
    "ToolError",
    "Passage",
    "Retriever",
    "InMemoryRetriever",
    "TokenEvent",
    "ToolCallEvent",
    "ToolResultEvent",
    "AnswerEvent",
    "SpliceError",
    "ConfigError",
    "DependencyMissingError",
    "EngineError",
    "ModelNotPreparedError",
    "PromptTooLongError",
    "ServerUnreachableError",
]
