"""A pool of keep-alive HTTP/1.1 connections for requests whose answers are small and whole: a
provider's JSON. It costs about a third of an ``aiohttp.ClientSession`` request in CPU (the
provider calls are most of a job's HTTP), because it does only what those calls need: no
cookies, redirects, proxies, streaming or tracing.

* Connections are kept per origin (scheme, host, port) and reused newest first; one idle for
  ``keepalive_s`` is closed. ``limit`` caps the open connections, ``limit_per_host`` those to
  one origin (0: no cap); a request beyond them waits for a connection to come free.
* ``timeout_s`` bounds the whole request: waiting for a connection, connecting, sending, and
  the answer's last byte. A timeout, a cancel or a malformed answer closes the connection.
* A request is never sent twice, with one exception: when a reused connection ends before a
  single byte of the answer arrived (the server closed it while it sat idle), an idempotent
  request (GET, HEAD, PUT, DELETE, OPTIONS) goes once more on a fresh connection. A POST in
  that case raises :class:`ServerDisconnected`, since the server may have acted on it.
* Errors: ``TimeoutError``; ``ConnectionError`` (:class:`ServerDisconnected`,
  :class:`ProtocolError`) or another ``OSError`` (refused, unreachable, TLS) for the network;
  ``ValueError`` for a URL or header we will not send.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from imagerouter.transport.connection import Connection, HttpResponse, ServerDisconnected

__all__ = ["HttpPool"]

#: Methods that may be sent again when a kept-alive connection turned out to be dead.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_TARGET = "/?&=%:@!$'()*+,;~-._"
#: A request target holding any of these (spaces, controls, non-ASCII) is percent-encoded.
_UNSAFE_IN_TARGET = re.compile(r"[^\x21-\x7e]").search
#: Origins remembered by their URL prefix (``scheme://netloc``), so that a URL of a known
#: origin is not parsed whole again.
_ORIGINS_KEPT = 256

Origin = tuple[str, str, int]


class Resolver(Protocol):
    """What the pool asks for a host name's addresses (aiohttp's resolver interface)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        """Dicts with at least ``host`` (an address), ``port`` and ``family``."""
        ...


