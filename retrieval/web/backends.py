"""Web search backends: SearxNG (self-hosted JSON API), Brave, Tavily and DuckDuckGo
(``ddgs``, no key). Each returns typed :class:`SearchResult` rows. Keys come from the
environment; a missing key or an unreachable backend is one line naming the fix.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Any

import httpx
from pydantic import BaseModel

from agent.errors import ConfigError, DependencyMissingError, RetrievalError

from .settings import WebSettings

__all__ = [
    "SearchResult",
    "SearchBackend",
    "SearxNG",
    "Brave",
    "Tavily",
    "DDGS",
    "SearchError",
    "make_backend",
]


class SearchError(RetrievalError):
    """The search backend failed or could not be reached."""


class SearchResult(BaseModel):
    title: str
    url: str
    snippet: str = ""


class SearchBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    async def search(self, query: str, n: int) -> list[SearchResult]: ...

    async def aclose(self) -> None:
        return None


class _HTTPBackend(SearchBackend):
    def __init__(
        self, url: str, settings: WebSettings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.total_timeout_s, connect=settings.connect_timeout_s),
            headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
            transport=transport,
        )

    async def _json(self, method: str, **kwargs: Any) -> Any:
        try:
            resp = await self.client.request(method, self.url, **kwargs)
        except httpx.ConnectError:
            raise SearchError(
                f"cannot reach the {self.name} backend at {self.url}: check the "
                "URL and that the service is running"
            ) from None
        except httpx.HTTPError as exc:
            raise SearchError(f"{self.name} search failed: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise SearchError(
                f"{self.name} refused the request (HTTP {resp.status_code}): check the API key"
            )
        if resp.status_code >= 400:
            raise SearchError(f"{self.name} search failed: HTTP {resp.status_code}")
        try:
            return resp.json()
        except ValueError:
            raise SearchError(
                f"{self.name} returned something other than JSON: is {self.url} the JSON API?"
            ) from None

    async def aclose(self) -> None:
        await self.client.aclose()


class SearxNG(_HTTPBackend):
    """A self-hosted SearxNG instance with ``search.formats: [json]`` enabled."""

    name = "searxng"

    def __init__(self, settings: WebSettings, **kw: Any) -> None:
        super().__init__(settings.searxng_url.rstrip("/") + "/search", settings, **kw)

    async def search(self, query: str, n: int) -> list[SearchResult]:
        data = await self._json("GET", params={"q": query, "format": "json"})
        return [
            SearchResult(title=r.get("title", ""), url=r["url"], snippet=r.get("content", ""))
            for r in data.get("results", [])[:n]
            if r.get("url")
        ]


class Brave(_HTTPBackend):
    name = "brave"

    def __init__(self, settings: WebSettings, **kw: Any) -> None:
        if not settings.brave_api_key:
            raise ConfigError("Brave search needs an API key: set BRAVE_API_KEY")
        super().__init__(settings.brave_url, settings, **kw)
        self.key = settings.brave_api_key

    async def search(self, query: str, n: int) -> list[SearchResult]:
        data = await self._json(
            "GET", params={"q": query, "count": n}, headers={"X-Subscription-Token": self.key}
        )
        rows = (data.get("web") or {}).get("results", [])
        return [
            SearchResult(title=r.get("title", ""), url=r["url"], snippet=r.get("description", ""))
            for r in rows[:n]
            if r.get("url")
        ]


class Tavily(_HTTPBackend):
    name = "tavily"

    def __init__(self, settings: WebSettings, **kw: Any) -> None:
        if not settings.tavily_api_key:
            raise ConfigError("Tavily search needs an API key: set TAVILY_API_KEY")
        super().__init__(settings.tavily_url, settings, **kw)
        self.key = settings.tavily_api_key

    async def search(self, query: str, n: int) -> list[SearchResult]:
        data = await self._json(
            "POST",
            json={"query": query, "max_results": n},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        return [
            SearchResult(title=r.get("title", ""), url=r["url"], snippet=r.get("content", ""))
            for r in data.get("results", [])[:n]
            if r.get("url")
        ]


class DDGS(SearchBackend):
    """DuckDuckGo and friends through the ``ddgs`` package: no key, best effort."""

    name = "ddgs"

    def __init__(self, settings: WebSettings) -> None:
        try:
            from ddgs import DDGS as Client
        except ImportError as exc:
            raise DependencyMissingError("ddgs", "pip install ddgs") from exc
        self.client = Client(timeout=int(settings.total_timeout_s))

    async def search(self, query: str, n: int) -> list[SearchResult]:
        try:
            rows = await asyncio.to_thread(self.client.text, query, max_results=n)
        except Exception as exc:  # ddgs raises its own family; translate at the boundary
            raise SearchError(
                f"ddgs search failed: {type(exc).__name__}: {str(exc)[:100]}"
            ) from None
        return [
            SearchResult(title=r.get("title", ""), url=r.get("href", ""), snippet=r.get("body", ""))
            for r in rows
            if r.get("href")
        ]


def make_backend(settings: WebSettings, **kw: Any) -> SearchBackend:
    cls = {"searxng": SearxNG, "brave": Brave, "tavily": Tavily, "ddgs": DDGS}[settings.backend]
    return cls(settings) if cls is DDGS else cls(settings, **kw)
