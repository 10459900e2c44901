"""One keep-alive HTTP/1.1 client connection: it sends a whole request and parses the answer
as its bytes arrive (status line, headers, then a body framed by ``Content-Length``, by chunks,
or by the end of the connection).

One exchange at a time (no pipelining). A connection is reusable after an answer only when the
answer said nothing against it (HTTP/1.1 without ``Connection: close``, or HTTP/1.0 with
``keep-alive``) and its body had a length of its own; anything odd (a timeout, a cancel, bytes
nobody asked for, a malformed answer) closes it, so a reused connection never carries half of an
earlier answer.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["BodyTooLarge", "Connection", "HttpResponse", "ProtocolError", "ServerDisconnected"]

#: The most a status line plus headers may take.
MAX_HEAD_BYTES = 64 * 1024
#: A timer may fire this much before its time (the loop's clock resolution): a deadline that
#: close has passed.
_TIMER_SLACK_S = 0.001
#: Answers with no body of their own, whatever their headers say.
_NO_BODY_STATUSES = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The server's bytes are not an HTTP/1.x answer we can read (or exceed our limits)."""


class BodyTooLarge(ProtocolError):
    """The answer's body (once inflated) is larger than the exchange's limit; the connection
    is closed rather than read to the end."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer's body is larger than {limit} bytes")
        self.limit = limit


class ServerDisconnected(ConnectionError):
    """The connection ended before the answer was whole.

    ``nothing_received``: not one byte of an answer had arrived, so the server may never have
    seen the request (a keep-alive connection it closed while idle); only then may an
    idempotent request be sent again on a fresh connection.
    """

    def __init__(self, message: str, *, nothing_received: bool) -> None:
        super().__init__(message)
        self.nothing_received = nothing_received


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A whole answer: status, case-insensitive headers, and the body (decoded from gzip or
    deflate when it was sent so)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Connection(asyncio.Protocol):
    """An HTTP/1.1 client connection; see the module doc. The pool owns it: ``on_close`` is
    called once when the connection ends, however it ends."""

    __slots__ = (
        "_body",
        "_buffer",
        "_chunk_left",
        "_cut",
        "_deadline",
        "_expect_body",
        "_framing",
        "_head",
        "_limit",
        "_loop",
        "_max_body",
        "_timer",
        "_timer_at",
        "_transport",
        "_truncate",
        "_waiter",
        "closed",
        "exchanges",
        "idle_since",
        "on_close",
        "origin",
        "pooled",
        "reusable",
    )

    def __init__(
        self, origin: tuple[str, str, int], max_body: int, *, truncate: bool = False
    ) -> None:
        self.origin = origin
        self.on_close: Callable[[Connection], None] | None = None
        self.closed = False
        self.reusable = False
        self.exchanges = 0
        #: Loop time it was last put back in the pool, and whether it sits there now.
        self.idle_since = 0.0
        self.pooled = False
        self._limit = max_body
        self._max_body = max_body  # this exchange's limit
        self._truncate = truncate
        self._cut = False
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # connected
        self._waiter: asyncio.Future[HttpResponse] | None = None
        #: The one timer armed for this connection and when it fires (see :meth:`exchange`).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0  # the exchange in flight's
        self._buffer = bytearray()
        self._head: tuple[int, CIMultiDictProxy[str], bool] | None = None
        self._expect_body = True
        self._framing = ""  # "length", "chunked" or "close"
        self._chunk_left = 0  # "length": bytes still to come; "chunked": -1 between chunks
        self._body = bytearray()

    # --- the pool's side ------------------------------------------------------------------

    def exchange(
        self, data: bytes, *, expect_body: bool, deadline: float, max_body: int | None = None
    ) -> asyncio.Future[HttpResponse]:
        """Send one whole request; the future holds its answer, or TimeoutError at
        ``deadline`` (loop time), or a ConnectionError. ``max_body`` lowers the connection's
        body limit for this exchange. The caller must ``close()`` the connection if it stops
        waiting early."""
        assert self._transport is not None
        assert self._waiter is None
        loop = self._loop
        self._waiter = waiter = loop.create_future()
        self._head = None
        self._expect_body = expect_body
        self._max_body = self._limit if max_body is None else min(max_body, self._limit)
        self._body = bytearray()
        self._cut = False
        self.reusable = False
        self.exchanges += 1
        # One timer a connection, not one an exchange (arming a loop timer and cancelling it
        # costs 0.7 µs in uvloop, and a job makes five exchanges): a timer left by an earlier
        # exchange that fires before this deadline is kept, and moves on to it when it fires.
        self._deadline = deadline
        if self._timer is None or self._timer_at > deadline:
            self._arm(loop, deadline)
        self._transport.write(data)
        return waiter

    @property
    def usable(self) -> bool:
        """Open, and not on its way to closing (the server's FIN may be in)."""
        transport = self._transport
        return not self.closed and transport is not None and not transport.is_closing()

    def close(self) -> None:
        """End the connection now (whatever exchange it was in fails)."""
        if self._transport is not None and not self.closed:
            self._transport.close()
        self._ended(ServerDisconnected("the connection was closed", nothing_received=False))

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: this connection is unusable
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as exc:
            self._fail(exc)
        if not self._buffer:  # a bytearray keeps its size: a 2 MB answer's would stay
            self._buffer = bytearray()

    def eof_received(self) -> bool:
        self._finish_at_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish_at_eof()
        self._ended(
            ServerDisconnected(
                f"the server closed the connection{f' ({exc})' if exc else ''}",
                nothing_received=not self._buffer and self._head is None,
            )
        )

    # --- parsing --------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while self._waiter is not None:
            if self._head is None:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise ProtocolError("the answer's headers are larger than 64 KiB")
                    return
                if end > MAX_HEAD_BYTES:
                    raise ProtocolError("the answer's headers are larger than 64 KiB")
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                if not self._read_head(head):
                    continue  # an interim 1xx answer: the real one follows
            if self._framing == "length":
                if len(buffer) < self._chunk_left:
                    return
                body = bytes(memoryview(buffer)[: self._chunk_left])  # one copy
                del buffer[: self._chunk_left]
                self._complete(body)
            elif self._framing == "chunked":
                if not self._read_chunks():
                    return
            else:  # "close": the body is whatever arrives until the server closes
                self._body += buffer
                buffer.clear()
                self._over(len(self._body))
                return

    def _read_head(self, head: bytes) -> bool:
        """Take a status line and headers; False for an interim (1xx) answer."""
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise ProtocolError(f"malformed header line: {line[:80]!r}")
            headers.add(name, value.strip())
        if 100 <= status < 200:
            return False
        connection = headers.get("Connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        self._head = (status, CIMultiDictProxy(headers), keep_alive)
        if not self._expect_body or status in _NO_BODY_STATUSES:
            self._framing, self._chunk_left = "length", 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._framing, self._chunk_left = "chunked", -1
        elif (length := headers.get("Content-Length")) is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"bad Content-Length {length[:40]!r}")
            self._framing, self._chunk_left = "length", int(length)
            if self._chunk_left > self._max_body:
                if not self._truncate:
                    raise BodyTooLarge(self._max_body)
                self._chunk_left, self._cut = self._max_body, True
        else:
            self._framing = "close"
        return True

    def _read_chunks(self) -> bool:
        """Take whole chunks from the buffer; True once the last chunk (and trailers) is in."""
        buffer = self._buffer
        while True:
            if self._chunk_left == -1:  # at a chunk-size line
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ProtocolError("a chunk-size line is longer than 1 KiB")
                    return False
                size = bytes(buffer[:end]).split(b";", 1)[0].strip()
                try:
                    self._chunk_left = int(size, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size[:20]!r}") from None
                del buffer[: end + 2]
                if self._chunk_left == 0:
                    self._chunk_left = -2  # the last chunk: trailers until an empty line
            if self._chunk_left == -2:
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                    self._complete()
                    return True
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return False
                del buffer[: end + 4]
                self._complete()
                return True
            if len(buffer) < self._chunk_left + 2:
                return False
            if buffer[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                raise ProtocolError("a chunk does not end with CRLF")
            self._body += buffer[: self._chunk_left]
            del buffer[: self._chunk_left + 2]
            self._chunk_left = -1
            if self._over(len(self._body)):
                return True

    def _over(self, size: int) -> bool:
        """Whether the body passed ``max_body``: a ProtocolError, or (truncating) the end of
        what is read of it, the answer complete with its first ``max_body`` bytes."""
        if size <= self._max_body:
            return False
        if not self._truncate:
            raise BodyTooLarge(self._max_body)
        del self._body[self._max_body :]
        self._cut = True
        self._complete()
        return True

    def _complete(self, body: bytes | None = None) -> None:
        assert self._head is not None
        assert self._waiter is not None
        status, headers, keep_alive = self._head
        if body is None:
            body = bytes(self._body)
        self._body = bytearray()
        encoding = headers.get("Content-Encoding", "").lower()
        if body and encoding in ("gzip", "x-gzip", "deflate") and not self._cut:
            try:
                body = _decompress(body, encoding, self._max_body)
            except zlib.error as exc:
                raise ProtocolError(f"the {encoding} body does not decode: {exc}") from None
        # the connection can carry another exchange only if the answer left nothing behind
        self.reusable = (
            keep_alive and self._framing != "close" and not self._buffer and not self._cut
        )
        self._settle(HttpResponse(status, headers, body))

    def _finish_at_eof(self) -> None:
        """A body framed by the connection's end is whole when the server closes."""
        if self._waiter is not None and self._head is not None and self._framing == "close":
            self._body += self._buffer
            self._buffer.clear()
            try:
                if not self._over(len(self._body)):
                    self._complete()
            except ProtocolError as exc:
                self._fail(exc)

    # --- endings --------------------------------------------------------------------------

    def _settle(self, response: HttpResponse) -> None:
        waiter, self._waiter = self._waiter, None  # the timer stays: see exchange()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._time_out)
        self._timer_at = when

    def _time_out(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # an earlier exchange's timer, and no exchange in flight
        loop = self._loop
        if self._deadline > loop.time() + _TIMER_SLACK_S:
            self._arm(loop, self._deadline)  # an earlier exchange's timer: this one has longer
            return
        self._fail(TimeoutError("no whole answer before the deadline"))

    def _ended(self, exc: BaseException) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if not self.closed:
            self.closed = True
            self.reusable = False
            if self.on_close is not None:
                self.on_close(self)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate a gzip or deflate body (zlib-wrapped or raw deflate), at most ``limit`` bytes."""
    if encoding == "deflate":
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit:
        raise BodyTooLarge(limit)
    return out
