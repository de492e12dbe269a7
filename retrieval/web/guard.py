"""The SSRF guard: the model chooses URLs, so fetching is a security boundary.

By default only http(s) URLs whose host resolves exclusively to public addresses
are allowed; loopback, private, link-local, multicast, reserved and unspecified
addresses (IPv4 and IPv6, including IPv4-mapped IPv6) are refused. Every redirect
target goes through the same check. ``allow_hosts`` opts specific hosts in (tests
use 127.0.0.1); ``allow_private`` turns the address check off (a trusted intranet).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from agent.errors import RetrievalError

__all__ = ["BlockedURLError", "check_url", "is_public_address"]


class BlockedURLError(RetrievalError):
    """A URL was refused before any request was sent."""


def is_public_address(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def check_url(
    url: str, *, allow_hosts: Collection[str] = (), allow_private: bool = False
) -> None:
    """Raise :class:`BlockedURLError` unless ``url`` may be fetched."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:  # also a malformed IPv6 literal
        raise BlockedURLError(f"refused {url[:120]}: malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise BlockedURLError(f"refused {url[:120]}: only http and https URLs are fetched")
    host = parts.hostname
    if not host:
        raise BlockedURLError(f"refused {url[:120]}: no host")
    if host in allow_hosts or allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or 0, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise BlockedURLError(
            f"refused {url[:120]}: cannot resolve {host} ({exc.strerror})"
        ) from None
    for *_, sockaddr in infos:
        if not is_public_address(sockaddr[0]):
            raise BlockedURLError(
                f"refused {url[:120]}: {host} resolves to the non-public address {sockaddr[0]}"
            )
