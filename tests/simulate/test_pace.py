"""The pace a key learns from its 429s, in the simulator: the same JobPlan as the router, so a
rate-limited key draws a fraction of the 429s it draws unpaced, and `policies/unpaced.toml`
turns the pace off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
