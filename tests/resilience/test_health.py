"""The health score, driven by a FakeClock."""

from __future__ import annotations

import random

import pytest

from imagerouter.clock import FakeClock
from imagerouter.resilience.health import HealthConfig, HealthScore


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at t=1000 s."""
    return FakeClock(1000.0)


def make(clock: FakeClock, **overrides: object) -> HealthScore:
    """A health score with the default config plus ``overrides``."""
    return HealthScore(HealthConfig(**overrides), clock)  # type: ignore[arg-type]


def test_new_provider_is_neutral(clock: FakeClock) -> None:
    """Before any call the score is the neutral value and nothing else is known."""
    h = make(clock)
    assert h.score == pytest.approx(0.75)
    inputs = h.inputs()
    assert inputs["samples"] == 0
    assert inputs["latency_ewma_s"] is None
    assert inputs["baseline_latency_s"] is None
    assert inputs["last_update_age_s"] is None
    assert h.p50() is None
    assert h.p95() is None


def test_neutral_is_configurable(clock: FakeClock) -> None:
    """The neutral score comes from the config."""
    assert make(clock, neutral=0.5).score == pytest.approx(0.5)


@pytest.mark.parametrize(
    "field",
    [
        {"half_life_s": 0.0},
        {"neutral": 1.5},
        {"prior_weight": 0.0},
        {"latency_tolerance": 0.5},
        {"window": 0},
    ],
)
def test_config_rejects_bad_values(field: dict[str, object]) -> None:
    """A config value out of range is a ValueError naming the field."""
    with pytest.raises(ValueError, match=next(iter(field))):
        HealthConfig(**field)  # type: ignore[arg-type]


def test_successes_raise_score_toward_one(clock: FakeClock) -> None:
    """Steady successes at steady latency push the score close to 1."""
    h = make(clock)
    for _ in range(200):
        h.record(True, 1.0)
        clock.advance(0.1)
    assert h.score > 0.98


def test_failures_drop_score(clock: FakeClock) -> None:
    """Failures drag the score toward 0."""
    h = make(clock)
    for _ in range(100):
        h.record(True, 1.0)
        clock.advance(0.1)
    scores = [h.score]
    for _ in range(3):
        for _ in range(100):
            h.record(False, None)
            clock.advance(0.1)
        scores.append(h.score)
    assert scores[0] > 0.95
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < 0.2


def test_mixed_outcomes_track_success_rate(clock: FakeClock) -> None:
    """With steady traffic the success part tracks the success rate."""
    h = make(clock)
    for i in range(1000):
        h.record(i % 4 != 0, 1.0)
        clock.advance(0.05)
    assert h.inputs()["success_ewma"] == pytest.approx(0.75, abs=0.03)


def test_burst_at_one_instant_counts_every_sample(clock: FakeClock) -> None:
    """Samples with the same timestamp each count (no dt=0 freeze of a time-based EWMA)."""
    h = make(clock)
    for _ in range(50):
        h.record(False)
    assert h.score < 0.05
    assert h.inputs()["samples"] == 50


def test_decays_to_neutral_without_traffic_from_bad(clock: FakeClock) -> None:
    """A failed provider drifts back to neutral when it gets no traffic."""
    h = make(clock)
    for _ in range(20):
        h.record(False)
    low = h.score
    clock.advance(60.0)
    mid = h.score
    clock.advance(600.0)
    assert low < mid < 0.75
    assert h.score == pytest.approx(0.75, abs=0.01)


def test_decays_to_neutral_without_traffic_from_good(clock: FakeClock) -> None:
    """A healthy provider with no recent traffic drifts down to neutral, not below."""
    h = make(clock)
    for _ in range(20):
        h.record(True, 1.0)
    assert h.score > 0.9
    clock.advance(1000.0)
    assert h.score == pytest.approx(0.75, abs=0.01)
    assert h.inputs()["last_update_age_s"] == pytest.approx(1000.0)


def test_recovers_after_failures(clock: FakeClock) -> None:
    """After failures, fresh successes bring the score back up."""
    h = make(clock)
    for _ in range(50):
        h.record(False)
        clock.advance(0.1)
    assert h.score < 0.1
    for _ in range(300):
        h.record(True, 1.0)
        clock.advance(0.1)
    assert h.score > 0.9


def test_latency_above_baseline_lowers_score(clock: FakeClock) -> None:
    """Recent latency well above the provider's own baseline lowers the score."""
    h = make(clock)
    for _ in range(600):
        h.record(True, 1.0)
        clock.advance(1.0)
    assert h.score > 0.98
    for _ in range(30):
        h.record(True, 8.0)
        clock.advance(1.0)
    inputs = h.inputs()
    assert inputs["latency_ewma_s"] > 4.0
    assert inputs["baseline_latency_s"] < 2.0
    assert inputs["latency_factor"] < 0.6
    assert h.score == pytest.approx(inputs["success_ewma"] * inputs["latency_factor"])


def test_latency_within_tolerance_costs_nothing(clock: FakeClock) -> None:
    """Latency up to latency_tolerance times the baseline keeps the latency factor at 1."""
    h = make(clock)
    for _ in range(600):
        h.record(True, 1.0)
        clock.advance(1.0)
    for _ in range(30):
        h.record(True, 1.3)
        clock.advance(1.0)
    assert h.inputs()["latency_factor"] == 1.0


