"""Hedging against the farm: a slow first provider is raced by the next one."""

from __future__ import annotations

from imagerouter import ImageRequest
from imagerouter.catalog import Catalog, load_catalog
from mockproviders import Farm, FarmJobState
from mockproviders.bridge import farm_router


def hedged_catalog() -> Catalog:
    model = {
        "hedge": True,
        "credits": {"low": 1, "standard": 1, "high": 1},
        "providers": [
            {"provider": "fal", "model": "fal-ai/flux/dev"},
            {"provider": "wavespeed", "model": "wavespeed-ai/flux-dev"},
        ],
    }
    extra = Catalog.model_validate({"models": {"hedged": model}, "sources": ["<test>"]})
    return load_catalog().merged(extra)


async def test_slow_first_provider_is_hedged_and_the_loser_cancelled(farm: Farm) -> None:
    """Once fal is slower than its recent p95, the job also starts WaveSpeed, keeps WaveSpeed's
    result, and abandons the fal call (recorded as canceled, its slot released)."""
    fast = {
        "latency_ms": {"dist": "fixed", "p50": 1},
        "generation_ms": {"dist": "fixed", "p50": 30},
    }
    farm.set_faults("fal", fast)
    request = ImageRequest(model="hedged", prompt="race")
    async with farm_router(farm, catalog=hedged_catalog()) as router:
        for _ in range(20):  # learn fal's latency
            assert (await router.generate(request)).provider == "fal"
        farm.set_faults("fal", {**fast, "generation_ms": {"dist": "fixed", "p50": 20_000}})
        result = await router.generate(request)
        fal = router.instances["fal"]
    assert result.provider == "wavespeed"
    outcomes = [(a["provider"], a["outcome"]) for a in result.attempts]
    assert outcomes == [("fal", "canceled"), ("wavespeed", "ok")]  # in the order they started
    assert fal.breaker.snapshot()["state"] == "closed"
    assert fal.breaker.snapshot()["window_failures"] == 0  # losing a race is not a failure
    last_fal_job = list(farm.state.jobs["fal"])[-1]
    assert last_fal_job.state(farm.state.clock.now()) == FarmJobState.CANCELED  # cancelled at fal
