"""A token bucket: the farm's real rate limit, one per provider and API key; and the
request-budget headers that describe it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BucketState", "TokenBucket", "go_duration"]


@dataclass(frozen=True, slots=True)
class BucketState:
    """What a rate-limited answer can say about the bucket."""

    #: Requests a minute the bucket allows.
    limit_rpm: float
    #: Whole tokens left after this request.
    remaining: int
    #: Seconds until the bucket is full again.
    reset_s: float

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-requests``, the reset as a Go duration: what
        an adapter with ``budget_headers`` sends on every answer of a rate-limited key."""
        return {
            "x-ratelimit-limit-requests": f"{self.limit_rpm:g}",
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": go_duration(self.reset_s),
        }


def go_duration(seconds: float) -> str:
    """Format a duration the way Go's ``time.Duration.String`` does: ``1s``, ``6m0s``, ``12ms``."""
    if seconds < 1e-6:
        return "0s"
    if seconds < 1:
        millis = seconds * 1000
        if millis >= 1:
            return f"{_trim(millis, 3)}ms"
        return f"{_trim(seconds * 1_000_000, 3)}µs"
    hours, rest = divmod(round(seconds, 3), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{_trim(secs, 3)}s"
    if hours or minutes:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return text


def _trim(value: float, digits: int) -> str:
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


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
