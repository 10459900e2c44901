"""Backoff with full jitter and the Retry-After floor, on seeded generators."""

from __future__ import annotations

import random

import pytest

from imagerouter.resilience.backoff import full_jitter


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 10, 100, 10_000])
def test_full_jitter_bounds(attempt: int) -> None:
    """full_jitter stays in [0, min(cap, base·2^attempt)) for any attempt, without overflow."""
    rng = random.Random(attempt)
    ceiling = min(10.0, 0.25 * 2.0 ** min(attempt, 64))
    waits = [full_jitter(attempt, 0.25, 10.0, rng) for _ in range(2000)]
    assert all(0.0 <= w < ceiling for w in waits)
    assert max(waits) > 0.9 * ceiling  # the whole interval is used


def test_full_jitter_spreads_uniformly() -> None:
    """Full jitter is uniform over its interval: the mean is about half the ceiling."""
    rng = random.Random(7)
    waits = [full_jitter(2, base_s=1.0, cap_s=100.0, rng=rng) for _ in range(20_000)]
    assert sum(waits) / len(waits) == pytest.approx(2.0, rel=0.03)


def test_full_jitter_is_reproducible_with_a_seed() -> None:
    """The same seed gives the same waits."""
    a = [full_jitter(3, rng=random.Random(42)) for _ in range(5)]
    b = [full_jitter(3, rng=random.Random(42)) for _ in range(5)]
    assert a == b


def test_full_jitter_without_rng() -> None:
    """Without an rng the module generator is used and the bounds still hold."""
    assert 0.0 <= full_jitter(1) < 0.5


def test_negative_attempt_treated_as_zero() -> None:
    """A negative attempt number waits like the first retry."""
    rng = random.Random(1)
    assert all(full_jitter(-3, 0.25, 10.0, rng) < 0.25 for _ in range(100))
