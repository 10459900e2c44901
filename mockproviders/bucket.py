"""The farm's real rate limit, one token bucket per provider and API key, and the
request-budget headers that describe it.

The bucket is the core's :class:`~imagerouter.resilience.token_bucket.TokenBucket` (same
refill, same clock protocol; the farm never learns from headers, it only sends them); this
module adds what the farm needs around it: taking a token with the wait when there is none,
a new rate or size from a changed profile, and the ``x-ratelimit-*`` headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagerouter.clock import Clock
from imagerouter.resilience.token_bucket import TokenBucket

__all__ = ["BucketState", "go_duration", "reconfigured", "state", "take"]


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


def take(bucket: TokenBucket) -> float:
    """Take one token: 0.0 when granted, else the seconds until the next token."""
    return 0.0 if bucket.try_take() else bucket.time_until()


def reconfigured(
    bucket: TokenBucket, per_second: float, capacity: float, clock: Clock
) -> TokenBucket:
    """``bucket``, or (when the profile changed its rate or size) a bucket with the new ones
    that keeps the tokens already earned, up to the new size."""
    if bucket.rate_per_s == per_second and bucket.burst == capacity:
        return bucket
    fresh = TokenBucket(per_second, capacity, clock)  # starts full: lower it to what was earned
    fresh.set_from_headers(None, min(bucket.tokens, capacity), None)
    return fresh


def state(bucket: TokenBucket, limit_rpm: float) -> BucketState:
    """The bucket as the rate-limit headers describe it."""
    tokens, burst = bucket.tokens, bucket.burst
    reset_s = (burst - tokens) / bucket.rate_per_s
    return BucketState(limit_rpm=limit_rpm, remaining=int(tokens), reset_s=reset_s)
