"""The pace a key learns from its 429s, in the simulator: the same JobPlan as the router, so a
rate-limited key draws a fraction of the 429s it draws unpaced, and `policies/unpaced.toml`
turns the pace off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imagerouter.simulate.metrics import Metrics
from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import apply_policy, load_spec

UNPACED = Path(__file__).parents[2] / "src/imagerouter/simulate/policies/unpaced.toml"


def run(path: Path, policy: Path | None = None) -> Metrics:
    spec = load_spec(path)
    if policy is not None:
        spec = apply_policy(spec, policy)
    return Simulation(spec).run()


def four_twenty_nines(metrics: Metrics) -> int:
    return sum(sum(per_bucket) for per_bucket in metrics.rate_limited)


def test_paced_keys_draw_a_fraction_of_the_429s_and_unpaced_toml_turns_it_off(
    small_scenario: Callable[..., Path],
) -> None:
    """Over a minute of 20 jobs a second against keys that allow 15 (fal 10 a second, WaveSpeed
    5, each a burst of 2), the paced run gets at most a fifth of the unpaced run's 429s and
    completes at least as many jobs."""
    path = small_scenario(hours=1 / 60, fal="rate_limit = { rpm = 600, burst = 2 }")
    limited = path.read_text().replace(
        "[providers.wavespeed]\n", "[providers.wavespeed]\nrate_limit = { rpm = 300, burst = 2 }\n"
    )
    path.write_text(limited)
    paced = run(path)
    unpaced = run(path, UNPACED)
    assert paced.jobs_arrived == unpaced.jobs_arrived > 1000
    assert four_twenty_nines(unpaced) > 100
    assert four_twenty_nines(paced) * 5 <= four_twenty_nines(unpaced)
    assert paced.jobs_completed >= unpaced.jobs_completed


STORM = """
    seed = 3

    [simulation]
    description = "one key answers 429 to every call for 30 s, then takes everything"
    hours = 0.05
    seed = 3
    shape = "steady"
    peak_per_min = 120
    models = {{ "gpt-image-2" = 1.0 }}

    [[simulation.routing]]
    share = 1.0
    preferences = {{ ignore = ["fal", "wavespeed"] }}

    [simulation.config.router]
    deadline_s = 20

    [providers.openai]
    latency_ms = {{ dist = "lognormal", p50 = 100, p95 = 300, max = 1000 }}
    generation_ms = {{ dist = "lognormal", p50 = 2000, p95 = 4000, max = 8000 }}

    [[providers.openai.phases]]
    at_s = 40
    until_s = 70
    faults = {{ error_rates = {{ "429" = 1.0 }}, retry_after_s = {retry_after} }}
"""


@pytest.mark.parametrize("retry_after", [1, 5])
def test_a_key_paced_through_a_429_storm_serves_again_when_it_ends(
    write_toml: Callable[..., Path], retry_after: int
) -> None:
    """The only provider of a model answers 429 to every call for 30 s, then takes every
    call. Paced, the jobs after the storm complete as they do unpaced, for a fraction of the
    429s, and no breaker trips on a provider that never failed.

    Before: the storm cut the pace once a window down to 0.2 calls a second, a success grew
    it by 1 %, and the one job a pace start let through every 5 s was the oldest, which timed
    out for lack of time left; those timeouts tripped the breaker and no success ever forgot
    the pace: 95 jobs of 366 completed against 327 unpaced (Retry-After 1 s)."""
    path = write_toml("storm.toml", STORM.format(retry_after=retry_after))
    paced, unpaced = run(path), run(path, UNPACED)
    assert paced.jobs_arrived == unpaced.jobs_arrived > 300
    assert paced.jobs_completed >= 0.97 * unpaced.jobs_completed
    assert four_twenty_nines(paced) * 5 <= four_twenty_nines(unpaced)
    assert not any(t.to_state == "open" for t in paced.transitions)
