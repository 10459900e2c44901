"""How long to wait before a retry: exponential backoff with full jitter.

::

    full_jitter(attempt) = uniform(0, min(cap_s, base_s · 2^attempt))          (AWS "full jitter")

``attempt`` counts the retries already made (0 before the first retry). Full jitter spreads the
retries of many clients over the whole interval, which keeps a fleet from retrying in lockstep.
A Retry-After is never shortened by it: the routing plan waits out the provider's cooldown
instead of backing off after a 429. Randomness comes from an injected ``random.Random`` (seed it
in tests and in the simulator); without one, the ``random`` module's shared generator is used.
"""

from __future__ import annotations

import random

__all__ = ["full_jitter"]

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
