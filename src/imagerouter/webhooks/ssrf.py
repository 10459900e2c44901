"""SSRF protection for webhook URLs: which URLs and addresses the server may send to.

By default only public addresses are allowed: loopback, private, link-local, shared (CGNAT),
multicast, reserved and unspecified addresses are refused, and so are the cloud metadata
endpoints, including IPv4 addresses wrapped in or translated from IPv6 (IPv4-mapped
``::ffff:127.0.0.1``, IPv4-compatible ``::127.0.0.1``, NAT64 ``64:ff9b::/96`` and
``64:ff9b:1::/48``, 6to4, Teredo), judged by the IPv4 address they reach alone; an ISATAP
address is judged by its tunnel's IPv4 end and by its own prefix, whose network carries it.
``allow`` lists CIDRs (``127.0.0.1/32``) or exact host names that are let through anyway.

A URL is checked three times: its syntax and host when it is registered or submitted; its
host's addresses after DNS resolution, at that time too; and at every delivery, by
:class:`GuardedResolver`, the resolver of the sending session, which resolves the host, drops
every refused address and hands aiohttp only the checked ones, so the connection goes to an
address that was checked (no DNS-rebinding window). Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

__all__ = ["BlockedAddress", "GuardedResolver", "UrlPolicy", "UrlRefused", "shown_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud instance-metadata addresses, refused even though some are not "private".
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure wire server
        "192.0.0.192",  # Oracle Cloud
    )
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
RESOLVE_TIMEOUT_S = 5.0
_URL_PARTS = re.compile(
    r"^(?:(?P<scheme>[^:/?#]+):)?(?://(?P<authority>[^/?#]*))?(?P<path>[^?#]*)"
    r"(?:\?(?P<query>[^#]*))?(?:#.*)?$",
    re.DOTALL,
)


class UrlRefused(ValueError):
    """The URL may not be contacted; the message says why (never the URL itself: see
    :func:`shown_url`)."""


def shown_url(url: str) -> str:
    """``url`` as an answer refusing it may repeat it: scheme, host, port and path, without
    its user info, with each query parameter's value hidden (a token often rides there) and
    no fragment. Split as RFC 3986 (appendix B) does, which takes any text and, unlike
    ``urlsplit``, drops no character: a refused control character is still shown."""
    found = _URL_PARTS.match(url)
    assert found is not None  # every group is optional
    scheme, authority, path, query = found.group("scheme", "authority", "path", "query")
    shown = f"{scheme}:" if scheme is not None else ""
    if authority is not None:
        shown += "//" + authority.rpartition("@")[2]
    shown += path
    if query is not None:
        shown += "?" + "&".join(
            f"{name}=***" if sep else name
            for name, sep, _ in (pair.partition("=") for pair in query.split("&"))
        )
    return shown


class BlockedAddress(OSError):
    """Raised by :class:`GuardedResolver` when no resolved address may be contacted."""


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291, deprecated
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)  # RFC 5214 interface ids: [02]00:5efe:a.b.c.d


def _translated_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address of a translating prefix reaches, whatever carries it
    there: IPv4-mapped, IPv4-compatible, NAT64 (well-known and local-use prefixes), 6to4 and
    Teredo (the client); else None. Such a prefix says nothing of the host, only how to reach
    it; Python releases disagree on whether some of them (6to4's, NAT64's local-use) are
    private, so they are not asked."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    value = int(ip)
    if ip in _IPV4_COMPATIBLE and value > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _NAT64_LOCAL_USE:
        # A /48 prefix: the IPv4 address sits in bits 48-63 and 72-87 (bits 64-71 are zero).
        high = (value >> 64) & 0xFFFF
        low = (value >> 40) & 0xFFFF
        return ipaddress.IPv4Address((high << 16) | low)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _isatap_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 tunnel end an ISATAP interface id names, under any prefix; else None. The
    packet goes through the prefix's own network first, so both are judged."""
    value = int(ip)
    if (value >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def _reached(ip: IPAddress) -> tuple[IPAddress, ...]:
    """The addresses whose standing decides whether ``ip`` may be contacted: the IPv4 host of
    a translating prefix alone, an ISATAP address's tunnel end and the address itself, else
    the address."""
    if isinstance(ip, ipaddress.IPv6Address):
        translated = _translated_ipv4(ip)
        if translated is not None:
            return (translated,)
        tunnel_end = _isatap_ipv4(ip)
        if tunnel_end is not None:
            return (tunnel_end, ip)
    return (ip,)


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address embeds or translates to (see :func:`_reached`), else
    ``ip``: an allowed network names the host actually reached."""
    return _reached(ip)[0]


def _why_blocked(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be contacted by default, or None if it is a public address."""
    for candidate in _reached(ip):
        if candidate in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if candidate.is_loopback:
            return "a loopback address"
        if candidate.is_link_local:
            return "a link-local address"
        if candidate.is_multicast:
            return "a multicast address"
        if candidate.is_unspecified:
            return "an unspecified address"
        if candidate.is_private:
            return "a private address"
        if not candidate.is_global:
            return "a reserved or non-public address"
    return None


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which webhook URLs may be contacted.

    Args:
        networks: CIDRs allowed even if not public.
        hosts: host names (lowercase) allowed whatever they resolve to.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_allow(cls, allow: Iterable[str]) -> UrlPolicy:
        """A policy from an allow-list of CIDRs, addresses and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in allow:
            entry = entry.strip()
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def host_allowed(self, host: str) -> bool:
        """True if ``host`` is on the allow-list by name."""
        return host.lower().rstrip(".") in self.hosts

    def why_refused(self, ip: IPAddress) -> str | None:
        """Why this address may not be contacted, or None if it may."""
        if any(_unwrap(ip) in net or ip in net for net in self.networks):
            return None
        return _why_blocked(ip)

    def check_syntax(self, url: str) -> URL:
        """The parsed URL if its form is acceptable (UrlRefused otherwise): http or https, a
        host, no credentials, no whitespace or control character (a parser would drop or
        quote them, and the request would reach another path than the one given); an
        address literal must itself be allowed."""
        if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
            raise UrlRefused("must not contain whitespace or control characters")
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise UrlRefused("is not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise UrlRefused("must be an http:// or https:// URL")
        host = parsed.raw_host
        if not host:
            raise UrlRefused("has no host")
        if parsed.user is not None or parsed.password is not None:
            raise UrlRefused("must not carry credentials")
        try:
            port = parsed.port
        except ValueError:
            raise UrlRefused("has an invalid port") from None
        if port is not None and not 0 < port < 65536:
            raise UrlRefused("has an invalid port")
        if self.host_allowed(host):
            return parsed
        if host.lower().rstrip(".") in METADATA_HOSTS:
            raise UrlRefused(f"host {host} is a cloud metadata endpoint")
        ip = _literal(host)
        if ip is not None:
            reason = self.why_refused(ip)
            if reason is not None:
                raise UrlRefused(f"host {host} is {reason}; not allowed by webhook_allow")
        return parsed

    def filter(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The addresses of ``host`` that may be contacted (BlockedAddress if none)."""
        if self.host_allowed(host):
            return list(addresses)
        allowed: list[str] = []
        refused: list[str] = []
        for address in addresses:
            reason = self.why_refused(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is None:
                allowed.append(address)
            else:
                refused.append(f"{address} ({reason})")
        if not allowed:
            listed = ", ".join(refused) or "no address"
            raise BlockedAddress(f"host {host} resolves to {listed}; not allowed by webhook_allow")
        return allowed

    async def validate(self, url: str, *, timeout_s: float = RESOLVE_TIMEOUT_S) -> URL:
        """Check ``url`` fully: its syntax, then every address its host resolves to.

        Raises UrlRefused with a reason fit for a 422 message.
        """
        parsed = self.check_syntax(url)
        host = parsed.raw_host
        assert host is not None
        if self.host_allowed(host) or _literal(host) is not None:
            return parsed
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, parsed.port or 80, type=socket.SOCK_STREAM), timeout_s
            )
        except (OSError, TimeoutError, ValueError):  # ValueError: not a valid host name
            raise UrlRefused(f"host {host} does not resolve") from None
        try:
            self.filter(host, [str(info[4][0]) for info in infos])
        except BlockedAddress as exc:
            raise UrlRefused(str(exc)) from None
        return parsed


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that hands the connector only addresses ``policy`` allows.

    Args:
        policy: the URL policy.
        inner: the resolver that really asks DNS (aiohttp's threaded resolver by default).
    """

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and keep only the allowed addresses (BlockedAddress if none)."""
        if not self.policy.host_allowed(host) and host.lower().rstrip(".") in METADATA_HOSTS:
            raise BlockedAddress(f"host {host} is a cloud metadata endpoint")
        results = await self._inner.resolve(host, port, family)
        allowed = set(self.policy.filter(host, [r["host"] for r in results]))
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        """Close the inner resolver."""
        await self._inner.close()
