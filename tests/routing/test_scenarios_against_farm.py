"""The router against the farm over real HTTP: 429 storms, outages, total outages, and paced
per-key limits."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from imagerouter import ImageRequest, ImageResult, NoProviderAvailable, Router
from imagerouter.catalog import Catalog, load_catalog
from imagerouter.resilience.breaker import BreakerState, BreakerTransition
from mockproviders import Farm
from mockproviders.bridge import farm_router

FAST = {
    "router": {
        "deadline_s": 10,
        "breaker": {
            "consecutive_failures": 3,
            "minimum_calls": 3,
            "open_base_s": 0.4,
            "open_max_s": 1.0,
            "half_open_probes": 1,
        },
    }
}


async def run_jobs(
    router: Router, count: int, concurrency: int, model: str = "gpt-image-2"
) -> list[ImageResult | Exception]:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> ImageResult | Exception:
        async with gate:
            try:
                return await router.generate(ImageRequest(model=model, prompt=f"job {number}"))
            except Exception as exc:
                return exc

    return await asyncio.gather(*(one(n) for n in range(count)))


def served_by(results: list[Any]) -> Counter[str]:
    return Counter(r.provider for r in results if isinstance(r, ImageResult))


async def test_429_storm_every_job_succeeds_and_no_request_lands_inside_retry_after(
    farm: Farm,
) -> None:
    """(a) fal answers 429 + Retry-After: 2 on 30% of calls: every job succeeds and the farm
    counts 0 requests inside a Retry-After window."""
    farm.set_faults("fal", {"error_rates": {"429": 0.3}, "retry_after_s": 2, "seed": 3})
    async with farm_router(farm, FAST, seed=1) as router:
        results = await run_jobs(router, 80, concurrency=8)
    assert all(isinstance(r, ImageResult) for r in results), [
        r for r in results if not isinstance(r, ImageResult)
    ]
    fal = farm.stats()["providers"]["fal"]
    assert fal["by_status"].get("429", 0) >= 1
    assert fal["inside_retry_after"] == 0
    rate_limited = [a for r in results for a in r.attempts if a["error_class"] == "RateLimited"]
    assert all(a["retry_after"] == 2.0 for a in rate_limited)


async def test_outage_opens_breaker_fails_over_and_recovers(farm: Farm) -> None:
    """(b) fal down: the breaker opens, jobs fail over to WaveSpeed with no client-visible
    error, and when fal recovers it gets traffic again after the half-open probe."""
    transitions: list[BreakerTransition] = []
    farm.set_faults("fal", {"down": True})
    async with farm_router(farm, FAST, on_transition=transitions.append) as router:
        during = await run_jobs(router, 12, concurrency=2)
        assert all(isinstance(r, ImageResult) for r in during)
        assert served_by(during) == Counter({"wavespeed": 12})
        assert next(t.to_state for t in transitions if t.name == "fal") == BreakerState.OPEN
        fal_calls_while_open = farm.stats()["providers"]["fal"]["requests"]
        assert fal_calls_while_open <= 3 + 2  # the threshold, plus calls already in flight

        farm.set_faults("fal", {})
        after: list[Any] = []
        for _ in range(40):  # bounded: the breaker's open time is 0.4-1.0 s
            after += await run_jobs(router, 2, concurrency=2)
            if served_by(after)["fal"] >= 2:
                break
            await asyncio.sleep(0.1)
    assert served_by(after)["fal"] >= 2
    fal_states = [t.to_state for t in transitions if t.name == "fal"]
    assert fal_states[-2:] == [BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_total_outage_fails_cleanly_within_retry_budget(farm: Farm) -> None:
    """(c) every provider of a model down (fal, WaveSpeed and the optional Replicate): every
    job fails with NoProviderAvailable by its deadline, and the calls into each provider stay
    within (1 + budget ratio) × jobs + floor."""
    for name in ("fal", "wavespeed", "replicate"):
        farm.set_faults(name, {"down": True})
    config = {
        "router": {
            **FAST["router"],
            "deadline_s": 2,
            "retry_budget": {"ratio": 0.2, "min_retries": 5, "window_s": 30},
        }
    }
    jobs = 30
    async with farm_router(farm, config) as router:
        results = await run_jobs(router, jobs, concurrency=10, model="flux-dev")
    assert all(isinstance(r, NoProviderAvailable) for r in results)
    assert all(r.attempts for r in results)
    assert not any(r.failed_while_servable for r in results)
    stats = farm.stats()["providers"]
    # Each provider's own retry budget bounds the calls into it: one first call per job at
    # most (its first choice or a failover), plus budgeted retries.
    for name in ("fal", "wavespeed", "replicate"):
        assert stats[name]["requests"] <= (1 + 0.2) * jobs + 5, name


@pytest.mark.parametrize("retry_after_format", ["seconds", "ms"])
async def test_a_key_without_budget_headers_is_paced_by_its_429s(
    farm: Farm, retry_after_format: str
) -> None:
    """(e) fal limited to 10 submits a second per key (a burst of 2), sending only Retry-After,
    24 jobs at once: after the first burst's 429s the router paces the key at a rate it learns
    from them, so the jobs waiting on a window do not all call at its end. Every job succeeds
    and none calls inside a window. Without the pace, those jobs spend their 8 attempts on
    429s and fail."""
    farm.set_faults(
        "fal",
        {"rate_limit": {"rpm": 600, "burst": 2}, "retry_after_format": retry_after_format},
    )
    config = {"router": {**FAST["router"], "deadline_s": 30, "max_total_wait_s": 30}}
    async with farm_router(farm, config, catalog=single_provider_catalog("fal")) as router:
        results = await run_jobs(router, 60, concurrency=24, model="direct")
        pace = next(p["pace"] for p in router.provider_status() if p["name"] == "fal")
    assert all(isinstance(r, ImageResult) for r in results), [
        r for r in results if not isinstance(r, ImageResult)
    ]
    fal = farm.stats()["providers"]["fal"]
    assert fal["inside_retry_after"] == 0
    # The first burst: 24 calls, 2 tokens. After it, at most one 429 in four successes.
    assert fal["by_status"]["429"] - 22 <= 60 / 4
    assert pace is not None
    assert pace["rate_per_s"] > 0


async def test_a_key_that_answered_429_to_everything_serves_again_when_the_storm_ends(
    farm: Farm,
) -> None:
    """(f) fal, the only provider of the model, answers 429 (Retry-After: 1) to every call for
    8 s, then takes every call; 5 jobs a second for 12 s, each with 6 s to live. Every job
    submitted after the storm ended completes, and none calls inside a window.

    Before, the storm's windows cut the pace once each down to 0.2 calls a second, and the
    jobs after it waited one start every 5 s, until they ran out of time."""
    farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 1})
    config = {"router": {**FAST["router"], "deadline_s": 6, "max_total_wait_s": 6}}
    async with farm_router(farm, config, catalog=single_provider_catalog("fal")) as router:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def job(number: int) -> tuple[float, ImageResult | Exception]:
            await asyncio.sleep(number / 5)
            submitted = loop.time() - start
            try:
                return submitted, await router.generate(
                    ImageRequest(model="direct", prompt=f"job {number}")
                )
            except Exception as exc:
                return submitted, exc

        async def storm_ends() -> None:
            await asyncio.sleep(8.0)
            farm.set_faults("fal", {})

        _, *outcomes = await asyncio.gather(storm_ends(), *(job(n) for n in range(60)))
    after = [result for submitted, result in outcomes if submitted >= 8.2]
    assert len(after) >= 15
    assert all(isinstance(r, ImageResult) for r in after), [
        r for r in after if not isinstance(r, ImageResult)
    ]
    fal = farm.stats()["providers"]["fal"]
    assert fal["by_status"]["429"] >= 6, "the storm ran"
    assert fal["inside_retry_after"] == 0


async def test_jobs_a_storms_pace_would_fail_call_the_key_once_it_ends(farm: Farm) -> None:
    """(g) A black-box pass's case: fal, the only provider of the model, answers 429 with a
    3 s Retry-After (an HTTP date) to every call for 4 s; 20 jobs 0.1 s apart, 10 s each.
    Most complete once the storm ends (each unpaced run completed 20), none calls inside a
    window. Before, one job a 3 s pace start got through and 19 failed 'paced by its 429s'
    while fal took every call."""
    farm.set_faults(
        "fal", {"error_rates": {"429": 1.0}, "retry_after_s": 3, "retry_after_format": "http-date"}
    )
    config = {"router": {"deadline_s": 10}}
    async with farm_router(farm, config, catalog=single_provider_catalog("fal")) as router:

        async def job(number: int) -> ImageResult | Exception:
            await asyncio.sleep(number / 10)
            try:
                return await router.generate(ImageRequest(model="direct", prompt=f"job {number}"))
            except Exception as exc:
                return exc

        async def storm_ends() -> None:
            await asyncio.sleep(4.0)
            farm.set_faults("fal", {})

        _, *results = await asyncio.gather(storm_ends(), *(job(n) for n in range(20)))
    completed = sum(isinstance(r, ImageResult) for r in results)
    assert completed >= 14, [r for r in results if not isinstance(r, ImageResult)]
    assert farm.stats()["providers"]["fal"]["inside_retry_after"] == 0


def single_provider_catalog(provider: str) -> Catalog:
    """The catalog with a model ``direct`` that only ``provider`` serves (no failover)."""
    model = {"openai": "gpt-image-2", "fal": "fal-ai/flux/dev"}[provider]
    return load_catalog().merged(
        Catalog.model_validate(
            {
                "models": {
                    "direct": {
                        "credits": {"low": 1, "standard": 1, "high": 1},
                        "providers": [{"provider": provider, "model": model}],
                    }
                },
                "sources": ["<test>"],
            }
        )
    )


def openai_only_catalog() -> Catalog:
    return load_catalog().merged(
        Catalog.model_validate(
            {
                "models": {
                    "gpt-direct": {
                        "credits": {"low": 1, "standard": 1, "high": 1},
                        "providers": [{"provider": "openai", "model": "gpt-image-2"}],
                    }
                },
                "sources": ["<test>"],
            }
        )
    )


async def test_openai_budget_headers_pace_instead_of_collecting_429s(farm: Farm) -> None:
    """(d) a per-key limit announced in x-ratelimit-* headers: the router paces its calls, so
    429s stay at most one burst's worth, none lands inside a Retry-After, every job succeeds."""
    farm.set_faults("openai", {"rate_limit": {"rpm": 600, "burst": 2}})
    async with farm_router(farm, FAST, catalog=openai_only_catalog()) as router:
        results = await run_jobs(router, 30, concurrency=4, model="gpt-direct")
    assert all(isinstance(r, ImageResult) for r in results)
    openai = farm.stats()["providers"]["openai"]
    assert openai["by_status"]["200"] == 30
    assert openai["by_status"].get("429", 0) <= 4
    assert openai["inside_retry_after"] == 0
