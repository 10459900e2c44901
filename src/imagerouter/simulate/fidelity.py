"""The fidelity check: the same scenario through the real router against the real farm (real
HTTP, real time), and in the simulator, measured the same way.

Both sides draw the same arrival times and the same job mix from the scenario's seed, use the
same router config (with the farm's fast poll schedule, as
:func:`mockproviders.bridge.farm_router` sets it), and
report the same :class:`FidelityRun` figures: jobs served per provider instance, failovers
(successive calls of a job moving to another instance) and breaker trips.

Accounts with their own ``faults`` or a ``max_concurrent`` cannot be served by the real farm
(its profiles are per provider, and it has no concurrency cap), so such scenarios are refused.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from imagerouter.errors import ImageRouterError
from imagerouter.generation import ImageRequest, ImageResult
from imagerouter.resilience.breaker import BreakerState, BreakerTransition
from imagerouter.router import Router
from imagerouter.shapes import make_shape
from imagerouter.simulate.arrivals import JobMix, poisson_arrivals
from imagerouter.simulate.metrics import count_failovers
from imagerouter.simulate.simulator import Simulation
from imagerouter.simulate.spec import SimulationSpec, deep_merge
from imagerouter.simulate.world import router_config
from mockproviders.bridge import FARM_OPTIONS
from mockproviders.engine import stable_seed
from mockproviders.farm import Farm

__all__ = ["FidelityRun", "compare_fidelity", "farm_spec", "run_against_farm", "run_simulated"]


@dataclass(frozen=True)
class FidelityRun:
    """What one side of the fidelity check measured.

    Attributes:
        jobs: jobs that arrived.
        completed: jobs that got an image.
        served: jobs served per provider instance.
        failovers: successive calls of a job that moved to another instance, summed.
        jobs_failed_over: jobs with at least one such move.
        trips: breaker trips (transitions to open) per instance.
        calls: provider calls per instance (skipped candidates excluded).
    """

    jobs: int
    completed: int
    served: dict[str, int] = field(default_factory=dict)
    failovers: int = 0
    jobs_failed_over: int = 0
    trips: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def shares(self) -> dict[str, float]:
        """Each instance's share of the jobs served."""
        total = sum(self.served.values()) or 1
        return {name: count / total for name, count in self.served.items()}


def farm_spec(spec: SimulationSpec) -> SimulationSpec:
    """``spec`` with the farm's fast poll schedule on every instance (as ``farm_router``
    sets it), after checking the real farm can serve its accounts."""
    for name, account in spec.settings.accounts.items():
        if account.faults is not None or account.max_concurrent is not None:
            raise ValueError(
                f"account {name!r}: per-account faults and max_concurrent exist only in the "
                "simulator; the fidelity check needs a scenario the real farm can serve"
            )
    providers = router_config(spec)["providers"]
    options = {
        name: {"options": {**FARM_OPTIONS, **settings.get("options", {})}}
        for name, settings in providers.items()
    }
    return replace(spec, config=deep_merge(spec.config, {"providers": options}))


def _jobs(spec: SimulationSpec) -> list[tuple[float, str, str]]:
    """The run's jobs as the simulator draws them: (offset, model, quality)."""
    settings = spec.settings
    duration = settings.hours * 3600
    shape = make_shape(
        settings.shape, settings.peak_per_min / 60, duration, **settings.shape_params
    )
    arrivals = poisson_arrivals(shape, random.Random(stable_seed(settings.seed, "arrivals")))
    rng = random.Random(stable_seed(settings.seed, "jobs"))
    mix = JobMix(settings.models, settings.quality)
    jobs = []
    for at in arrivals:
        model, tier = mix.draw(rng)
        jobs.append((at, mix.models[model], mix.tiers[tier]))
    return jobs


def _called(attempts: Iterable[Any]) -> list[str]:
    """The instances a job called, in order, from its attempts (dicts or Attempt objects)."""
    out = []
    for attempt in attempts:
        record = attempt if isinstance(attempt, Mapping) else attempt.as_dict()
        if record["outcome"] != "skipped":
            out.append(record["provider"])
    return out


