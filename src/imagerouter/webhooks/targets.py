"""How many webhook requests go to one receiver (a host and port) at once.

A receiver may always take ``floor`` at once. While it answers 2xx promptly with most of its
limit in use, the limit grows by one an answer, up to ``ceiling``; a 429, a 5xx, a timeout,
a failed connection or an answer slower than ``slow_s`` multiplies it by ``backoff`` (never
below the floor): additive increase, multiplicative decrease, as for providers
(:class:`~imagerouter.resilience.concurrency.AIMDLimit`). So one customer's endpoint that keeps
up gets the throughput its completions need, and one that struggles is not pushed harder than
the fixed floor would. Requests beyond the limit wait for that receiver in turn, first come
first served, within their own deadline.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from imagerouter.resilience.concurrency import AIMDLimit

__all__ = ["TargetLimits"]

#: Receivers remembered at most; past it, those with nothing in flight or waiting are forgotten
#: (a forgotten one starts again from the floor).
_REMEMBER_AT_MOST = 4096


@dataclass(slots=True)
class _Target:
    limit: AIMDLimit
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class TargetLimits:
    """Adaptive concurrency per receiver; see the module doc.

    Args:
        floor: requests in flight to one receiver that are always allowed (and the start).
        ceiling: the most ever allowed (at most ``floor``: a fixed limit of ``floor``).
        slow_s: a 2xx slower than this counts as a sign of overload.
        backoff: what a sign of overload multiplies the limit by.
    """

    def __init__(
        self, floor: int, ceiling: int, *, slow_s: float = 2.0, backoff: float = 0.5
    ) -> None:
        if floor < 1:
            raise ValueError(f"the floor must be at least 1, not {floor!r}")
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self._slow_s = slow_s
        self._backoff = backoff
        self._targets: dict[Hashable, _Target] = {}

    def limit_of(self, key: Hashable) -> int:
        """The receiver's current limit (the floor for one not seen yet)."""
        target = self._targets.get(key)
        return target.limit.limit if target is not None else self.floor

    def snapshot(self) -> dict[Hashable, dict[str, int]]:
        """Every remembered receiver's ``{"limit", "in_flight"}``."""
        return {key: target.limit.snapshot() for key, target in self._targets.items()}

    async def acquire(self, key: Hashable, deadline: float) -> None:
        """Wait for a slot of receiver ``key`` until ``deadline`` (the loop's clock; then
        ``TimeoutError``). Every acquire is followed by one :meth:`release` or
        :meth:`give_back`."""
        target = self._target(key)
        if not target.waiters and target.limit.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        target.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if not waiter.done():
                waiter.cancel()
                target.waiters.remove(waiter)
            elif not waiter.cancelled():  # handed a slot as it gave up: pass the slot on
                target.limit.give_back()
                self._wake(target)
            raise

    def release(self, key: Hashable, latency_s: float, overloaded: bool) -> None:
        """The request answered (or failed) after ``latency_s``; ``overloaded``: a 429, 5xx,
        timeout or failed connection."""
        target = self._targets[key]
        target.limit.release(latency_s, overloaded)
        self._wake(target)

    def give_back(self, key: Hashable) -> None:
        """The request never went, or its answer says nothing of the receiver's load."""
        target = self._targets[key]
        target.limit.give_back()
        self._wake(target)

    def _target(self, key: Hashable) -> _Target:
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _REMEMBER_AT_MOST:
                self._forget_idle()
            limit = AIMDLimit(
                initial=self.floor,
                minimum=self.floor,
                maximum=self.ceiling,
                backoff_ratio=self._backoff,
                timeout_s=self._slow_s,
            )
            target = self._targets[key] = _Target(limit)
        return target

    def _forget_idle(self) -> None:
        idle = [k for k, t in self._targets.items() if not t.limit.in_flight and not t.waiters]
        for key in idle:
            del self._targets[key]

    @staticmethod
    def _wake(target: _Target) -> None:
        """Hand free slots to the first waiters (a limit that grew frees more than one)."""
        waiters = target.waiters
        while waiters and target.limit.try_acquire():
            waiter = waiters.popleft()
            if waiter.done():  # gave up already: the slot goes to the next
                target.limit.give_back()
            else:
                waiter.set_result(None)
