"""The fetcher against a hostile web server on 127.0.0.1: compression bombs, unknown
encodings, drips, malformed headers, a huge robots.txt, and a resolver that rebinds.
Part of the fault matrix in docs/reliability.md."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
import zlib

import httpx
import pytest

from retrieval.web import Extractor, Fetcher, FetchError, WebSettings, guard
from retrieval.web.encoding import BodyTooLargeError, BoundedDecoder
from splice.bench import webpages
from splice.bench.webpages import ARTICLE_FACT, LocalWeb

LIMIT = 1_000_000


@pytest.fixture()
def web():
    with LocalWeb() as server:
        yield server


def settings(**kw) -> WebSettings:
    base = dict(
        allow_hosts=["127.0.0.1:*"],
        total_timeout_s=3.0,
        read_timeout_s=2.0,
        max_bytes=LIMIT,
        max_retries=1,
        max_retry_wait_s=1,
        no_cache=True,
    )
    return WebSettings(**{**base, **kw})


@pytest.mark.parametrize("path", ["/bomb", "/bomb-deflate"])
async def test_a_compression_bomb_is_cut_at_the_decoded_limit(web: LocalWeb, path: str) -> None:
    webpages._bomb(path == "/bomb")  # built before measuring: the server's cost, not ours
    fetcher = Fetcher(settings())
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="byte limit") as info:
            await fetcher.fetch(web.url(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await fetcher.aclose()
    assert "\n" not in str(info.value)
    # 100 MB once decoded; nothing near that may ever be held.
    assert peak < 20 * LIMIT, f"peak {peak:,} bytes"


async def test_encoded_pages_still_read_and_unknown_encodings_are_one_line(
    web: LocalWeb,
) -> None:
    fetcher = Fetcher(settings())
    page = await fetcher.fetch(web.url("/gzip"))
    assert ARTICLE_FACT in (await Extractor().extract(page)).text
    with pytest.raises(FetchError, match="unsupported content encoding 'br'"):
        await fetcher.fetch(web.url("/brotli"))
    await fetcher.aclose()


def test_bounded_decoder_undoes_chains_and_counts_every_stage() -> None:
    text = b"tide tables " * 1000
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    once = gz.compress(text) + gz.flush()
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    twice = gz.compress(once) + gz.flush()
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw_deflate = raw.compress(text) + raw.flush()
    for encoding, body in [("gzip, gzip", twice), ("deflate", raw_deflate), ("", text)]:
        decoder = BoundedDecoder(encoding, len(text))
        out = b"".join(decoder.feed(body[i : i + 7]) for i in range(0, len(body), 7))
        assert out + decoder.flush() == text, encoding
    # Two gzip members back to back are one body.
    decoder = BoundedDecoder("gzip", 2 * len(text))
    assert decoder.feed(once + once) + decoder.flush() == text + text
    with pytest.raises(BodyTooLargeError):
        BoundedDecoder("gzip, gzip", len(text) - 1).feed(twice)


async def test_drips_and_malformed_headers_cost_one_page(web: LocalWeb) -> None:
    fetcher = Fetcher(settings(total_timeout_s=1.0))
    with pytest.raises(FetchError, match="within 1s"):
        await fetcher.fetch(web.url("/drip"))
    with pytest.raises(FetchError, match="RemoteProtocolError") as info:
        await fetcher.fetch(web.url("/bad-length"))
    assert "\n" not in str(info.value)
    assert (await fetcher.fetch(web.url("/article"))).status == 200
    await fetcher.aclose()


async def test_a_huge_robots_txt_is_read_up_to_the_limit() -> None:
    with LocalWeb(huge_robots=True) as web:
        fetcher = Fetcher(settings())
        tracemalloc.start()
        try:
            assert (await fetcher.fetch(web.url("/article"))).status == 200
            # The rules at the top of the 20 MB file still hold.
            with pytest.raises(FetchError, match="disallowed by robots.txt"):
                await fetcher.fetch(web.url("/private/page"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            await fetcher.aclose()
    assert peak < 20 * LIMIT, f"peak {peak:,} bytes"


class _RebindingResolver:
    """Answers ``first`` once, then a loopback address: the DNS rebinding attack."""

    def __init__(self, first: str, then: str = "127.0.0.1") -> None:
        self.answers = [first]
        self.then = then
        self.calls = 0

    async def __call__(self, host, port, *args, **kwargs):
        self.calls += 1
        addr = self.answers.pop(0) if self.answers else self.then
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (addr, port or 80))]


async def test_the_checked_address_is_the_one_connected_to(monkeypatch) -> None:
    resolver = _RebindingResolver("93.184.216.34")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        return httpx.Response(
            200, stream=httpx.ByteStream(b"<p>pinned</p>"), headers={"Content-Type": "text/html"}
        )

    fetcher = Fetcher(settings(allow_hosts=[]), transport=httpx.MockTransport(handler))
    page = await fetcher.fetch("https://rebind.example:8443/page")
    await fetcher.aclose()
    assert page.status == 200 and page.final_url == "https://rebind.example:8443/page"
    assert resolver.calls == 1  # resolved once, by the guard
    for request in seen:
        assert request.url.host == "93.184.216.34" and request.url.port == 8443
        assert request.headers["Host"] == "rebind.example:8443"
        assert request.extensions["sni_hostname"] == "rebind.example"


async def test_a_rebinding_resolver_never_reaches_the_second_address(
    web: LocalWeb, monkeypatch
) -> None:
    # Loopback plays the "public" first answer so that a real server can take the
    # pinned connection; the second answer is an address nothing listens on.
    resolver = _RebindingResolver("127.0.0.1", then="10.255.255.1")
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    monkeypatch.setattr(guard, "is_public_address", lambda addr: addr == "127.0.0.1")
    fetcher = Fetcher(settings(allow_hosts=[], total_timeout_s=5.0))
    page = await fetcher.fetch(f"http://rebind.test:{web.port}/article")
    await fetcher.aclose()
    assert ARTICLE_FACT in page.text
    assert resolver.calls == 1
