"""The fault engine's per-request decisions, drawn from compiled profiles, are exactly the
rules as written: one fault draw walked over the rates in FAULT_KINDS order, the key's token
bucket first, delays from the profile's distributions, phases laid over the base."""

from __future__ import annotations

import math
import random

import pytest

from imagerouter.clock import FakeClock
from mockproviders.engine import RATE_LIMIT, FaultEngine, stable_seed
from mockproviders.profile import _Z95, FAULT_KINDS, Distribution, FaultProfile
from mockproviders.scenario import Scenario

PROFILE = {
    # Zero rates between non-zero ones: the walk must skip them without moving a threshold.
    "error_rates": {
        "429": 0.05,
        "500": 0.0,
        "502": 0.03,
        "timeout": 0.02,
        "malformed": 0.04,
        "content_policy": 0.01,
    },
    "retry_after_s": 3,
    "rate_limit": {"rpm": 6000, "burst": 5},
    "latency_ms": {"dist": "lognormal", "p50": 80, "p95": 250, "max": 150},
    "generation_ms": {"dist": "uniform", "min": 1000, "max": 3000},
    "phases": [{"at_s": 2, "until_s": 4, "faults": {"error_rates": {"503": 0.5}}}],
}


def reference_delay(dist: Distribution, rng: random.Random) -> float:
    """A delay as the Distribution documents it, computed the long way."""
    if dist.dist == "uniform":
        value = rng.uniform(dist.min or 0.0, dist.max or 0.0)
    elif dist.dist == "lognormal":
        p50, p95 = dist.p50 or 0.0, dist.p95 or 0.0
        sigma = math.log(p95 / p50) / _Z95
        value = rng.lognormvariate(math.log(p50), sigma) if sigma > 0 else p50
    else:
        value = dist.p50 if dist.p50 is not None else dist.min or 0.0
    if dist.min is not None:
        value = max(value, dist.min)
    if dist.max is not None:
        value = min(value, dist.max)
    return value


@pytest.mark.parametrize(
    "spec",
    [
        {"dist": "lognormal", "p50": 80, "p95": 250, "min": 60, "max": 150},
        {"dist": "lognormal", "p50": 80, "p95": 80},
        {"dist": "uniform", "min": 10, "max": 20},
        {"dist": "fixed", "p50": 42},
        {"dist": "fixed", "min": 7},
    ],
)
def test_delay_sampler_draws_what_the_distribution_describes(spec: dict[str, object]) -> None:
    dist = Distribution.model_validate(spec)
    ours, theirs = random.Random(7), random.Random(7)
    sampler = dist.sampler()
    assert [sampler.sample_ms(ours) for _ in range(2000)] == [
        reference_delay(dist, theirs) for _ in range(2000)
    ]


def test_decisions_follow_the_rules_request_by_request() -> None:
    """2,000 requests over a phase change: every decision is the one the rules give, drawn
    from RNGs seeded as the engine seeds them, with the bucket taken first."""
    clock = FakeClock(100.0)
    profile = FaultProfile.model_validate(PROFILE)
    engine = FaultEngine(Scenario(seed=5, providers={"fal": profile}), ["fal"], clock)
    fault_rng = random.Random(stable_seed(5, "fal", "faults"))
    delay_rng = random.Random(stable_seed(5, "fal", "delays"))
    tokens, last = 5.0, clock.now()
    seen: set[str | None] = set()
    for _ in range(2000):
        clock.advance(0.003)
        effective = engine.profile("fal")
        decision = engine.decide("fal", "key-a", effective)
        now = clock.now()
        tokens, last = min(5.0, tokens + (now - last) * 100.0), now
        if tokens < 1.0:
            assert decision.fault == RATE_LIMIT
            assert decision.retry_delay_s == pytest.approx((1.0 - tokens) / 100.0)
            seen.add(RATE_LIMIT)
            continue
        tokens -= 1.0
        draw, cumulative, fault = fault_rng.random(), 0.0, None
        for kind in FAULT_KINDS:
            cumulative += effective.error_rates.get(kind, 0.0)
            if draw < cumulative:
                fault = kind
                break
        seen.add(fault)
        assert decision.fault == fault
        if fault == "429":
            assert decision.retry_delay_s == 3
        if fault is None or fault in ("malformed", "content_policy"):
            assert effective.latency_ms is not None
            assert effective.generation_ms is not None
            assert decision.latency_s == reference_delay(effective.latency_ms, delay_rng) / 1000
            generation = reference_delay(effective.generation_ms, delay_rng) / 1000
            assert decision.generation_s == generation
        else:
            assert decision.latency_s == decision.generation_s == 0.0
    assert {None, RATE_LIMIT, "429", "502", "503", "timeout", "malformed"} <= seen
