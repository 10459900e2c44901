"""What a 429 tells the client about when to come back: the headers, and the window they promise.

The window is exactly what the client was told, because the ``inside_retry_after`` counter
measures whether the client kept its side of that promise:

- ``seconds``: ``retry-after: N``, N whole seconds as HTTP's ``delay-seconds`` must be (a
  client such as urllib3 refuses ``0.3``): the time until the bucket's next token, or a random
  429's ``retry_after_s``, rounded *up*. Adapters that set ``retry_after_ms`` also send
  ``retry-after-ms`` with the exact milliseconds; clients read that header first, so it is the
  window (a ``retry_after_s`` of 0.3 is ``retry-after: 1`` and ``retry-after-ms: 300``).
- ``ms``: only ``retry-after-ms``.
- ``http-date``: ``retry-after: <IMF-fixdate>``, rounded up to the next whole second (the
  resolution of an HTTP date); the window ends at that date.
- ``none``: no header and no window (some APIs are reported to send none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate

from mockproviders.profile import RetryAfterFormat

__all__ = ["RetryAfter", "format_number", "make_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """One Retry-After as sent: its headers and the seconds the client was asked to wait."""

    headers: Mapping[str, str]
    window_s: float


def format_number(value: float) -> str:
    """``2.0`` -> ``"2"``, ``0.25`` -> ``"0.25"``: the shortest exact form of a delay."""
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def make_retry_after(
    delay_s: float,
    fmt: RetryAfterFormat,
    *,
    wall_now: float,
    with_ms: bool,
) -> RetryAfter | None:
    """The Retry-After for a 429 asking the client to wait ``delay_s`` seconds.

    Args:
        delay_s: how long the client should wait.
        fmt: the profile's ``retry_after_format``.
        wall_now: Unix time now, to write an HTTP date.
        with_ms: also send the exact ``retry-after-ms`` (the adapter's ``retry_after_ms``).
    """
    if fmt == "none":
        return None
    exact_ms = max(0, math.ceil(delay_s * 1000 - 1e-6))
    if fmt == "ms":
        return RetryAfter({"retry-after-ms": str(exact_ms)}, exact_ms / 1000)
    if fmt == "http-date":
        target = math.ceil(wall_now + delay_s)
        return RetryAfter({"retry-after": formatdate(target, usegmt=True)}, target - wall_now)
    seconds = float(math.ceil(delay_s - 1e-9))
    if with_ms:
        headers = {"retry-after": format_number(seconds), "retry-after-ms": str(exact_ms)}
        return RetryAfter(headers, exact_ms / 1000)
    return RetryAfter({"retry-after": format_number(seconds)}, seconds)