class HttpPool:
    """Keep-alive HTTP/1.1 connections per origin; see the module doc. Open it with ``async
    with`` (or close it with :meth:`aclose`); every connection it made is closed there.

    Args:
        limit: open connections at most, over every origin.
        limit_per_host: open connections to one origin at most (0: no cap).
        ssl_context: for https origins (None: the system's default trust store).
        keepalive_s: an idle connection older than this is closed, not reused.
        max_body_bytes: a larger answer (once inflated) is a :class:`ProtocolError`.
        user_agent: sent unless the request names its own.
        truncate_bodies: a body larger than ``max_body_bytes`` is cut there (and its
            connection closed) instead of failing: for callers that read only its start.
        resolver: looks host names up (aiohttp's ``AbstractResolver`` interface: a guard may
            drop addresses or raise an ``OSError``; it is asked about IP literals too); None:
            the loop's own lookup.
    """

    def __init__(
        self,
        *,
        limit: int = 1000,
        limit_per_host: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_s: float = 15.0,
        max_body_bytes: int = 128 * 1024 * 1024,
        user_agent: str = "imagerouter",
        truncate_bodies: bool = False,
        resolver: Resolver | None = None,
    ) -> None:
        if limit < 1 or limit_per_host < 0:
            raise ValueError("limit must be >= 1 and limit_per_host >= 0")
        self._limit = limit
        self._per_host = limit_per_host
        self._ssl = ssl_context
        self._keepalive_s = keepalive_s
        self._max_body = max_body_bytes
        self._user_agent = user_agent
        self._truncate = truncate_bodies
        self._resolver = resolver
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: dict[Origin, int] = {}
        self._live: set[Connection] = set()
        self._total = 0
        self._origins: dict[str, tuple[Origin, str]] = {}
        # per origin, requests waiting for a connection, first come first served: a released
        # connection is handed to the first (the future's result), a freed slot wakes one
        # (None: look again)
        self._waiters: dict[Origin, deque[asyncio.Future[Connection | None]]] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._closed = False

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def open_connections(self) -> int:
        """Connections open now (busy, idle or connecting)."""
        return self._total

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> HttpResponse:
        """Send one request and return its whole answer (any status); see the module doc."""
        origin, host, target = self._split(url)
        data = self._encode(method, target, host, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        expect_body = method != "HEAD"
        for attempt in (1, 2):
            conn = await self._acquire(loop, origin, deadline)
            reused = conn.exchanges > 0
            try:
                response = await conn.exchange(data, expect_body=expect_body, deadline=deadline)
            except ServerDisconnected as exc:
                if attempt == 1 and reused and exc.nothing_received and method in IDEMPOTENT:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            self._release(loop, conn)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close every connection; later requests raise RuntimeError."""
        self._closed = True
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for conn in list(self._live):
            conn.close()
        self._idle.clear()
        for queue in self._waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_result(None)
        self._waiters.clear()

    # --- connections ----------------------------------------------------------------------

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float
    ) -> Connection:
        while True:
            if self._closed:
                raise RuntimeError("the HTTP pool is closed")
            idle = self._idle.get(origin)
            if idle:
                now = loop.time()
                while idle:
                    conn = idle.pop()
                    conn.pooled = False
                    if not conn.closed and now - conn.idle_since < self._keepalive_s:
                        return conn
                    conn.close()
            if self._room_for(origin) or self._close_one_idle():
                return await self._connect(loop, origin, deadline)
            handed = await self._wait_turn(loop, origin, deadline)
            if handed is not None:
                return handed

    async def _wait_turn(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float
    ) -> Connection | None:
        """Queue for ``origin``: a connection handed over, or None when a slot came free."""
        waiter: asyncio.Future[Connection | None] = loop.create_future()
        queue = self._waiters.setdefault(origin, deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
                queue.remove(waiter)
            elif not waiter.cancelled():  # our turn came as we gave up: pass it on
                handed = waiter.result()
                if handed is not None:
                    self._release(loop, handed)
                else:
                    self._wake_one(origin)
            raise

    def _room_for(self, origin: Origin) -> bool:
        if self._total >= self._limit:
            return False
        return self._per_host == 0 or self._open.get(origin, 0) < self._per_host

    def _close_one_idle(self) -> bool:
        """Make room under ``limit`` by closing the oldest idle connection anywhere."""
        if self._total < self._limit:
            return False  # the cap in the way is the per-host one: closing others won't help
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, deadline: float
    ) -> Connection:
        self._open[origin] = self._open.get(origin, 0) + 1
        self._total += 1
        made: list[Connection] = []

        def factory() -> Connection:
            conn = Connection(origin, self._max_body, truncate=self._truncate)
            made.append(conn)
            self._live.add(conn)
            return conn

        try:
            async with asyncio.timeout_at(deadline):
                await self._open_socket(loop, origin, factory)
            conn = made[-1]
            if conn.closed:
                raise ServerDisconnected(
                    "the server closed a new connection", nothing_received=True
                )
        except BaseException:
            for conn in made:  # none has its on_close yet: the slot is ours to give back
                conn.close()
                self._live.discard(conn)
            self._give_back(origin)
            raise
        conn.on_close = self._on_close
        return conn

    async def _open_socket(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: Origin,
        factory: Callable[[], Connection],
    ) -> None:
        """Connect to ``origin`` (through the resolver's addresses, in order, if there is one:
        it is asked about IP literals too, so a guard sees every address we connect to)."""
        scheme, host, port = origin
        tls = self._tls_context() if scheme == "https" else None
        name = host if tls is not None else None
        if self._resolver is None:
            await loop.create_connection(factory, host, port, ssl=tls, server_hostname=name)
            return
        addresses = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        failure: OSError = OSError(f"{host} resolved to no address")
        for address in addresses:
            try:
                await loop.create_connection(
                    factory,
                    address["host"],
                    address["port"],
                    family=address["family"],
                    ssl=tls,
                    server_hostname=name,
                )
                return
            except OSError as exc:
                failure = exc
        raise failure

    def _release(self, loop: asyncio.AbstractEventLoop, conn: Connection) -> None:
        if not conn.reusable or conn.closed or self._closed:
            conn.close()
            return
        queue = self._waiters.get(conn.origin)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # straight to the next in line, still busy
                return
        conn.idle_since = loop.time()
        conn.pooled = True
        self._idle.setdefault(conn.origin, []).append(conn)
        if self._sweep_handle is None:
            self._sweep_handle = loop.call_later(self._keepalive_s, self._sweep)

    def _on_close(self, conn: Connection) -> None:
        self._live.discard(conn)
        if conn.pooled:
            conn.pooled = False
            self._idle[conn.origin].remove(conn)
        self._give_back(conn.origin)

    def _give_back(self, origin: Origin) -> None:
        left = self._open.get(origin, 0) - 1
        if left > 0:
            self._open[origin] = left
        else:
            self._open.pop(origin, None)
        self._total -= 1
        if self._waiters:
            self._wake_one(origin)

    def _wake_one(self, origin: Origin) -> None:
        """A slot came free: the first waiter for ``origin`` looks again, or, if none waits
        there, the first of another origin (the total cap may have held it)."""
        queues = [self._waiters.get(origin), *self._waiters.values()]
        for queue in queues:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return

    def _sweep(self) -> None:
        """Close connections idle longer than ``keepalive_s``."""
        self._sweep_handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for idle in list(self._idle.values()):
            for conn in [c for c in idle if now - c.idle_since >= self._keepalive_s]:
                conn.close()
        if any(self._idle.values()) and not self._closed:
            self._sweep_handle = loop.call_later(self._keepalive_s, self._sweep)

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # the system's trust store, made on first use (it takes ms)
            self._ssl = ssl.create_default_context()
        return self._ssl

    # --- the request's bytes --------------------------------------------------------------

    def _split(self, url: str) -> tuple[Origin, str, str]:
        """``(origin, Host header, request target)``; a known origin's prefix is looked up."""
        start = url.find("://") + 3
        end = len(url)
        for mark in "/?#":
            at = url.find(mark, start)
            if 0 <= at < end:
                end = at
        prefix = url[:end]
        known = self._origins.get(prefix) if start > 2 else None
        target = url[end:].partition("#")[0]
        if known is None or _UNSAFE_IN_TARGET(target):  # new, or odd enough to parse whole
            origin, host, target = _split(url)
            if len(self._origins) >= _ORIGINS_KEPT:
                self._origins.clear()
            self._origins[prefix] = (origin, host)
            return origin, host, target
        if not target.startswith("/"):
            target = f"/{target}"
        return known[0], known[1], target

    def _encode(
        self,
        method: str,
        target: str,
        host: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> bytes:
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"not an HTTP method: {method!r}")
        parts = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
        named: set[str] = set()
        for name, value in (headers or {}).items():
            value = str(value)
            if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value or "\0" in value:
                raise ValueError(f"the header {name!r} cannot be sent as it is")
            named.add(name.lower())
            parts.append(f"{name}: {value}\r\n")
        if "user-agent" not in named:
            parts.append(f"User-Agent: {self._user_agent}\r\n")
        if "accept" not in named:
            parts.append("Accept: */*\r\n")
        if "accept-encoding" not in named:
            parts.append("Accept-Encoding: gzip, deflate\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(body or b'')}\r\n")
        parts.append("\r\n")
        head = "".join(parts).encode("latin-1")
        return head + body if body else head


def _split(url: str) -> tuple[Origin, str, str]:
    """``(origin, Host header, request target)`` of an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a URL with credentials in it is not sent; put them in a header")
    host = parts.hostname
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    port = parts.port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    if _UNSAFE_IN_TARGET(target):
        target = quote(target, safe=_SAFE_TARGET)
    return (scheme, host, port), host_header, target
