"""The web ``search`` tool: search, read the top pages concurrently, chunk them, rank
the chunks against the query, return the best passages with title and URL.

Failures degrade instead of crashing a run: a page that cannot be fetched or read
contributes its search snippet; a failed search becomes a tool error the model
reads as an observation.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.errors import RetrievalError, first_line
from agent.settings import load, splice_home
from agent.tools import Passage, Retriever, ToolError, term_overlap, word_terms

from ..chunking import ChunkConfig, Document, chunk_document
from .backends import SearchBackend, SearchResult, make_backend
from .cache import WebCache, canonical_url, normalize_query
from .extract import ExtractedPage, Extractor
from .fetch import Fetcher
from .settings import WebSettings

__all__ = ["WebRetriever", "HybridRetriever"]


def _lexical(query: str, texts: Sequence[str]) -> np.ndarray:
    q = word_terms(query)
    return np.array([term_overlap(q, word_terms(t)) for t in texts])


class WebRetriever(Retriever):
    def __init__(
        self,
        settings: WebSettings | None = None,
        *,
        backend: SearchBackend | None = None,
        fetcher: Fetcher | None = None,
        embedder: Any = None,
        cache: WebCache | None = None,
    ) -> None:
        self.s = settings or load(WebSettings)
        self.backend = backend or make_backend(self.s)
        self.fetcher = fetcher or Fetcher(self.s)
        self.extractor = Extractor(self.s.extract_timeout_s)
        self.embedder = embedder
        home = splice_home()
        self.cache = cache or WebCache(
            self.s.cache_dir or home / "web-cache",
            ttl_s=self.s.cache_ttl_s,
            enabled=not self.s.no_cache,
            mode=self.s.mode,
            cassette=self.s.cassette_dir or home / "web-cassette",
        )
        self.failures: list[str] = []  # page failures of the last search, for the trace

    async def _results(self, query: str) -> list[SearchResult]:
        key = f"search:{self.backend.name}:{normalize_query(query)}:{self.s.results}"
        cached = self.cache.get(key)
        if cached is not None:
            return [SearchResult.model_validate(r) for r in cached]
        try:
            results = await self.backend.search(query, self.s.results)
        except RetrievalError as exc:
            raise ToolError(f"web search failed: {exc}") from None
        self.cache.put(key, [r.model_dump() for r in results])
        return results

    async def _page(self, url: str) -> ExtractedPage:
        key = f"page:{canonical_url(url)}"
        cached = self.cache.get(key)
        if cached is not None:
            return ExtractedPage.model_validate(cached)
        page = await self.fetcher.fetch(url)
        extracted = await self.extractor.extract(page)
        self.cache.put(key, extracted.model_dump())
        return extracted

    def _rank(self, query: str, texts: list[str]) -> np.ndarray:
        if self.embedder is None:
            return _lexical(query, texts)
        vecs = self.embedder.encode_passages(texts)
        return vecs @ self.embedder.encode_queries([query])[0]

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        results = await self._results(query)
        if not results:
            return []
        top = results[: self.s.pages]
        pages = await asyncio.gather(*(self._page(r.url) for r in top), return_exceptions=True)
        self.failures = []
        candidates: list[Passage] = []
        for n, r in enumerate(results):
            uid = "w" + hashlib.sha1(canonical_url(r.url).encode()).hexdigest()[:8]
            page = pages[n] if n < len(pages) else None
            if isinstance(page, ExtractedPage):
                doc = Document(id=uid, title=page.title or r.title, text=page.text, source=r.url)
                for c in chunk_document(doc, ChunkConfig(size=120, overlap=20)):
                    candidates.append(Passage(id=c.id, title=c.title, text=c.text, source=r.url))
                continue
            if isinstance(page, BaseException):
                if not isinstance(page, Exception):
                    raise page  # cancellation or interrupt: not this page's doing
                # Whatever one page does (a bug in a parser included), it costs that
                # page only: the others, and the snippet, still stand.
                self.failures.append(f"{r.url[:120]}: {first_line(page)}")
            if r.snippet:  # the page failed or was not read: the snippet stands in
                candidates.append(Passage(id=uid, title=r.title, text=r.snippet, source=r.url))
        if not candidates:
            return []
        scores = await asyncio.to_thread(
            self._rank, query, [p.title + ". " + p.text for p in candidates]
        )
        order = np.argsort(-scores, kind="stable")[:k]
        return [candidates[i].model_copy(update={"score": float(scores[i])}) for i in order]

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self.backend.aclose()
        self.extractor.close()
        self.cache.close()


class HybridRetriever(Retriever):
    """Local index and web together, merged by reciprocal-rank fusion (k=60)."""

    def __init__(self, local: Retriever, web: Retriever) -> None:
        self.local, self.web = local, web

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        local, web = await asyncio.gather(
            self.local.search(query, k), self.web.search(query, k), return_exceptions=True
        )
        lists = [r for r in (local, web) if isinstance(r, list)]
        if not lists:
            raise ToolError(f"both searches failed: {local}; {web}")
        fused: dict[str, tuple[float, Passage]] = {}
        for hits in lists:
            for rank, p in enumerate(hits):
                score = fused.get(p.id, (0.0, p))[0] + 1.0 / (60 + rank + 1)
                fused[p.id] = (score, p)
        best = sorted(fused.values(), key=lambda x: -x[0])[:k]
        return [p.model_copy(update={"score": s}) for s, p in best]
