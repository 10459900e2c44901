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
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from imagerouter.transport.connection import Connection, HttpResponse, ServerDisconnected
from imagerouter.transport.wire import Origin, OriginCache, encode_request

__all__ = ["HttpPool"]

#: Methods that may be sent again when a kept-alive connection turned out to be dead.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


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
        self._origins = OriginCache()
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
        max_body_bytes: int | None = None,
    ) -> HttpResponse:
        """Send one request and return its whole answer (any status); see the module doc.
        ``max_body_bytes`` lowers the pool's body limit for this answer (a larger one is a
        :class:`~imagerouter.transport.connection.BodyTooLarge`)."""
        origin, host, target = self._origins.split(url)
        data = encode_request(method, target, host, headers, body, self._user_agent)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        expect_body = method != "HEAD"
        for attempt in (1, 2):
            conn = await self._acquire(loop, origin, deadline)
            reused = conn.exchanges > 0
            try:
                response = await conn.exchange(
                    data, expect_body=expect_body, deadline=deadline, max_body=max_body_bytes
                )
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
                    if conn.usable and now - conn.idle_since < self._keepalive_s:
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
