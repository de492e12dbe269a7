"""Content-Encoding decoding that never produces more than a byte budget.

httpx decompresses each network chunk whole before the caller can count it, so a
kilobyte of stacked gzip on the wire becomes a gigabyte in memory before any cap
is checked. Here every stage is asked for at most the budget (zlib's
``max_length``), whatever the chain, and a stage that would give more raises.
"""

from __future__ import annotations

import zlib

__all__ = ["ACCEPT_ENCODING", "BoundedDecoder", "BodyTooLargeError", "UnsupportedEncodingError"]

# Only what can be decoded under a budget is asked for.
ACCEPT_ENCODING = "gzip, deflate"


class BodyTooLargeError(ValueError):
    """Decoding would pass the byte budget."""


class UnsupportedEncodingError(ValueError):
    """A Content-Encoding this decoder does not read."""


class _Stage:
    """One zlib-family decoder, bounded: at most ``limit`` bytes out in total."""

    def __init__(self, kind: str, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self.produced = 0
        self._d = self._new()
        self._started = False

    def _new(self, raw_deflate: bool = False) -> zlib._Decompress:
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped; some servers send raw deflate.
        return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)

    def _take(self, data: bytes) -> bytes:
        room = self.limit - self.produced
        out = self._d.decompress(data, room + 1)
        self.produced += len(out)
        if self.produced > self.limit or self._d.unconsumed_tail:
            raise BodyTooLargeError(f"decodes past the {self.limit:,}-byte limit")
        return out

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        if not self._started and self.kind == "deflate":
            self._started = True
            try:
                return self._feed(data)
            except zlib.error:
                self._d = self._new(raw_deflate=True)
        self._started = True
        return self._feed(data)

    def _feed(self, data: bytes) -> bytes:
        out = [self._take(data)]
        # A gzip body may hold several members back to back.
        while self.kind == "gzip" and self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = self._new()
            out.append(self._take(rest))
        return b"".join(out)

    def flush(self) -> bytes:
        out = self._d.flush()
        self.produced += len(out)
        if self.produced > self.limit:
            raise BodyTooLargeError(f"decodes past the {self.limit:,}-byte limit")
        return out


class BoundedDecoder:
    """Undo a Content-Encoding chain (``"gzip, gzip"``, ``"deflate"``, ``""``…) on
    raw body chunks, raising :class:`BodyTooLargeError` as soon as the decoded body,
    or any intermediate stage, passes ``limit`` bytes."""

    def __init__(self, content_encoding: str, limit: int) -> None:
        self.limit = limit
        self.size = 0
        names = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
        stages = []
        for name in reversed(names):  # the last encoding applied is undone first
            if name in ("gzip", "x-gzip"):
                stages.append(_Stage("gzip", limit))
            elif name == "deflate":
                stages.append(_Stage("deflate", limit))
            elif name != "identity":
                raise UnsupportedEncodingError(f"unsupported content encoding {name!r}")
        self._stages = stages

    def feed(self, raw: bytes) -> bytes:
        data = raw
        for stage in self._stages:
            data = stage.feed(data)
        return self._count(data)

    def flush(self) -> bytes:
        data = b""
        for stage in self._stages:
            data = stage.feed(data) + stage.flush()
        return self._count(data)

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.limit:
            raise BodyTooLargeError(f"over the {self.limit:,}-byte limit")
        return data
