"""Safe page fetching with httpx: the SSRF guard with the checked address pinned,
robots.txt, bounded concurrency, timeouts, a size cap on the decoded bytes whatever
the Content-Encoding chain, re-checked redirects, charset detection, and bounded
retries that honour Retry-After (tenacity).
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import time
import zlib
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from agent.errors import RetrievalError
from agent.settings import load

from .encoding import (
    ACCEPT_ENCODING,
    BodyTooLargeError,
    BoundedDecoder,
    UnsupportedEncodingError,
)
from .guard import check_url, shown_url
from .settings import WebSettings

__all__ = ["Fetcher", "FetchError", "FetchedPage", "decode_body", "TEXT_TYPES"]

TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")
PDF_TYPE = "application/pdf"
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(RetrievalError):
    """A page could not be fetched; the message says why in one line."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{shown_url(url, 150)}: {reason}")


class _Retryable(Exception):
    def __init__(self, reason: str, wait_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class FetchedPage(BaseModel):
    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes = b""
    text: str = ""
    encoding: str = ""


def _retry_after(value: str | None) -> float:
    """Seconds to wait: delta-seconds or an HTTP date; anything malformed is 0."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return 0.0
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else 0.0


_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.I)


def declared_charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type header, in any letter case."""
    m = _CHARSET.search(content_type or "")
    return m.group(1) if m else None


def decode_body(body: bytes, declared: str | None) -> tuple[str, str]:
    """(text, encoding). A declared charset that the bytes contradict loses to UTF-8
    or to charset detection."""
    declared = (declared or "").lower().strip() or None
    if declared in (None, "iso-8859-1", "latin-1", "us-ascii", "ascii", "windows-1252", "cp1252"):
        # Single-byte declarations never fail to decode, so they hide mojibake: prefer
        # UTF-8 when the bytes are valid UTF-8 with non-ASCII characters.
        try:
            text = body.decode("utf-8")
            if declared is None or any(b > 127 for b in body):
                return text, "utf-8"
        except UnicodeDecodeError:
            pass
    if declared:
        try:
            return body.decode(declared), declared
        except (UnicodeDecodeError, LookupError):
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(body).best()
    if best is not None:
        if best.encoding.replace("_", "").startswith(("cp125", "iso8859", "latin")):
            # Detection cannot tell the single-byte Latin code pages apart on short
            # pages; Windows-1252 is by far the commonest mislabelled one.
            try:
                return body.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                pass
        return str(best), best.encoding
    return body.decode("utf-8", errors="replace"), "utf-8"


class Fetcher:
    def __init__(
        self,
        settings: WebSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.s = settings or load(WebSettings)
        timeout = httpx.Timeout(
            connect=self.s.connect_timeout_s,
            read=self.s.read_timeout_s,
            write=self.s.read_timeout_s,
            pool=self.s.total_timeout_s,
        )
        self.client = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": self.s.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        )
        self._global = asyncio.Semaphore(self.s.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._robots: dict[str, Any] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def fetch(self, url: str) -> FetchedPage:
        """The page at ``url`` (after redirects), or :class:`FetchError`."""
        try:
            async with asyncio.timeout(self.s.total_timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise FetchError(
                url, f"no complete answer within {self.s.total_timeout_s:g}s"
            ) from None

    async def _follow(self, url: str) -> FetchedPage:
        current = url
        for _ in range(self.s.max_redirects + 1):
            pin = await check_url(
                current, allow_hosts=self.s.allow_hosts, allow_private=self.s.allow_private
            )
            if self.s.respect_robots and not await self._robots_allow(current, pin):
                raise FetchError(current, "disallowed by robots.txt")
            status, headers, body = await self._get_with_retries(current, pin)
            if status in REDIRECTS:
                location = headers.get("location")
                if not location:
                    raise FetchError(current, f"HTTP {status} without a Location header")
                current = urljoin(current, location)
                continue
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            page = FetchedPage(
                url=url, final_url=current, status=status, content_type=ctype, body=body
            )
            if ctype in TEXT_TYPES or not ctype:
                content_type = httpx.Headers(headers).get("content-type", "")
                page.text, page.encoding = decode_body(body, declared_charset(content_type))
            return page
        raise FetchError(url, f"more than {self.s.max_redirects} redirects")

    async def _get_with_retries(
        self, url: str, pin: str | None
    ) -> tuple[int, dict[str, str], bytes]:
        def wait(state: Any) -> float:
            exc = state.outcome.exception()
            return min(
                getattr(exc, "wait_s", 0.0) or 0.5 * 2 ** (state.attempt_number - 1),
                self.s.max_retry_wait_s,
            )

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.s.max_retries + 1),
                wait=wait,
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    return await self._get(url, pin)
        except _Retryable as exc:
            raise FetchError(url, f"{exc.reason} after {self.s.max_retries + 1} attempts") from None
        raise AssertionError("unreachable")

    def _host_gate(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).netloc.lower()
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.s.per_host)
        return self._hosts[host]

    def _request(self, url: str, pin: str | None) -> httpx.Request:
        """GET ``url``; with ``pin``, connect to that address and nothing else, while
        the Host header and TLS (SNI and certificate check) still use the name."""
        if pin is None:
            return self.client.build_request("GET", url)
        target = httpx.URL(url)
        host = target.netloc.decode("ascii").rpartition("@")[2]
        return self.client.build_request(
            "GET",
            target.copy_with(host=pin),
            headers={"Host": host},
            extensions={"sni_hostname": target.host},
        )

    async def _get(
        self, url: str, pin: str | None, *, truncate: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET. ``truncate`` keeps the first ``max_bytes`` of a longer body
        instead of failing (robots.txt: its rules come first)."""
        async with self._host_gate(url), self._global:
            try:
                resp = await self.client.send(self._request(url, pin), stream=True)
                try:
                    return await self._read(url, resp, truncate)
                finally:
                    await resp.aclose()
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                raise _Retryable(f"{type(exc).__name__}") from None
            except httpx.TimeoutException as exc:
                raise FetchError(url, f"timed out ({type(exc).__name__})") from None
            except httpx.HTTPError as exc:
                raise FetchError(url, f"{type(exc).__name__}: {str(exc)[:100]}") from None

    async def _read(
        self, url: str, resp: httpx.Response, truncate: bool
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {k.lower(): v for k, v in resp.headers.items()}
        status = resp.status_code
        if status in REDIRECTS:
            return status, headers, b""
        if status == 429 or status >= 500:
            wait_s = _retry_after(headers.get("retry-after"))
            if wait_s > self.s.max_retry_wait_s:
                raise FetchError(
                    url,
                    f"HTTP {status}, retry after {wait_s:.0f}s "
                    f"(more than the {self.s.max_retry_wait_s:g}s cap)",
                )
            raise _Retryable(f"HTTP {status}", wait_s)
        if status >= 400:
            raise FetchError(url, f"HTTP {status}")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in TEXT_TYPES and ctype != PDF_TYPE:
            raise FetchError(
                url,
                f"unsupported content type {ctype}: only HTML, plain text and PDF are read",
            )
        length = headers.get("content-length", "")
        declared = int(length) if length.isdigit() else 0
        if declared > self.s.max_bytes and not truncate:
            raise FetchError(url, f"{declared:,} bytes, over the {self.s.max_bytes:,}-byte limit")
        body = bytearray()
        try:
            # Raw bytes, decoded here under the cap: httpx would inflate
            # each chunk whole before the cap could be checked.
            decoder = BoundedDecoder(headers.get("content-encoding", ""), self.s.max_bytes)
            async for chunk in resp.aiter_raw():
                body += decoder.feed(chunk)
            body += decoder.flush()
        except BodyTooLargeError as exc:
            if not truncate:
                raise FetchError(url, str(exc)) from None
        except UnsupportedEncodingError as exc:
            raise FetchError(url, str(exc)) from None
        except zlib.error as exc:
            raise FetchError(url, f"corrupt compressed body ({exc})") from None
        return status, headers, bytes(body)

    async def _robots_allow(self, url: str, pin: str | None) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:  # one robots.txt request per host, even under concurrency
            if origin not in self._robots:
                self._robots[origin] = await self._load_robots(origin, pin)
        rules = self._robots[origin]
        if rules is None:
            return True
        if rules is False:
            return False
        return bool(rules.can_fetch(url, "Splice"))

    async def _load_robots(self, origin: str, pin: str | None) -> Any:
        from protego import Protego

        try:
            status, _, body = await self._get(origin + "/robots.txt", pin, truncate=True)
        except FetchError as exc:
            # 4xx means no rules; a server error means "stay away for now".
            return False if exc.reason.startswith("HTTP 5") else None
        except _Retryable:
            return False
        if status != 200:
            return None
        return Protego.parse(body.decode("utf-8", errors="replace"))
