"""On-disk caching of search results and extracted pages (diskcache), and a
record/replay store that makes eval runs over the web reproducible offline.

Keys: ``search:{backend}:{normalized query}:{n}`` and ``page:{canonical URL}``.
Only successes are stored: an error or an empty result is never cached, so a
transient failure is retried next time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.errors import RetrievalError

__all__ = ["WebCache", "ReplayMissError", "canonical_url", "normalize_query"]


class ReplayMissError(RetrievalError):
    """Replay mode was asked for something that was never recorded."""


def normalize_query(query: str) -> str:
    return " ".join(query.lower().split())


def canonical_url(url: str) -> str:
    """Lower-case scheme and host, no fragment, no default port, '/' for an empty path."""
    p = urlsplit(url.strip())
    host = (p.hostname or "").lower()
    port = p.port
    if port and not ((p.scheme == "http" and port == 80) or (p.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((p.scheme.lower(), host, re.sub(r"/{2,}", "/", p.path) or "/", p.query, ""))


class WebCache:
    """``get``/``put`` with a TTL; in record mode every put also goes to the cassette,
    in replay mode only the cassette is read and a miss is an error."""

    def __init__(
        self,
        directory: Path | None,
        *,
        ttl_s: float,
        enabled: bool = True,
        mode: str = "live",
        cassette: Path | None = None,
    ) -> None:
        import diskcache

        self.ttl_s = ttl_s
        self.enabled = enabled and directory is not None
        self.mode = mode
        self._cache = diskcache.Cache(str(directory)) if self.enabled else None
        self._cassette = diskcache.Cache(str(cassette)) if mode != "live" and cassette else None
        if mode != "live" and self._cassette is None:
            raise RetrievalError(f"{mode} mode needs a cassette directory")
        self.hits = self.misses = 0

    def get(self, key: str) -> Any:
        if self.mode == "replay":
            assert self._cassette is not None
            value = self._cassette.get(key)
            if value is None:
                raise ReplayMissError(
                    f"replay: {key[:120]} was not recorded; record it with mode=record first"
                )
            self.hits += 1
            return value
        if self._cache is None:
            return None
        value = self._cache.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        if value is None or value == [] or value == "":
            return  # never cache emptiness
        if self._cache is not None:
            self._cache.set(key, value, expire=self.ttl_s)
        if self.mode == "record" and self._cassette is not None:
            self._cassette.set(key, value)

    def close(self) -> None:
        for c in (self._cache, self._cassette):
            if c is not None:
                c.close()
