"""On-disk caching of search results and extracted pages (diskcache), and a
record/replay store that makes eval runs over the web reproducible offline.

Keys: ``search:{backend}:{normalized query}:{n}`` and ``page:{canonical URL}``.
Only successes are stored: an error or an empty result is never cached, so a
transient failure is retried next time.

Values are JSON (diskcache's ``JSONDisk``), and an entry that would need unpickling is
refused, never loaded: a cassette is shared between people, and unpickling runs code.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.errors import RetrievalError

__all__ = ["WebCache", "ReplayMissError", "UnsafeEntryError", "canonical_url", "normalize_query"]


class ReplayMissError(RetrievalError):
    """Replay mode was asked for something that was never recorded."""


class UnsafeEntryError(RetrievalError):
    """A stored entry is not plain JSON (written by pickle, or tampered with)."""


@lru_cache(maxsize=1)  # one class, however many caches are opened
def _json_only_disk() -> Any:
    import diskcache
    from diskcache.core import MODE_BINARY, MODE_RAW

    class JSONOnlyDisk(diskcache.JSONDisk):  # type: ignore[misc]
        def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
            if mode not in (MODE_RAW, MODE_BINARY) or read:
                raise UnsafeEntryError("a cached entry is not JSON")
            try:
                return super().fetch(mode, filename, value, read)
            except (ValueError, zlib.error) as exc:
                raise UnsafeEntryError(f"a cached entry is not JSON ({exc})") from None

        def get(self, key: Any, raw: bool) -> Any:
            if not raw:
                raise UnsafeEntryError("a cached key is not JSON")
            return super().get(key, raw)

    return JSONOnlyDisk


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
        disk = _json_only_disk()
        self._cache = diskcache.Cache(str(directory), disk=disk) if self.enabled else None
        self._cassette = (
            diskcache.Cache(str(cassette), disk=disk) if mode != "live" and cassette else None
        )
        if mode != "live" and self._cassette is None:
            raise RetrievalError(f"{mode} mode needs a cassette directory")
        self.hits = self.misses = 0

    def get(self, key: str) -> Any:
        if self.mode == "replay":
            assert self._cassette is not None
            try:
                value = self._cassette.get(key)
            except UnsafeEntryError:
                raise UnsafeEntryError(
                    f"replay: the cassette's entry for {key[:120]} is not JSON (recorded by an "
                    "older Splice, or altered): record the cassette again"
                ) from None
            if value is None:
                raise ReplayMissError(
                    f"replay: {key[:120]} was not recorded; record it with mode=record first"
                )
            self.hits += 1
            return value
        if self._cache is None:
            return None
        try:
            value = self._cache.get(key)
        except UnsafeEntryError:
            value = None  # an old (pickled) or damaged entry: fetch afresh, overwrite it
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
