"""The retry budget: retries into one provider instance capped at a fraction of that
instance's first attempts over a sliding window, with a floor (Envoy ``retry_budget``, Finagle
``RetryBudget``), so an outage of a provider does not turn into a retry storm on it. Pure and
O(1); time comes only from the injected clock.
"""

from __future__ import annotations

import math
from typing import Any

from imagerouter.clock import Clock

__all__ = ["RetryBudget"]


class RetryBudget:
    """Retries capped at a fraction of first attempts over a sliding window.

    The router keeps one per provider instance: a *first attempt* is a job's first call into
    that instance (its first choice, a failover or a hedge), a *retry* a job's call into an
    instance it already failed on. Failovers never spend a budget: they add no load to the
    provider that failed.

    Over the last ``window_s`` seconds (in ``buckets`` buckets, so the window is between
    ``window_s·(1 - 1/buckets)`` and ``window_s`` long), a retry is allowed while
    ``retries + 1 ≤ max(min_retries, ratio · first_attempts)``: a floor as in Envoy's
    ``min_retry_concurrency``, so that a quiet client can still retry.
    """

    __slots__ = (
        "_b_first",
        "_b_retry",
        "_clock",
        "_first",
        "_head",
        "_min_retries",
        "_n",
        "_ratio",
        "_rejected",
        "_retries",
        "_width",
        "_window_s",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_retries: int = 3,
        window_s: float = 10.0,
        *,
        clock: Clock,
        buckets: int = 10,
    ) -> None:
        if not ratio >= 0.0:
            raise ValueError(f"RetryBudget.ratio must be ≥ 0, not {ratio!r}")
        if min_retries < 0:
            raise ValueError(f"RetryBudget.min_retries must be ≥ 0, not {min_retries!r}")
        if not window_s > 0.0 or buckets < 1:
            raise ValueError("RetryBudget.window_s must be > 0 and buckets ≥ 1")
        self._ratio = float(ratio)
        self._min_retries = min_retries
        self._window_s = float(window_s)
        self._clock = clock
        self._n = buckets
        self._width = window_s / buckets
        self._b_first = [0] * buckets
        self._b_retry = [0] * buckets
        self._first = 0
        self._retries = 0
        self._rejected = 0
        self._head = math.floor(clock.now() / self._width)

    def record_first_attempt(self) -> None:
        """A job's first attempt went out: it adds ``ratio`` of a retry to the budget."""
        bid = math.floor(self._clock.now() / self._width)
        if bid != self._head:
            self._advance(bid)
        self._b_first[bid % self._n] += 1
        self._first += 1

    def can_spend(self) -> bool:
        """Would :meth:`try_spend` grant a retry now? Records nothing."""
        bid = math.floor(self._clock.now() / self._width)
        if bid != self._head:
            self._advance(bid)
        cap = self._ratio * self._first
        if cap < self._min_retries:
            cap = self._min_retries
        return self._retries + 1 <= cap

    def try_spend(self) -> bool:
        """Ask to retry: True records the retry, False means "not now"."""
        if self.can_spend():
            self._b_retry[self._head % self._n] += 1
            self._retries += 1
            return True
        self._rejected += 1
        return False

    def reject(self) -> None:
        """Count a retry the caller did not ask for because :meth:`can_spend` said no."""
        self._rejected += 1

    def available(self) -> int:
        """How many retries the budget would grant right now."""
        self._advance(math.floor(self._clock.now() / self._width))
        cap = max(float(self._min_retries), self._ratio * self._first)
        return max(0, math.floor(cap - self._retries))

    def snapshot(self) -> dict[str, Any]:
        """The budget as a plain dict: ``first_attempts`` and ``retries`` in the window,
        ``available``, ``rejected`` (ever), ``ratio``, ``min_retries``, ``window_s``."""
        available = self.available()
        return {
            "first_attempts": self._first,
            "retries": self._retries,
            "available": available,
            "rejected": self._rejected,
            "ratio": self._ratio,
            "min_retries": self._min_retries,
            "window_s": self._window_s,
        }

    def _advance(self, bid: int) -> None:
        """Move the window's head to bucket ``bid``, emptying the buckets it passes."""
        head = self._head
        if bid <= head:
            return
        n = self._n
        if bid - head >= n:
            for i in range(n):
                self._b_first[i] = self._b_retry[i] = 0
            self._first = self._retries = 0
        else:
            b_first, b_retry = self._b_first, self._b_retry
            for b in range(head + 1, bid + 1):
                i = b % n
                self._first -= b_first[i]
                self._retries -= b_retry[i]
                b_first[i] = b_retry[i] = 0
        self._head = bid
