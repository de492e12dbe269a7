"""The SSRF guard: the model chooses URLs, so fetching is a security boundary.

By default only http(s) URLs whose host resolves exclusively to public addresses
are allowed; loopback, private, link-local, multicast, reserved and unspecified
addresses (IPv4 and IPv6, including the IPv6 forms that carry an IPv4 address) are
refused. Every redirect target goes through the same check. ``allow_hosts`` opts
specific host:port pairs in (see :func:`allowed`); ``allow_private`` turns the
address check off (a trusted intranet).
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


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries: mapped, 6to4, Teredo (its
    client) or NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(addr: str) -> bool:
    """Globally routable, and, for an IPv6 form that embeds an IPv4 address, that
    address too. Site-local (deprecated) and every special range are refused."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip in _V4_COMPATIBLE:
            return False  # both deprecated, never routed: nothing to judge
        inner = _embedded_ipv4(ip)
        if inner is not None:
            # 6to4 and Teredo reach the IPv4 host through a relay: judge that host.
            ip = inner
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def shown_url(url: str, limit: int = 120) -> str:
    """The URL for an error message: cut, with control characters escaped, so the
    message stays one line whatever the model wrote."""
    return repr(url[:limit])[1:-1]


def allowed(host: str, port: int | None, scheme: str, allow_hosts: Collection[str]) -> bool:
    """``host:port`` opens that port, ``host:*`` every port, a bare ``host`` its
    scheme's default port only (80, 443)."""
    port = port or (443 if scheme == "https" else 80)
    for entry in allow_hosts:
        name, sep, p = entry.rpartition(":") if not entry.endswith("]") else ("", "", "")
        if not sep or name.endswith(":"):  # no port given (or a bare IPv6 literal)
            name, p = entry.strip("[]"), ""
        if name.strip("[]").lower() != host.lower():
            continue
        if p == "*" or (p == "" and port in (80, 443)) or p == str(port):
            return True
    return False


async def check_url(
    url: str, *, allow_hosts: Collection[str] = (), allow_private: bool = False
) -> str | None:
    """Raise :class:`BlockedURLError` unless ``url`` may be fetched.

    Returns the address that was checked, which the caller must connect to (resolve
    once, pin it): a second lookup could answer otherwise (DNS rebinding). ``None``
    when the host was let through by name (``allow_hosts``, ``allow_private``).
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:  # also a malformed IPv6 literal
        raise BlockedURLError(f"refused {shown_url(url)}: malformed URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise BlockedURLError(f"refused {shown_url(url)}: only http and https URLs are fetched")
    host = parts.hostname
    if not host:
        raise BlockedURLError(f"refused {shown_url(url)}: no host")
    if allow_private or allowed(host, port, parts.scheme, allow_hosts):
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or 0, type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise BlockedURLError(
            f"refused {shown_url(url)}: cannot resolve {host} ({exc.strerror})"
        ) from None
    for *_, sockaddr in infos:
        if not is_public_address(sockaddr[0]):
            raise BlockedURLError(
                f"refused {shown_url(url)}: {host} resolves to the non-public address {sockaddr[0]}"
            )
    if not infos:
        raise BlockedURLError(f"refused {shown_url(url)}: {host} resolves to no address")
    return str(infos[0][4][0]).split("%", 1)[0]
