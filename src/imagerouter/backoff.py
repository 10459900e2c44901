"""How long to wait before a retry: exponential backoff with full jitter, never before Retry-After.

::

    full_jitter(attempt) = uniform(0, min(cap_s, base_s · 2^attempt))          (AWS "full jitter")
    next_wait(attempt, retry_after_s) = max(retry_after_s, min(full_jitter(attempt), max_wait_s))

``attempt`` counts the retries already made (0 before the first retry). Full jitter spreads the
retries of many clients over the whole interval, which keeps a fleet from retrying in lockstep.
A Retry-After is a floor, never shortened: if it exceeds ``max_wait_s`` it is still returned,
and the caller compares the result with ``max_wait_s`` (or the job's deadline) to decide to fail
over instead of waiting. Randomness comes from an injected ``random.Random`` (seed it in tests and
in the simulator); without one, the ``random`` module's shared generator is used.
"""

from __future__ import annotations

import random

__all__ = ["full_jitter", "next_wait"]

# 2^64 · any sane base exceeds any sane cap; stop growing the exponent there (no overflow).
_MAX_EXPONENT = 64


def full_jitter(
    attempt: int,
    base_s: float = 0.25,
    cap_s: float = 10.0,
    rng: random.Random | None = None,
) -> float:
    """A random wait in [0, min(cap_s, base_s · 2^attempt)) before retry ``attempt`` (0-based)."""
    exponent = attempt if attempt < _MAX_EXPONENT else _MAX_EXPONENT
    ceiling = base_s * 2.0 ** (exponent if exponent > 0 else 0)
    if ceiling > cap_s:
        ceiling = cap_s
    return (rng.random() if rng is not None else random.random()) * ceiling


def next_wait(
    attempt: int,
    retry_after_s: float | None,
    *,
    base_s: float = 0.25,
    cap_s: float = 10.0,
    max_wait_s: float = 60.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt``: jittered backoff, floored by Retry-After.

    The jittered part is capped at ``max_wait_s``; a ``retry_after_s`` above ``max_wait_s`` is
    returned as is, so the caller sees it is too long and fails over rather than retrying early.
    """
    wait = full_jitter(attempt, base_s, cap_s, rng)
    if wait > max_wait_s:
        wait = max_wait_s
    if retry_after_s is not None and retry_after_s > wait:
        return retry_after_s
    return wait
