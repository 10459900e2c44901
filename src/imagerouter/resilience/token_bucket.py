"""Pacing toward one provider key: a token bucket corrected by the provider's own
``x-ratelimit-*`` headers. Pure and O(1); time comes only from the injected clock.
"""

from __future__ import annotations

import math
from typing import Any

from imagerouter.clock import Clock

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up; starts full.

    Tokens may go negative after :meth:`set_from_headers` learns that the provider has nothing
    left: the bucket is then in debt until the provider's reset time.
    """

    __slots__ = ("_burst", "_clock", "_configured_burst", "_rate", "_t", "_tokens")

    def __init__(self, rate_per_s: float, burst: float, clock: Clock) -> None:
        if not rate_per_s > 0.0:
            raise ValueError(f"TokenBucket.rate_per_s must be > 0, not {rate_per_s!r}")
        if not burst >= 1.0:
            raise ValueError(f"TokenBucket.burst must be ≥ 1, not {burst!r}")
        self._rate = float(rate_per_s)
        self._burst = float(burst)
        self._configured_burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._t = clock.now()

    @property
    def rate_per_s(self) -> float:
        """Tokens added per second."""
        return self._rate

    @property
    def burst(self) -> float:
        """Current capacity: the configured burst, lowered by a smaller learned ``limit``."""
        return self._burst

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while in debt after a learned reset)."""
        self._refill(self._clock.now())
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there; False (and nothing taken) otherwise."""
        now = self._clock.now()
        if now != self._t:
            self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def time_until(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available: 0 if now, ``inf`` if ``n`` exceeds burst."""
        self._refill(self._clock.now())
        missing = n - self._tokens
        if missing <= 0.0:
            return 0.0
        if n > self._burst:
            return math.inf
        return missing / self._rate

    def set_from_headers(
        self, limit: float | None, remaining: float | None, reset_s: float | None
    ) -> None:
        """Learn from a response's rate-limit headers (OpenAI's ``x-ratelimit-*-requests``).

        The provider's view can only make the bucket stricter: ``limit`` lowers the capacity
        (never above the configured burst), ``remaining`` lowers the tokens; with ``remaining``
        at 0, no token is granted until ``reset_s`` seconds from now (the bucket goes into
        debt so that its first token arrives exactly then), after which it refills at its rate.
        A missing header is None and changes nothing.
        """
        self._refill(self._clock.now())
        if limit is not None and limit >= 1:
            self._burst = min(self._configured_burst, float(limit))
            if self._tokens > self._burst:
                self._tokens = self._burst
        if remaining is None:
            return
        if remaining <= 0:
            wait = reset_s if reset_s is not None and reset_s > 0.0 else 0.0
            ceiling = 1.0 - self._rate * wait if wait else 0.0
            if ceiling < self._tokens:
                self._tokens = ceiling
        elif remaining < self._tokens:
            self._tokens = float(remaining)

    def snapshot(self) -> dict[str, Any]:
        """The bucket as a plain dict: ``tokens``, ``updated_at`` (monotonic), ``rate_per_s``,
        ``burst``."""
        self._refill(self._clock.now())
        return {
            "tokens": self._tokens,
            "updated_at": self._t,
            "rate_per_s": self._rate,
            "burst": self._burst,
        }

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last look, up to the capacity."""
        dt = now - self._t
        if dt > 0.0:
            tokens = self._tokens + dt * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
            self._t = now
