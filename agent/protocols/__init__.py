"""Tool-call protocols: how calls, results and answers look in the token stream."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import ABSTENTION, Action, Message, Protocol, StreamParser, ToolCall, is_abstention
from .hermes import HermesProtocol
from .search_r1 import SearchR1Protocol
from .splice import SpliceProtocol

__all__ = [
    "ABSTENTION",
    "Action",
    "Message",
    "Protocol",
    "StreamParser",
    "ToolCall",
    "is_abstention",
    "SpliceProtocol",
    "HermesProtocol",
    "SearchR1Protocol",
    "PROTOCOLS",
    "get_protocol",
]

PROTOCOLS: dict[str, type[Protocol]] = {
    "splice": SpliceProtocol,
    "hermes": HermesProtocol,
    "search-r1": SearchR1Protocol,
}


def get_protocol(name: str, tokenizer: Any) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name](tokenizer)
