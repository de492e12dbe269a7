"""Tools the model can call, and the retriever port behind the ``search`` tool.

A tool is a plain Python function, sync or async. Its signature and docstring become
a JSON schema through pydantic (``validate_call``), and arguments the model sends are
validated the same way, so a malformed call becomes an observation, not a crash.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

__all__ = [
    "Document",
    "Passage",
    "Retriever",
    "InMemoryRetriever",
    "Tool",
    "tool",
    "search_tool",
    "ToolError",
]


class ToolError(Exception):
    """A tool failed; its message becomes the model's observation."""


class Document(BaseModel):
    """A text to index: what corpus readers and built-in datasets produce."""

    id: str
    title: str = ""
    text: str
    source: str = ""


class Passage(BaseModel):
    id: str
    title: str = ""
    text: str
    source: str = ""
    score: float = 0.0

    def render(self) -> str:
        head = f"[{self.id}] {self.title}".strip()
        return f"{head}: {self.text}" if self.title else f"[{self.id}] {self.text}"


class Retriever(abc.ABC):
    """Port to a passage store (FAISS, web search, or the in-memory one below)."""

    @abc.abstractmethod
    async def search(self, query: str, k: int = 3) -> list[Passage]: ...


_WORD = re.compile(r"\w+")


def word_terms(text: str) -> set[str]:
    """Lower-cased words longer than two letters: the unit of word-overlap ranking."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2}


def term_overlap(query_terms: set[str], terms: set[str]) -> float:
    """Share of the query's terms found in a passage."""
    return len(query_terms & terms) / (len(query_terms) or 1)


class InMemoryRetriever(Retriever):
    """Word-overlap ranking over a list of passages: for tests and small demos."""

    def __init__(self, passages: Iterable[Passage]) -> None:
        self.passages = list(passages)
        self._terms = [word_terms(p.title + " " + p.text) for p in self.passages]

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        q = word_terms(query)
        scored = [(term_overlap(q, terms), i) for i, terms in enumerate(self._terms)]
        scored = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], s[1]))[:k]
        return [self.passages[i].model_copy(update={"score": s}) for s, i in scored]


def _args_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (annotations and defaults)."""
    fields = {
        p.name: (
            p.annotation if p.annotation is not inspect.Parameter.empty else Any,
            p.default if p.default is not inspect.Parameter.empty else ...,
        )
        for p in inspect.signature(fn).parameters.values()
    }
    return create_model(f"{name}_args", **fields)  # type: ignore[call-overload]


class Tool(BaseModel):
    """A callable tool with a JSON schema derived from its signature."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    args_model: type[BaseModel]

    @classmethod
    def from_function(cls, fn: Callable[..., Any], name: str | None = None) -> Tool:
        name = name or fn.__name__
        model = _args_model(fn, name)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return cls(
            name=name,
            description=inspect.getdoc(fn) or "",
            parameters=schema,
            fn=fn,
            args_model=model,
        )

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    async def __call__(self, arguments: dict[str, Any]) -> Any:
        try:
            bound = self.args_model.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ToolError(f"bad arguments for {self.name}: {loc}: {first['msg']}") from exc
        kwargs = {k: getattr(bound, k) for k in type(bound).model_fields}
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**kwargs)
        return await asyncio.to_thread(self.fn, **kwargs)


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Decorator: ``@tool`` or ``@tool(name="...")`` turns a function into a Tool."""
    if fn is None:
        return lambda f: Tool.from_function(f, name)
    return Tool.from_function(fn, name)


def search_tool(retriever: Retriever, k: int = 3) -> Tool:
    async def search(query: str) -> list[Passage]:
        """Search the knowledge base and return the most relevant passages."""
        return await retriever.search(query, k)

    return Tool.from_function(search)
