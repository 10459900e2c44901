"""Poisson arrivals along a shape, and the weighted job mix."""

from __future__ import annotations

import math
import random

import pytest

from imagerouter.shapes import expected_jobs, make_shape
from imagerouter.simulate.arrivals import JobMix, Mix, poisson_arrivals


def test_arrivals_follow_the_shape_in_count_order_and_span() -> None:
    """Arrival counts match the shape's integral (within 4σ), in order, inside the run."""
    shape = make_shape("launch_week", peak_per_s=50.0, duration_s=3600.0)
    times = list(poisson_arrivals(shape, random.Random(1), start=100.0))
    expected = expected_jobs(shape)
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)
    assert times == sorted(times)
    assert times[0] >= 100.0
    assert times[-1] < 3700.0
    # the busy plateau gets more arrivals per second than the quiet start
    early = sum(1 for t in times if t < 100.0 + 60.0)
    plateau = sum(1 for t in times if 100.0 + 1000.0 <= t < 100.0 + 1060.0)
    assert plateau > 3 * early


def test_arrivals_are_deterministic_under_a_seed() -> None:
    """The same seed gives the same arrival times."""
    shape = make_shape("steady", peak_per_s=5.0, duration_s=60.0)
    first = list(poisson_arrivals(shape, random.Random(7)))
    assert first == list(poisson_arrivals(shape, random.Random(7)))
    assert first != list(poisson_arrivals(shape, random.Random(8)))


def test_mix_draws_by_weight_and_skips_zero_weights() -> None:
    """A 3:1 mix draws the first item about three times in four; zero weights never appear."""
    mix = Mix({"a": 3.0, "b": 1.0, "never": 0.0})
    rng = random.Random(3)
    draws = [mix.draw(rng) for _ in range(20_000)]
    assert set(draws) == {"a", "b"}
    assert draws.count("a") / len(draws) == pytest.approx(0.75, abs=0.02)
    assert mix.share("b") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive weight"):
        Mix({"x": 0.0})


def test_job_mix_draws_model_and_tier_per_job() -> None:
    """A job mix draws a (model, tier) pair per job, each by its own weights."""
    mix = JobMix({"m1": 1.0, "m2": 1.0}, {"standard": 1.0})
    rng = random.Random(5)
    pairs = {mix.draw(rng) for _ in range(100)}
    assert pairs == {(0, 0), (1, 0)}
    assert mix.models == ["m1", "m2"]
    assert mix.tiers == ["standard"]
