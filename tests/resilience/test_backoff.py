"""Backoff with full jitter and the Retry-After floor, on seeded generators."""

from __future__ import annotations

import random

import pytest

from imagerouter.backoff import full_jitter, next_wait


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


def test_next_wait_is_jitter_without_retry_after() -> None:
    """With no Retry-After, next_wait is the jittered backoff."""
    assert next_wait(2, None, rng=random.Random(3)) == full_jitter(2, rng=random.Random(3))


def test_next_wait_never_before_retry_after() -> None:
    """The wait is never shorter than the Retry-After."""
    rng = random.Random(5)
    for attempt in range(10):
        assert next_wait(attempt, 4.0, base_s=0.25, cap_s=10.0, max_wait_s=60.0, rng=rng) >= 4.0


def test_next_wait_jitter_can_exceed_small_retry_after() -> None:
    """When the jitter is longer than a small Retry-After, the longer wait wins."""
    rng = random.Random(11)
    waits = [next_wait(6, 0.1, base_s=1.0, cap_s=30.0, rng=rng) for _ in range(200)]
    assert min(waits) >= 0.1
    assert max(waits) > 20.0


def test_next_wait_caps_jitter_at_max_wait() -> None:
    """The jittered part never exceeds max_wait_s."""
    rng = random.Random(13)
    waits = [
        next_wait(20, None, base_s=1.0, cap_s=100.0, max_wait_s=2.0, rng=rng) for _ in range(500)
    ]
    assert max(waits) <= 2.0


def test_next_wait_returns_long_retry_after_as_is() -> None:
    """A Retry-After above max_wait_s is returned unchanged, for the caller to fail over."""
    assert next_wait(0, 300.0, max_wait_s=60.0, rng=random.Random(1)) == 300.0
