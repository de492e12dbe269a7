"""The agent's ``Retriever`` port over a :class:`LocalIndex`, with micro-batching.

Trajectories search concurrently (``Agent.ask_many``). Queries that arrive while a
batch is being embedded and searched wait and go together in the next batch, so one
encoder call and one FAISS call serve many trajectories, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.tools import Passage, Retriever

from .index import LocalIndex
from .opening import open_index

__all__ = ["IndexRetriever"]


class IndexRetriever(Retriever):
    def __init__(self, index: LocalIndex | Any, *, max_batch: int = 64) -> None:
        self.index = index
        self.max_batch = max_batch
        self._pending: list[tuple[str, int, asyncio.Future[list[Passage]]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # how many encoder+FAISS calls served the queries so far

    @classmethod
    def open(cls, path: Path | str, **kwargs: object) -> IndexRetriever:
        return cls(open_index(path, **kwargs))

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        fut: asyncio.Future[list[Passage]] = asyncio.get_running_loop().create_future()
        self._pending.append((query, k, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    async def search_many(self, queries: Sequence[str], k: int = 3) -> list[list[Passage]]:
        return list(await asyncio.gather(*(self.search(q, k) for q in queries)))

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            batch = [item for item in batch if not item[2].cancelled()]
            if not batch:
                continue
            kmax = max(k for _, k, _ in batch)
            try:
                results = await asyncio.to_thread(self.index.search, [q for q, _, _ in batch], kmax)
            except Exception as exc:  # every waiter sees the failure as its tool error
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            for (_, k, fut), hits in zip(batch, results):
                if not fut.done():
                    fut.set_result(
                        [
                            Passage(id=c.id, title=c.title, text=c.text, source=c.source, score=s)
                            for c, s in hits[:k]
                        ]
                    )