def test_latency_factor_has_a_floor(clock: FakeClock) -> None:
    """However slow, the latency factor stays at min_latency_factor."""
    h = make(clock, min_latency_factor=0.3)
    for _ in range(600):
        h.record(True, 1.0)
        clock.advance(1.0)
    for _ in range(20):
        h.record(True, 100.0)
        clock.advance(1.0)
    assert h.inputs()["latency_factor"] == pytest.approx(0.3)


def test_steady_slow_provider_not_penalised(clock: FakeClock) -> None:
    """A provider that is always slow is judged against its own baseline: factor 1."""
    h = make(clock)
    for _ in range(300):
        h.record(True, 30.0)
        clock.advance(1.0)
    assert h.inputs()["latency_factor"] == 1.0


def test_latency_recovers_when_idle(clock: FakeClock) -> None:
    """After a slow spell and quiet time, the latency factor returns to 1."""
    h = make(clock)
    for _ in range(600):
        h.record(True, 1.0)
        clock.advance(1.0)
    for _ in range(60):
        h.record(True, 4.0)
        clock.advance(1.0)
    clock.advance(600.0)
    assert h.inputs()["latency_factor"] == 1.0


def test_failure_latency_is_ignored(clock: FakeClock) -> None:
    """The latency of a failed call feeds neither the latency average nor the quantiles."""
    h = make(clock)
    h.record(True, 1.0)
    h.record(False, 60.0)
    assert h.inputs()["latency_ewma_s"] == pytest.approx(1.0)
    assert h.p95() == 1.0


def test_quantiles_nearest_rank(clock: FakeClock) -> None:
    """p50 and p95 are nearest-rank quantiles of the recorded latencies."""
    h = make(clock)
    for ms in range(1, 101):
        h.record(True, ms / 1000)
    assert h.p50() == pytest.approx(0.050)
    assert h.p95() == pytest.approx(0.095)
    assert h.quantile(1.0) == pytest.approx(0.100)
    assert h.quantile(0.001) == pytest.approx(0.001)


def test_quantiles_follow_the_ring_buffer(clock: FakeClock) -> None:
    """Only the last ``window`` latencies count: old ones leave the ring."""
    h = make(clock, window=10, quantile_refresh=1)
    for _ in range(10):
        h.record(True, 100.0)
    assert h.p50() == 100.0
    for _ in range(10):
        h.record(True, 1.0)
    assert h.p50() == 1.0
    assert h.p95() == 1.0


def test_quantiles_are_cached_between_refreshes(clock: FakeClock) -> None:
    """With a full ring, quantiles are recomputed only after quantile_refresh new samples."""
    h = make(clock, window=128, quantile_refresh=16)
    for _ in range(128):
        h.record(True, 1.0)
    assert h.p95() == 1.0
    for _ in range(15):
        h.record(True, 9.0)
    assert h.p95() == 1.0  # cached: 15 < 16 new samples
    h.record(True, 9.0)
    assert h.p95() == 9.0


def test_quantiles_fresh_while_few_samples(clock: FakeClock) -> None:
    """With few samples, each new one is reflected at once."""
    h = make(clock)
    h.record(True, 1.0)
    assert h.p50() == 1.0
    h.record(True, 3.0)
    assert h.p95() == 3.0


def test_inputs_are_plain(clock: FakeClock) -> None:
    """inputs() names the documented keys with plain values."""
    h = make(clock)
    h.record(True, 2.0)
    clock.advance(5.0)
    inputs = h.inputs()
    assert set(inputs) == {
        "score",
        "success_ewma",
        "latency_ewma_s",
        "baseline_latency_s",
        "latency_factor",
        "samples",
        "weight",
        "last_update_age_s",
        "p50_s",
        "p95_s",
    }
    assert inputs["samples"] == 1
    assert inputs["last_update_age_s"] == 5.0
    assert inputs["baseline_latency_s"] == 2.0
    assert 0.5 < inputs["weight"] < 1.0


def test_half_life_is_honoured(clock: FakeClock) -> None:
    """A sample's weight halves every half_life_s."""
    h = make(clock, half_life_s=10.0)
    h.record(True, 1.0)
    clock.advance(10.0)
    assert h.inputs()["weight"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_score_matches_its_inputs(seed: int) -> None:
    """score equals success_ewma × latency_factor as inputs() reports them, whatever happened."""
    rng = random.Random(seed)
    clock = FakeClock(1000.0)
    h = make(clock, latency_half_life_s=20.0)
    for _ in range(500):
        h.record(rng.random() < 0.8, rng.choice([None, rng.lognormvariate(0.0, 1.0)]))
        clock.advance(rng.expovariate(2.0))
        if rng.random() < 0.1:
            inputs = h.inputs()
            assert h.score == pytest.approx(inputs["success_ewma"] * inputs["latency_factor"])


def test_success_rate_is_the_calls_a_second_the_provider_took_lately(clock: FakeClock) -> None:
    """Twenty successes a second for five minutes read about 20/s; failures do not count; a
    minute of quiet (two half-lives) leaves a quarter of it."""
    health = HealthScore(HealthConfig(half_life_s=30.0), clock)
    assert health.success_rate() == 0.0
    for _ in range(300 * 20):
        clock.advance(0.05)
        health.record(True, 1.0)
        health.record(False)
    assert health.success_rate() == pytest.approx(20.0, rel=0.02)
    clock.advance(60.0)
    assert health.success_rate() == pytest.approx(5.0, rel=0.02)
