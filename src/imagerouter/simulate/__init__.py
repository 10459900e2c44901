"""A virtual-time simulator of the routing policies.

The router's own routing plans, breakers, cooldowns, health scores, retry budget, concurrency
limits and hedging run on a virtual clock against simulated provider accounts that use the mock
farm's own fault engine, so that a launch of millions of jobs over days can be tried in minutes:

    from imagerouter.simulate import apply_policy, load_spec, run_one

    spec = apply_policy(load_spec("launch-week"), "policy.toml").with_overrides(hours=2)
    summary = run_one(spec, Path("out"))

See ``README.md`` beside this file ("Planning a launch") and ``imagerouter simulate --help``.
"""

from imagerouter.simulate.fidelity import FidelityRun, compare_fidelity, run_against_farm
from imagerouter.simulate.run import run_compare, run_one
from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import (
    Account,
    SimulationSettings,
    SimulationSpec,
    apply_policy,
    bundled_simulations,
    load_spec,
)

__all__ = [
    "Account",
    "FidelityRun",
    "Simulation",
    "SimulationSettings",
    "SimulationSpec",
    "apply_policy",
    "bundled_simulations",
    "compare_fidelity",
    "load_spec",
    "run_against_farm",
    "run_compare",
    "run_one",
]
