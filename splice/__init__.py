"""Splice's composition root: the ``splice`` CLI, the default wiring and the benchmarks.

``from splice import default_agent`` gives the prepared default model searching the
built-in knowledge base. Nothing in ``agent``, ``serving``, ``retrieval``, ``evals``
or ``training`` imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .defaults import default_agent, ensure_kb_index, prepare_default

__all__ = ["default_agent", "ensure_kb_index", "prepare_default"]


def __getattr__(name: str) -> Any:
    # Lazy, so `splice --help` does not import the whole stack.
    if name in __all__:
        from . import defaults

        return getattr(defaults, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
