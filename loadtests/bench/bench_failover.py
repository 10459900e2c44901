"""Failover quality against the farm: the resilience scenarios with their figures.

- ``429-storm``: fal answers 429 + Retry-After: 2 on 30% of calls.
- ``outage``: steady arrivals; fal goes down for a while, then recovers. Time from outage start
  to breaker open, and from recovery to the first job fal serves again.
- ``total-outage``: every provider of a model down: every job must fail by its deadline, and
  the calls into each provider must stay within that provider's retry budget.
- ``cold-burst-50``, ``cold-burst-200``: the farm's ``cold-burst`` scenario (fal down from the
  first request, WaveSpeed healthy); that many flux-dev jobs start at once, so every first
  attempt is in flight to fal before its first 503 is back, then a second wave of the same size
  while fal is still down. Every job must be served by WaveSpeed.

Reported per scenario: jobs, success rate, jobs failed, jobs failed *while servable* (gave up
with NoProviderAvailable while a candidate could still have served them: a routing defect, so
expected 0 in every scenario, ``total-outage`` included), provider calls per job, requests the
farm saw inside a Retry-After window it had issued, and the scenario's own figures.

The farm answers tiny one-colour PNGs here (``[images] png_bytes = "tiny"``): these figures
are about routing, and hundreds of results held at once at realistic sizes (about 1.5 MB each)
would cost gigabytes on a small machine.

    python -m loadtests.bench.bench_failover
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from imagerouter import ImageRequest, ImageResult, NoProviderAvailable, Router
from imagerouter.resilience.breaker import BreakerState, BreakerTransition
from loadtests.bench.common import write_results
from mockproviders import Farm, ImageSettings, Scenario, load_scenario
from mockproviders.bridge import farm_router

#: Tiny images: these benchmarks measure routing, not image bytes.
TINY_IMAGES = ImageSettings(png_bytes="tiny")

BREAKER = {"consecutive_failures": 5, "minimum_calls": 10, "open_base_s": 1.0, "open_max_s": 4.0}


async def open_loop(router: Router, rate: float, duration_s: float, model: str) -> list[Any]:
    """Start jobs at a fixed arrival rate (open loop) for ``duration_s``; gather outcomes."""
    tasks = []
    started = time.perf_counter()
    for number in range(int(rate * duration_s)):
        delay = started + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        request = ImageRequest(model=model, prompt=f"job {number}")
        tasks.append(asyncio.create_task(router.generate(request)))
    return await asyncio.gather(*tasks, return_exceptions=True)


async def burst(router: Router, size: int, model: str, label: str) -> list[Any]:
    """Start ``size`` jobs at once (no pacing at all); gather outcomes."""
    requests = [ImageRequest(model=model, prompt=f"{label} {n}") for n in range(size)]
    return await asyncio.gather(*(router.generate(r) for r in requests), return_exceptions=True)


def figures(results: list[Any], farm: Farm, providers: tuple[str, ...]) -> dict[str, Any]:
    ok = [r for r in results if isinstance(r, ImageResult)]
    attempts = [
        a
        for r in results
        for a in (
            r.attempts
            if isinstance(r, ImageResult)
            else [x.as_dict() for x in getattr(r, "attempts", [])]
        )
        if a["outcome"] in ("ok", "error")
    ]
    stats = farm.stats()["providers"]
    return {
        "jobs": len(results),
        "success_rate": len(ok) / len(results),
        "failed": len(results) - len(ok),
        "failed_while_servable": sum(
            isinstance(r, NoProviderAvailable) and r.failed_while_servable for r in results
        ),
        "calls_per_job": len(attempts) / len(results),
        "farm_requests": sum(stats[p]["requests"] for p in providers),
        "inside_retry_after": sum(stats[p]["inside_retry_after"] for p in providers),
    }


async def storm() -> dict[str, Any]:
    async with Farm(Scenario(images=TINY_IMAGES)) as farm:
        farm.set_faults("fal", {"error_rates": {"429": 0.3}, "retry_after_s": 2, "seed": 5})
        async with farm_router(farm, {"router": {"breaker": BREAKER}}, seed=1) as router:
            results = await open_loop(router, rate=100, duration_s=6, model="gpt-image-2")
        out = figures(results, farm, ("fal", "wavespeed", "openai"))
        out["fal_429s"] = farm.stats()["providers"]["fal"]["by_status"].get("429", 0)
        return out


async def outage() -> dict[str, Any]:
    transitions: list[tuple[float, BreakerTransition]] = []
    async with Farm(Scenario(images=TINY_IMAGES)) as farm:
        router = farm_router(
            farm,
            {"router": {"breaker": BREAKER}},
            on_transition=lambda t: transitions.append((time.perf_counter(), t)),
        )
        async with router:
            served_at: list[tuple[float, str]] = []

            async def tracked(number: int) -> Any:
                result = await router.generate(ImageRequest(model="flux-dev", prompt=str(number)))
                served_at.append((time.perf_counter(), result.provider))
                return result

            async def timeline() -> tuple[float, float]:
                await asyncio.sleep(2)
                down_at = time.perf_counter()
                farm.set_faults("fal", {"down": True})
                await asyncio.sleep(4)
                up_at = time.perf_counter()
                farm.set_faults("fal", {})
                return down_at, up_at

            rate, duration = 50, 12
            phases = asyncio.create_task(timeline())
            tasks, started = [], time.perf_counter()
            for number in range(rate * duration):
                delay = started + number / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(tracked(number)))
            results = await asyncio.gather(*tasks, return_exceptions=True)
            down_at, up_at = await phases
    opened = [at for at, t in transitions if t.name == "fal" and t.to_state == BreakerState.OPEN]
    back = [at for at, provider in served_at if provider == "fal" and at > up_at]
    out = figures(results, farm, ("fal", "wavespeed"))
    out["outage_to_breaker_open_s"] = (opened[0] - down_at) if opened else None
    out["recovery_to_traffic_back_s"] = (back[0] - up_at) if back else None
    out["breaker_trips"] = len(opened)
    return out


async def total_outage() -> dict[str, Any]:
    async with Farm(Scenario(images=TINY_IMAGES)) as farm:
        down = ("fal", "wavespeed", "replicate")  # every provider that serves flux-dev
        for name in down:
            farm.set_faults(name, {"down": True})
        config = {"router": {"deadline_s": 3, "breaker": BREAKER}}
        async with farm_router(farm, config) as router:
            started = time.perf_counter()
            results = await open_loop(router, rate=50, duration_s=4, model="flux-dev")
            took = time.perf_counter() - started
        out = figures(results, farm, down)
        # Each provider's retry budget bounds the calls into it: one first call per job (its
        # first choice or a failover) plus retries of 20% of those, with a floor of 10.
        stats = farm.stats()["providers"]
        out["calls_into"] = {name: stats[name]["requests"] for name in down}
        out["budget_bound_per_provider"] = (1 + 0.2) * len(results) + 10
        out["run_s"] = took
        return out


async def cold_burst(concurrency: int) -> dict[str, Any]:
    async with (
        Farm(load_scenario("cold-burst").model_copy(update={"images": TINY_IMAGES})) as farm,
        farm_router(farm, {"router": {"breaker": BREAKER}}, seed=1) as router,
    ):
        results = await burst(router, concurrency, "flux-dev", "first")
        first_wave_fal_503s = farm.stats()["providers"]["fal"]["by_status"].get("503", 0)
        results += await burst(router, concurrency, "flux-dev", "second")
        out = figures(results, farm, ("fal", "wavespeed"))
        out["first_wave_fal_503s"] = first_wave_fal_503s
        out["fal_503s"] = farm.stats()["providers"]["fal"]["by_status"].get("503", 0)
        out["failovers_to_wavespeed"] = sum(
            isinstance(r, ImageResult)
            and r.provider == "wavespeed"
            and any(a["provider"] == "fal" and a["outcome"] == "error" for a in r.attempts)
            for r in results
        )
        return out


async def run() -> dict[str, Any]:
    return {
        "429-storm": await storm(),
        "outage": await outage(),
        "total-outage": await total_outage(),
        "cold-burst-50": await cold_burst(50),
        "cold-burst-200": await cold_burst(200),
    }


def main() -> None:
    results = asyncio.run(run())
    columns = (
        "jobs",
        "success_rate",
        "failed",
        "failed_while_servable",
        "calls_per_job",
        "inside_retry_after",
    )
    print(
        f"{'scenario':14} {'jobs':>5} {'success':>8} {'failed':>6} {'while servable':>14} "
        f"{'calls/job':>9} {'inside RA':>9}  other"
    )
    for name, row in results.items():
        extra = {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in row.items()
            if k not in columns
        }
        print(
            f"{name:14} {row['jobs']:5d} {row['success_rate']:8.1%} {row['failed']:6d} "
            f"{row['failed_while_servable']:14d} {row['calls_per_job']:9.2f} "
            f"{row['inside_retry_after']:9d}  {extra}"
        )
    print(f"written to {write_results('failover', results)}")


if __name__ == "__main__":
    main()