async def run_against_farm(spec: SimulationSpec) -> FidelityRun:
    """Run ``spec``'s traffic in real time through the real router against a real farm (in
    this process, on loopback). Keep it short: the run lasts as long as the traffic."""
    spec = farm_spec(spec)
    transitions: list[BreakerTransition] = []
    jobs = _jobs(spec)
    async with Farm(spec.farm) as farm:
        document = farm.providers()["providers"]
        config = router_config(spec)
        for name, settings in config["providers"].items():
            settings["base_url"] = document[settings.get("plugin") or name]["base_url"]
        router = Router.from_config(
            config,
            catalog=spec.catalog,
            environ={},
            on_transition=transitions.append,
            seed=stable_seed(spec.settings.seed, "router"),
        )
        async with router:

            async def one(number: int, model: str, quality: str) -> Any:
                request = ImageRequest(model=model, prompt=f"job {number}", quality=quality)
                try:
                    return await router.generate(request)
                except ImageRouterError as exc:
                    return exc

            farm.reset()  # the scenario clock starts with the traffic
            started = time.monotonic()
            tasks = []
            for number, (offset, model, quality) in enumerate(jobs):
                delay = started + offset - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(number, model, quality)))
            results = await asyncio.gather(*tasks)
    served: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    failovers = moved_jobs = 0
    for result in results:
        called = _called(getattr(result, "attempts", None) or [])
        calls.update(called)
        moved = count_failovers(called)
        failovers += moved
        moved_jobs += moved > 0
        if isinstance(result, ImageResult):
            served[result.provider] += 1
    trips = Counter(t.name for t in transitions if t.to_state is BreakerState.OPEN)
    names = list(router.instances)
    return FidelityRun(
        jobs=len(results),
        completed=sum(served.values()),
        served={name: served[name] for name in names},
        failovers=failovers,
        jobs_failed_over=moved_jobs,
        trips={name: trips[name] for name in names},
        calls={name: calls[name] for name in names},
    )


def run_simulated(spec: SimulationSpec) -> FidelityRun:
    """Run ``spec`` in the simulator, with the same router config as the farm run."""
    sim = Simulation(farm_spec(spec))
    m = sim.run()
    trips = m.trips()
    return FidelityRun(
        jobs=m.jobs_arrived,
        completed=m.jobs_completed,
        served=dict(zip(m.instances, m.served_total, strict=True)),
        failovers=m.failovers,
        jobs_failed_over=m.jobs_failed_over,
        trips={name: trips[name] for name in m.instances},
        calls=dict(zip(m.instances, m.calls_total, strict=True)),
    )


def compare_fidelity(simulated: FidelityRun, real: FidelityRun) -> dict[str, Any]:
    """Side by side, with the differences: shares (absolute), failovers and trips."""
    sim_shares, real_shares = simulated.shares(), real.shares()
    names = list(dict.fromkeys([*real.served, *simulated.served]))
    return {
        "jobs": {"simulated": simulated.jobs, "farm": real.jobs},
        "completed": {"simulated": simulated.completed, "farm": real.completed},
        "shares": {
            name: {
                "simulated": round(sim_shares.get(name, 0.0), 4),
                "farm": round(real_shares.get(name, 0.0), 4),
                "diff": round(abs(sim_shares.get(name, 0.0) - real_shares.get(name, 0.0)), 4),
            }
            for name in names
        },
        "failovers": {"simulated": simulated.failovers, "farm": real.failovers},
        "jobs_failed_over": {
            "simulated": simulated.jobs_failed_over,
            "farm": real.jobs_failed_over,
        },
        "trips": {
            name: {"simulated": simulated.trips.get(name, 0), "farm": real.trips.get(name, 0)}
            for name in names
        },
        "calls": {
            name: {"simulated": simulated.calls.get(name, 0), "farm": real.calls.get(name, 0)}
            for name in names
        },
    }
