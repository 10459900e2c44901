"""Sending one signed webhook request, through a session that reaches only allowed addresses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import cast

from aiohttp.abc import AbstractResolver

from imagerouter.lifecycle import AsyncResource
from imagerouter.resilience.headers import parse_retry_after
from imagerouter.transport import HttpPool
from imagerouter.transport.wire import Origin, OriginCache, origin_text
from imagerouter.webhooks.retry import NotSent, SendResult
from imagerouter.webhooks.signing import sign_headers
from imagerouter.webhooks.ssrf import BlockedAddress, GuardedResolver, UrlPolicy, UrlRefused
from imagerouter.webhooks.targets import ReceiverBusy, ReceiverPaused, TargetLimits

__all__ = ["WebhookSender"]

USER_AGENT = "imagerouter-webhooks/1"
_SNIPPET = 200
#: Of a receiver's answer we read at most this (the error text keeps its first _SNIPPET
#: bytes); a longer one ends there and its connection is closed rather than kept.
_READ_AT_MOST = 64 * 1024
#: Accepted URLs remembered at most (the set starts again when full).
_ACCEPTED_AT_MOST = 4096
#: A webhook that found no room is given back for at most this long (a line's estimate from a
#: receiver that answers only by timing out would run to hours).
_LINE_WAIT_AT_MOST_S = 300.0


class WebhookSender(AsyncResource):
    """Posts signed webhook bodies; an async context manager owning its connection pool.

    The pool (:class:`~imagerouter.transport.HttpPool`) never follows redirects, knows no
    proxy (a proxy would resolve names where the policy cannot see them) and resolves through
    :class:`~imagerouter.webhooks.ssrf.GuardedResolver`.

    Args:
        policy: which URLs and addresses may be contacted.
        timeout_s: the whole request's time limit, the wait for a slot of its receiver
            included. A request waits at most half of it for that slot, so that one sent has
            at least the other half to be answered in: one sent with moments left would time
            out at once and leave its receiver working on an answer nobody reads. One that
            waited that long is not sent (:class:`~imagerouter.webhooks.retry.NotSent`).
        max_connections: connections open at once.
        per_target: requests in flight at once to one host and port that are always allowed
            (a receiver that hangs holds no more than these; its other attempts wait for one,
            within the timeout), unless it refuses with a Retry-After; with replicas sharing
            state, the fleet's, each taking its share (``TargetLimits.share``).
        per_target_max: the most that one host and port is given while it keeps up: its limit
            grows from ``per_target`` towards this while it answers 2xx promptly, and falls
            back on a 429, a 5xx, a timeout or a failed connection
            (:class:`~imagerouter.webhooks.targets.TargetLimits`; at most ``per_target``: a
            fixed limit); the fleet's too.
        pause_at_most_s: a receiver that refuses two round trips running with a Retry-After
            (a 429 or 503) is paused (host and port) for that long, at most this (0: never;
            each delivery's retry still honours it within the schedule; see
            :class:`~imagerouter.webhooks.targets.TargetLimits`). What would go during the
            pause is not sent (:class:`~imagerouter.webhooks.retry.NotSent`).
        resolver: the DNS resolver under the guard (aiohttp's threaded resolver by default).
    """

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        timeout_s: float = 15.0,
        max_connections: int = 64,
        per_target: int = 4,
        per_target_max: int = 64,
        pause_at_most_s: float = 60.0,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        #: Requests in flight per receiver, adapting between the two bounds.
        self.targets = TargetLimits(per_target, per_target_max, pause_at_most_s=pause_at_most_s)
        self._origins = OriginCache()
        self._resolver = resolver
        self._guard: GuardedResolver | None = None
        self._pool: HttpPool | None = None
        #: URLs whose form the policy accepted (most webhooks go to a few URLs; the check
        #: parses the whole URL, 3 µs a send). Their addresses are checked at every connect.
        self._accepted: set[str] = set()

    async def start(self) -> None:
        """Open the guarded pool; ``async with`` calls it."""
        self._guard = GuardedResolver(self.policy, self._resolver)
        # no cookie is kept: none goes back to a receiver, or to another account's
        self._pool = HttpPool(
            limit=self._max_connections,
            limit_per_host=self.targets.ceiling,
            max_body_bytes=_READ_AT_MOST,
            truncate_bodies=True,
            user_agent=USER_AGENT,
            resolver=self._guard,
        )

    async def aclose(self) -> None:
        """Close the pool and the resolver."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        if self._guard is not None:
            await self._guard.close()
            self._guard = None

    def busiest_receivers(self, count: int) -> list[dict[str, int | str]]:
        """The ``count`` receivers with the most webhooks waiting for them, then in flight:
        each ``{"receiver", "limit", "in_flight", "waiting"}``, the receiver named by its
        origin only (``https://host:port``): a webhook URL's path or query may hold the
        customer's token, and is never shown."""
        return [
            {"receiver": origin_text(cast(Origin, key)), **figures}  # keyed by origin in send
            for key, figures in self.targets.busiest(count)
        ]

    async def send(
        self,
        url: str,
        msg_id: str,
        body: bytes,
        secrets: Sequence[str],
        *,
        timestamp: int | None = None,
    ) -> SendResult:
        """POST ``body`` to ``url`` signed with ``secrets``; what came of it (never raises for
        network trouble: a refused URL, a timeout or a reset is in the result, and a request
        its receiver had no room for, or asked to pause, is :class:`NotSent`)."""
        if self._pool is None:
            raise RuntimeError("the webhook sender is not open")
        if url not in self._accepted:
            try:
                self.policy.check_syntax(url)
            except UrlRefused as exc:
                return SendResult(None, None, f"refused: the webhook URL {exc}", refused=True)
            if len(self._accepted) >= _ACCEPTED_AT_MOST:
                self._accepted.clear()
            self._accepted.add(url)
        headers = {
            **sign_headers(secrets, msg_id, timestamp or int(time.time()), body),
            "Content-Type": "application/json",
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            target = self._origins.split(url)[0]
            ticket = await self.targets.acquire(target, started + self.timeout_s / 2)
        except ReceiverBusy as exc:
            # back after as long again, or once the line ahead has been answered: a long
            # line's webhooks would otherwise come back, and wait, again and again
            waited = self.timeout_s / 2
            wait_s = max(waited, min(exc.line_wait_s, _LINE_WAIT_AT_MOST_S))
            message = f"not sent: waited {waited:g} s for the receiver"
            return SendResult(None, None, message, not_sent=NotSent("busy", wait_s))
        except ReceiverPaused as exc:
            left = max(0.0, exc.until - loop.time())
            message = f"not sent: the receiver asked for a pause ({left:.1f} s left)"
            wait_s = left + min(exc.line_wait_s, _LINE_WAIT_AT_MOST_S)
            return SendResult(None, None, message, not_sent=NotSent("paused", wait_s))
        except ValueError as exc:
            return SendResult(None, None, f"cannot send: {exc}")
        sent = time.perf_counter()  # the attempt's latency: the receiver's, not the line's
        try:
            answer = await self._pool.request(
                "POST",
                url,
                headers=headers,
                body=body,
                timeout_s=started + self.timeout_s - loop.time(),
            )
        except BlockedAddress as exc:
            self.targets.give_back(target)
            return SendResult(None, None, f"refused: {exc}", refused=True)
        except (TimeoutError, OSError) as exc:
            latency_s = time.perf_counter() - sent
            self.targets.release(target, ticket, latency_s, overloaded=True)
            if isinstance(exc, TimeoutError):
                message = f"timed out after {self.timeout_s:g} s"
            else:
                message = f"connection failed: {exc}"
            return SendResult(None, latency_s * 1000, message)
        except ValueError as exc:
            self.targets.give_back(target)
            return SendResult(None, (time.perf_counter() - sent) * 1000, f"cannot send: {exc}")
        except BaseException:
            self.targets.give_back(target)
            raise
        latency_s = time.perf_counter() - sent
        status, snippet = answer.status, answer.body[:_SNIPPET]
        retry_after = parse_retry_after(answer.headers, now=time.time())
        error = None
        if 200 <= status < 300:
            self.targets.release(target, ticket, latency_s, overloaded=False)
        else:
            if status == 429 or status >= 500:
                asked = retry_after if status in (429, 503) else None  # pauses: see targets
                self.targets.release(
                    target, ticket, latency_s, True, retry_after_s=asked, status=status
                )
            else:  # the receiver refused this one: nothing said of its load
                self.targets.give_back(target)
            text = snippet.decode("utf-8", "replace").strip()
            error = f"HTTP {status}" + (f": {text}" if text else "")
        return SendResult(status, latency_s * 1000, error, retry_after)
