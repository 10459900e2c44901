"""Absolute URLs for what the server hands out: ``public_url`` when it is set, else the
request's own scheme and host.

``Forwarded`` (RFC 7239) and ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` say which scheme and
host the client really used, but anyone can send them: they are believed only when the peer is
one of the ``trusted_proxies``, and then only the value the nearest proxy added (the rightmost).
"""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web

from imagerouter.server.keys import settings_key

__all__ = ["absolute_url", "base_url"]

#: A host[:port] as it may appear in a URL: no path, query, user info or spaces can ride along.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$")
_SCHEMES = ("http", "https")


def _from_trusted_proxy(request: web.Request) -> bool:
    networks = request.app[settings_key].proxy_networks()
    if not networks or request.remote is None:
        return False
    try:
        peer = ipaddress.ip_address(request.remote)
    except ValueError:  # a Unix socket
        return False
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
    return any(peer in network for network in networks)


def _last(header: str | None) -> str | None:
    """The rightmost value of a comma-separated header (the nearest proxy's)."""
    if not header:
        return None
    value = header.rsplit(",", 1)[-1].strip()
    return value or None


def _forwarded(request: web.Request) -> tuple[str | None, str | None]:
    """(scheme, host) the nearest trusted proxy says the client used."""
    if request.forwarded:
        nearest = request.forwarded[-1]
        return nearest.get("proto"), nearest.get("host")
    headers = request.headers
    return _last(headers.get("X-Forwarded-Proto")), _last(headers.get("X-Forwarded-Host"))


def base_url(request: web.Request) -> str:
    """``scheme://host[:port]`` (plus ``public_url``'s path, when set) without a trailing
    slash."""
    public = request.app[settings_key].public_url
    if public:
        return public.rstrip("/")
    scheme, host = request.scheme, request.host
    if _from_trusted_proxy(request):
        proxied_scheme, proxied_host = _forwarded(request)
        scheme = (proxied_scheme or scheme).lower()
        host = proxied_host or host
    if scheme not in _SCHEMES:
        scheme = request.scheme
    if not host or not _HOST.match(host):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        address, port = (sockname or ("127.0.0.1", 80))[:2]
        host = f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"
    return f"{scheme}://{host}"


def absolute_url(request: web.Request, url: str) -> str:
    """``url`` as is when it already names a scheme (a provider's CDN, a signed S3 URL), else
    the server-relative ``/path`` joined to :func:`base_url`."""
    if not url.startswith("/") or url.startswith("//"):
        return url
    return f"{base_url(request)}{url}"
