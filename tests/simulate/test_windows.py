"""The simulator's Retry-After counter counts exactly what the farm's counter counts."""

from __future__ import annotations

import random

from imagerouter.clock import FakeClock
from imagerouter.simulate.windows import RetryAfterCounter
from mockproviders.stats import FarmStats


def test_counts_match_the_farms_counter_on_random_traffic() -> None:
    """Random 429s (windows of any length, grace changing between them) and requests from a
    few keys: issued, inside and inside-raw counts equal the farm's FarmStats, key by key."""
    rng = random.Random(42)
    clock = FakeClock(0.0)
    farm = FarmStats(["p"], clock)
    ours = RetryAfterCounter()
    keys = ["a", "b", "c"]
    for _ in range(20_000):
        clock.advance(rng.choice((0.0, 0.0, 0.01, 0.05, 0.3)))
        key = rng.choice(keys)
        if rng.random() < 0.2:
            window = rng.choice((0.0, 0.02, 0.5, 1.0, 2.0))
            grace = rng.choice((0.0, 0.1, 0.1, 0.25))
            farm.issued_retry_after("p", key, window, grace)
            ours.issued(key, clock.now(), window, grace)
        else:
            farm.arrived("p", key, generation=True)
            ours.arrived(key, clock.now())
    snapshot = farm.snapshot()["providers"]["p"]["keys"]
    for key in keys:
        expected = {
            name: snapshot[key][name]
            for name in ("retry_after_issued", "inside_retry_after", "inside_retry_after_raw")
        }
        assert ours.counts(key) == expected
        assert expected["inside_retry_after"] > 0


def test_grace_forgives_requests_already_in_flight() -> None:
    """A request inside the grace counts only as raw; after it, as inside too; after the
    window, not at all."""
    counter = RetryAfterCounter()
    counter.issued("k", 10.0, 1.0, 0.1)
    counter.arrived("k", 10.05)
    counter.arrived("k", 10.5)
    counter.arrived("k", 11.0)
    assert counter.counts("k") == {
        "retry_after_issued": 1,
        "inside_retry_after": 1,
        "inside_retry_after_raw": 2,
    }
