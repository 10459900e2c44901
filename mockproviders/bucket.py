"""A token bucket: the farm's real rate limit, one per provider and API key."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BucketState", "TokenBucket"]


@dataclass(frozen=True, slots=True)
class BucketState:
    """What a rate-limited answer can say about the bucket (OpenAI's ``x-ratelimit-*``)."""

    #: Requests a minute the bucket allows.
    limit_rpm: float
    #: Whole tokens left after this request.
    remaining: int
    #: Seconds until the bucket is full again.
    reset_s: float


class TokenBucket:
    """``per_second`` tokens a second, up to ``capacity``; starts full.

    Time is passed in (monotonic seconds), so the bucket itself never reads a clock.
    """

    __slots__ = ("_capacity", "_per_second", "_stamp", "_tokens")

    def __init__(self, per_second: float, capacity: float, now: float) -> None:
        self._per_second = per_second
        self._capacity = capacity
        self._tokens = capacity
        self._stamp = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self._capacity, self._tokens + elapsed * self._per_second)
        self._stamp = now

    def configure(self, per_second: float, capacity: float, now: float) -> None:
        """Change the rate and size, keeping the tokens already earned (up to the new size)."""
        if per_second == self._per_second and capacity == self._capacity:
            return
        self._refill(now)
        self._per_second, self._capacity = per_second, capacity
        self._tokens = min(self._tokens, capacity)

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until the next token."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._per_second

    def state(self, now: float, limit_rpm: float) -> BucketState:
        """The bucket as the rate-limit headers describe it."""
        self._refill(now)
        reset_s = (self._capacity - self._tokens) / self._per_second
        return BucketState(limit_rpm=limit_rpm, remaining=int(self._tokens), reset_s=reset_s)
