"""The API's per-key rate limits shared by every replica: one Redis token bucket per (API key,
policy), checked and taken atomically by a Lua script on Redis's own clock.

:class:`RedisRateLimiter` gives the same
:class:`~imagerouter.server.ratelimit.LimitDecision` (and so the same ``RateLimit-Policy`` /
``RateLimit`` / ``Retry-After`` headers) as the in-process
:class:`~imagerouter.server.ratelimit.RateLimiter`, but ``await``-ed. When Redis fails or is slower
than ``op_timeout_s`` it answers from a local ``RateLimiter`` instead (each replica then
enforces the limit on its own, so the fleet admits up to replicas × the limit until Redis is
back), counts the fallback, and leaves Redis alone for a backoff before trying it again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.lifecycle import AsyncResource
from imagerouter.private import redact_url
from imagerouter.replication.connection import (
    REDIS_ERRORS,
    Backoff,
    aclose_quietly,
    guarded,
    make_client,
)
from imagerouter.replication.keys import Keys
from imagerouter.replication.scripts import TOKEN_BUCKET
from imagerouter.server.ratelimit import LimitDecision, LimitPolicy, RateLimiter

__all__ = ["RedisRateLimiter", "decision"]


def decision(policy: str, rule: LimitPolicy, allowed: bool, tokens: float) -> LimitDecision:
    """The decision (and headers) for a bucket left with ``tokens`` after the check."""
    return LimitDecision(
        allowed=allowed,
        policy=policy,
        quota=rule.burst,
        window_s=rule.window_s,
        remaining=max(0, math.floor(tokens)),
        reset_s=math.ceil(max(0.0, rule.burst - tokens) / rule.rate_per_s),
        retry_after_s=0 if allowed else max(1, math.ceil(max(0.0, 1.0 - tokens) / rule.rate_per_s)),
    )


class RedisRateLimiter(AsyncResource):
    """Token buckets per (API key, policy) in Redis, with a local fallback; see the module doc.

    Args:
        redis: a ``redis://`` URL (the limiter owns that client) or a ``redis.asyncio.Redis``.
        policies: the rate-limit policies by name, as for ``RateLimiter``.
        prefix: the key prefix the fleet shares.
        op_timeout_s: cap on one check's Redis round trip.
        retry_initial_s, retry_max_s: how long to leave Redis alone after a failure (doubling).
        fallback: the local limiter to answer from; default a fresh ``RateLimiter(policies)``.
        clock: for the backoff (and the default fallback).
    """

    def __init__(
        self,
        redis: str | Redis,
        policies: Mapping[str, LimitPolicy],
        *,
        prefix: str = "imagerouter",
        op_timeout_s: float = 0.25,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        fallback: RateLimiter | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.policies = dict(policies)
        self.keys = Keys(prefix)
        self.op_timeout_s = op_timeout_s
        self._clock = clock or MonotonicClock()
        self.fallback = fallback or RateLimiter(self.policies, clock=self._clock)
        if isinstance(redis, str):
            self.url = redis
            self._client = make_client(redis, timeout_s=op_timeout_s)
            self._owns_client = True
        else:
            self.url = repr(redis)
            self._client = redis
            self._owns_client = False
        self._script = self._client.register_script(TOKEN_BUCKET)
        self._backoff = Backoff(retry_initial_s, retry_max_s)
        self._retry_at = -math.inf
        self._healthy = True
        #: Decisions answered by the local fallback instead of Redis.
        self.fallbacks = 0
        self.last_error: str | None = None

    async def start(self) -> None:
        """Ping Redis once (a failure only switches to the local fallback)."""
        await self.ping()

    async def aclose(self) -> None:
        """Close the Redis client if the limiter made it."""
        if self._owns_client:
            await aclose_quietly(self._client)

    @property
    def healthy(self) -> bool:
        """False since a Redis call failed, until one succeeds again."""
        return self._healthy

    def status(self) -> dict[str, Any]:
        """The limiter's link as a JSON-ready dict, for ``/readyz`` and metrics."""
        return {
            "backend": "redis",
            "healthy": self._healthy,
            "url": redact_url(self.url),
            "prefix": self.keys.prefix,
            "fallbacks": self.fallbacks,
            "last_error": self.last_error,
        }

    async def ping(self) -> bool:
        """Check the link now (ignoring the backoff); returns and records whether it works."""
        try:
            await guarded(self._client.ping(), self.op_timeout_s)
        except REDIS_ERRORS as exc:
            self._down(exc)
            return False
        self._up()
        return True

    async def decide(self, key: str, policy: str) -> LimitDecision:
        """The same as :meth:`check` (the name the server's middleware calls)."""
        return await self.check(key, policy)

    async def check(self, key: str, policy: str) -> LimitDecision:
        """Take a token from ``key``'s ``policy`` bucket if one is there, and say so.

        Raises KeyError for an unknown policy, like ``RateLimiter.check``.
        """
        rule = self.policies[policy]
        if self._clock.now() < self._retry_at:
            self.fallbacks += 1
            return self.fallback.check(key, policy)
        ttl_ms = math.ceil(rule.burst / rule.rate_per_s * 1000) + 1000
        try:
            allowed, tokens = await guarded(
                self._script(
                    keys=[self.keys.bucket(policy, key)],
                    args=[repr(float(rule.rate_per_s)), rule.burst, 1, ttl_ms],
                ),
                self.op_timeout_s,
            )
        except REDIS_ERRORS as exc:
            self._down(exc)
            self.fallbacks += 1
            return self.fallback.check(key, policy)
        self._up()
        return decision(policy, rule, bool(int(allowed)), float(tokens))

    def _down(self, exc: BaseException) -> None:
        self._healthy = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self._retry_at = self._clock.now() + self._backoff.next()

    def _up(self) -> None:
        if not self._healthy:
            self._backoff.reset()
        self._healthy = True
        self._retry_at = -math.inf
