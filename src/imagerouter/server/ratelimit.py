"""Per-key rate limits on our own API: a token bucket per (key, policy), with the IETF headers.

Each route belongs to a policy (``generate`` is tighter than ``read``). A bucket holds
``burst`` tokens and refills at ``rate_per_s``; a request takes one. The answer carries the
``RateLimit-Policy`` and ``RateLimit`` fields of draft-ietf-httpapi-ratelimit-headers
(``"generate";q=20;w=4`` and ``"generate";r=7;t=3``: quota, window, remaining, seconds until
the quota is whole again) and, when refused, ``Retry-After`` (whole seconds until a token).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.resilience.token_bucket import TokenBucket

__all__ = ["LimitDecision", "LimitPolicy", "RateLimiter"]


class LimitPolicy(BaseModel):
    """One rate-limit policy: ``burst`` requests at once, refilled at ``rate_per_s``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_per_s: float = Field(gt=0, description="Requests per second, sustained.")
    burst: int = Field(ge=1, description="Requests allowed at once (the bucket's depth).")

    @property
    def window_s(self) -> int:
        """Seconds in which the whole quota refills (the draft's ``w``)."""
        return max(1, math.ceil(self.burst / self.rate_per_s))


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The outcome of one check, and the headers that tell the client about it."""

    allowed: bool
    policy: str
    quota: int
    window_s: int
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-Policy`` and ``RateLimit`` (and ``Retry-After`` when refused)."""
        headers = {
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window_s}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_s}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Token buckets per (API key, policy), created on first use; see the module doc."""

    def __init__(
        self,
        policies: Mapping[str, LimitPolicy],
        *,
        clock: Clock | None = None,
        max_buckets: int = 100_000,
    ) -> None:
        self.policies = dict(policies)
        #: Each policy's rule, quota and window, worked out once rather than per request.
        self._rules = {
            name: (rule, rule.burst, rule.window_s) for name, rule in self.policies.items()
        }
        self._clock = clock or MonotonicClock()
        self._max = max_buckets
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    async def decide(self, key: str, policy: str) -> LimitDecision:
        """:meth:`check`, in the async shape the shared (Redis) limiter also has."""
        return self.check(key, policy)

    def check(self, key: str, policy: str) -> LimitDecision:
        """Take a token from ``key``'s ``policy`` bucket if one is there, and say so."""
        rule, quota, window_s = self._rules[policy]
        bucket = self._buckets.get((key, policy))
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()  # refilled buckets are full anyway: forgetting is safe
            bucket = TokenBucket(rule.rate_per_s, rule.burst, self._clock)
            self._buckets[(key, policy)] = bucket
        allowed = bucket.try_take()
        tokens = bucket.tokens
        return LimitDecision(
            allowed=allowed,
            policy=policy,
            quota=quota,
            window_s=window_s,
            remaining=max(0, math.floor(tokens)),
            reset_s=math.ceil(max(0.0, rule.burst - tokens) / rule.rate_per_s),
            retry_after_s=0 if allowed else max(1, math.ceil(bucket.time_until(1.0))),
        )
