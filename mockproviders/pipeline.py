"""Runs every adapter route through the fault engine, and turns its decisions into wire effects.

Order for a generation request: ``down`` -> API key -> token bucket -> one random draw ->
``latency_ms`` -> the adapter's handler. Polls only go through ``down`` and the API key.

How each fault reaches the client:

- ``429`` / bucket: the adapter's 429 body, plus the Retry-After headers
  (:mod:`mockproviders.retry_after`); the window is recorded for ``inside_retry_after``.
- ``500``/``502``/``503``/``401``/``down``: the adapter's error body with that status.
- ``timeout``: no response ever comes: the request is held until the client gives up or the
  farm stops (the farm runs aiohttp with ``handler_cancellation=True``, so a client that
  hangs up frees the handler). Counted as ``"timeout"``.
- ``reset``: the TCP connection is reset (``SO_LINGER`` 0, then abort): no response at all.
  Counted as ``"reset"``.
- ``malformed``: the adapter answers normally, then the body is cut in half and sent with 200.
- ``content_policy``: handed to the adapter (``call.content_policy``), which reports it the
  way that provider really does.

Every answer gets the headers the adapter asks for: the key's request budget
(``x-ratelimit-*``) when it sets ``budget_headers``, then whatever its ``decorate`` adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import web

from mockproviders.adapter import Call, ErrorKind, FarmAdapter, FarmError, FarmRoute
from mockproviders.engine import RATE_LIMIT, Decision
from mockproviders.retry_after import make_retry_after
from mockproviders.state import FarmState

__all__ = ["route_handler"]

_SERVER_ERRORS = {"500": 500, "502": 502, "503": 503}


def route_handler(state: FarmState, adapter: FarmAdapter, route: FarmRoute) -> web.Handler:
    """The aiohttp handler for one adapter route, wrapped in the fault pipeline."""

    async def handle(request: web.Request) -> web.StreamResponse:
        """Run one request through the pipeline."""
        return await _Pipeline(state, adapter, route, request).run()

    return handle


class _Pipeline:
    """One request's trip through the farm."""

    __slots__ = ("adapter", "call", "request", "route", "state")

    def __init__(
        self, state: FarmState, adapter: FarmAdapter, route: FarmRoute, request: web.Request
    ) -> None:
        self.state, self.adapter, self.route, self.request = state, adapter, route, request
        name = adapter.name
        self.call = Call(
            request=request,
            provider=name,
            key=adapter.api_key(request),
            profile=state.engine.profile(name),
            started=state.clock.now(),
            jobs=state.jobs[name],
            clock=state.clock,
            pngs=state.pngs,
            videos=state.videos,
        )

    async def run(self) -> web.StreamResponse:
        """down -> API key -> bucket -> random fault -> latency -> the adapter's answer."""
        call, state, name = self.call, self.state, self.adapter.name
        state.stats.arrived(name, call.key, generation=self.route.generation)
        if call.profile.down:
            return self._error(ErrorKind.UNAVAILABLE, 503, f"{name} is down")
        if call.key is None:
            return self._error(ErrorKind.UNAUTHORIZED, 401, "missing or malformed API key")
        if not self.route.generation:
            return self._finish(await self.route.handler(call))
        decision = state.engine.decide(name, call.key, call.profile)
        call.bucket = decision.bucket
        if decision.fault in (RATE_LIMIT, "429"):
            return self._rate_limited(decision)
        if decision.fault in _SERVER_ERRORS:
            status = _SERVER_ERRORS[decision.fault]
            return self._error(ErrorKind.SERVER_ERROR, status, "injected server error")
        if decision.fault == "401":
            return self._error(ErrorKind.UNAUTHORIZED, 401, "invalid API key")
        if decision.fault == "timeout":
            state.stats.answered(name, call.key, "timeout")
            return await self._hold()
        if decision.fault == "reset":
            state.stats.answered(name, call.key, "reset")
            return await self._reset()
        return await self._through(decision)

    async def _through(self, decision: Decision) -> web.StreamResponse:
        """Latency, then the adapter's own answer (maybe cut short as ``malformed``)."""
        call = self.call
        call.content_policy = decision.fault == "content_policy"
        call.generation_s = decision.generation_s
        try:
            call.body = await self.request.json()
        except ValueError:
            call.body = None
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        response = await self.route.handler(call)
        if decision.fault == "malformed":
            response = _truncated(response)
        return self._finish(response)

    def _rate_limited(self, decision: Decision) -> web.StreamResponse:
        call, profile = self.call, self.call.profile
        delay = decision.retry_delay_s or 0.0
        retry_after = make_retry_after(
            delay,
            profile.retry_after_format,
            wall_now=self.state.clock.wall(),
            with_ms=self.adapter.retry_after_ms,
        )
        message = (
            "rate limit exceeded for this API key"
            if decision.fault == RATE_LIMIT
            else "too many requests"
        )
        window = retry_after.window_s if retry_after else None
        response = self._error(ErrorKind.RATE_LIMITED, 429, message, window, finish=False)
        if retry_after is not None:
            response.headers.update(retry_after.headers)
            self.state.stats.issued_retry_after(
                self.adapter.name, call.key, retry_after.window_s, profile.grace_ms / 1000
            )
        return self._finish(response)

    def _error(
        self,
        kind: ErrorKind,
        status: int,
        message: str,
        retry_after_s: float | None = None,
        *,
        finish: bool = True,
    ) -> web.StreamResponse:
        call = self.call
        if call.bucket is None and call.key is not None:
            call.bucket = self.state.engine.bucket_state(self.adapter.name, call.key, call.profile)
        error = FarmError(kind, status, message, retry_after_s)
        response = self.adapter.error_response(error, call)
        return self._finish(response) if finish else response

    def _finish(self, response: web.StreamResponse) -> web.StreamResponse:
        """Provider headers on every answer, and the answer counted."""
        response.headers.update(self.call.extra_headers)
        if self.adapter.budget_headers and self.call.bucket is not None:
            response.headers.update(self.call.bucket.headers())
        self.adapter.decorate(response, self.call)
        self.state.stats.answered(self.adapter.name, self.call.key, response.status)
        return response

    async def _hold(self) -> web.StreamResponse:
        """Never answer: wait for the client to hang up (cancelling us) or the farm to stop."""
        await self.state.stopping.wait()
        return await self._reset()

    async def _reset(self) -> web.StreamResponse:
        """Reset the TCP connection without a response; the handler ends cancelled."""
        transport = self.request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # With handler_cancellation aiohttp cancels us as soon as it sees the connection gone;
        # without it, the farm stopping ends the wait.
        await self.state.stopping.wait()
        raise asyncio.CancelledError


def _truncated(response: web.StreamResponse) -> web.Response:
    """The same answer with status 200 and only the first half of its JSON body."""
    body = response.body if isinstance(response, web.Response) else b""
    data = body if isinstance(body, bytes) else b'{"error": '
    cut = data[: max(1, len(data) // 2)]
    truncated = web.Response(status=200, body=cut, content_type="application/json")
    for name, value in response.headers.items():
        if name.lower() not in ("content-length", "content-type"):
            truncated.headers[name] = value
    return truncated
