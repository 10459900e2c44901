"""Reading the rate-limit headers providers send: Retry-After in its three forms, and OpenAI's
``x-ratelimit-*`` budget headers. Parsed once here; plugins put the result on their errors."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

__all__ = [
    "RateLimitBudget",
    "parse_duration",
    "parse_rate_limit_budget",
    "parse_retry_after",
    "retry_after_seconds",
]

#: A delay as RFC 9110 writes it (digits), or with a fraction as some providers send it; a
#: sign or an exponent makes it no delay at all.
_DELAY = re.compile(r"\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; multidicts are not
        value = headers.get(name.title())
    return value.strip() if isinstance(value, str) else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, else ``retry-after`` as seconds or HTTP-date.

    Returns ``None`` when no header is present or none parses; never a negative number. A
    value that is no delay (``-100``, ``1e3``, ``soon``) is ignored, so that a valid
    ``retry-after`` beside an invalid ``retry-after-ms`` still counts, and a 429 with neither
    gets the learned cooldown rather than none. ``now`` is the wall clock (unix seconds) used
    for the HTTP-date form.
    """
    millis = _get(headers, "retry-after-ms")
    if millis and _DELAY.fullmatch(millis) and math.isfinite(seconds := float(millis) / 1000.0):
        return seconds
    return retry_after_seconds(_get(headers, "retry-after"), now)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from one ``Retry-After`` value: delta seconds or an HTTP-date.

    ``None`` for a missing or unreadable value (a sign or an exponent included: ``-5`` and
    ``1e3`` are no delay-seconds); never a negative number (a date in the past is 0). ``now``
    is the wall clock (unix seconds) for the HTTP-date form.
    """
    if not value:
        return None
    value = value.strip()
    if _DELAY.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration as OpenAI sends it (``1s``, ``6m0s``, ``12ms``, ``1.5s``)."""
    value = value.strip()
    if not value:
        return None
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != pos:
            return None
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if pos != len(value):
        try:  # a bare number is seconds
            return float(value)
        except ValueError:
            return None
    return total


@dataclass(frozen=True, slots=True)
class RateLimitBudget:
    """OpenAI's request budget for one key, as its ``x-ratelimit-*-requests`` headers told it."""

    limit: int
    remaining: int
    reset_s: float


def parse_rate_limit_budget(headers: Mapping[str, str]) -> RateLimitBudget | None:
    """The request budget from ``x-ratelimit-{limit,remaining,reset}-requests``, if all present."""
    limit = _get(headers, "x-ratelimit-limit-requests")
    if not limit:  # most answers (every provider's but OpenAI's): one lookup, not three
        return None
    remaining = _get(headers, "x-ratelimit-remaining-requests")
    reset = _get(headers, "x-ratelimit-reset-requests")
    if not (remaining and reset):
        return None
    reset_s = parse_duration(reset)
    try:
        return RateLimitBudget(int(limit), int(remaining), reset_s if reset_s is not None else 0.0)
    except ValueError:
        return None
