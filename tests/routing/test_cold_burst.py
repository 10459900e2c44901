"""A cold burst against the farm over real HTTP: fal is down from the first request while a whole
burst of first attempts is already in flight to it, and WaveSpeed is healthy.

Every one of those first attempts fails at about the same moment and fails over together. A
failover is admitted by WaveSpeed's own state, so no job may end with NoProviderAvailable while
WaveSpeed could serve it, in the burst or in the wave after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from imagerouter import ImageRequest, ImageResult, Router
from imagerouter.config import RetryBudgetSettings
from mockproviders import Farm, load_scenario
from mockproviders.bridge import farm_router


@pytest.fixture
async def cold_farm() -> AsyncIterator[Farm]:
    """The cold-burst scenario: fal down from the first request, WaveSpeed and OpenAI healthy."""
    async with Farm(load_scenario("cold-burst")) as running:
        yield running


async def wave(router: Router, size: int, label: str) -> list[Any]:
    """``size`` flux-dev jobs started at once; their results or exceptions, in order."""
    return await asyncio.gather(
        *(
            router.generate(ImageRequest(model="flux-dev", prompt=f"{label} {n}"))
            for n in range(size)
        ),
        return_exceptions=True,
    )


def called(result: ImageResult) -> list[dict[str, Any]]:
    """The attempts that reached a provider (not the skipped candidates)."""
    return [a for a in result.attempts if a["outcome"] in ("ok", "error", "canceled")]


@pytest.mark.parametrize("concurrency", [50, 200])
async def test_cold_burst_fails_over_every_job_to_wavespeed(
    cold_farm: Farm, concurrency: int
) -> None:
    """Two waves of ``concurrency`` jobs started at once while fal is down: every job completes;
    the first wave really hit fal; every job that called fal failed over to WaveSpeed; no request
    arrived inside a Retry-After window."""
    async with farm_router(cold_farm, seed=7) as router:
        first = await wave(router, concurrency, "first")
        fal_503s_first = cold_farm.stats()["providers"]["fal"]["by_status"].get("503", 0)
        assert cold_farm.providers()["providers"]["fal"]["effective"]["down"] is True
        second = await wave(router, concurrency, "second")

    results = first + second
    failed = [r for r in results if not isinstance(r, ImageResult)]
    assert not failed, [
        (type(r).__name__, getattr(r, "reason", None), getattr(r, "servable", None), str(r))
        for r in failed[:5]
    ]

    # The burst really hit the down provider: more first attempts failed on fal in the first wave
    # than a retry budget's floor, all of them in flight before fal's breaker could open.
    assert fal_503s_first > RetryBudgetSettings().min_retries, fal_503s_first
    stats = cold_farm.stats()["providers"]
    assert stats["fal"]["by_status"].get("503", 0) >= fal_503s_first
    assert stats["fal"]["by_status"].get("200", 0) == 0

    # Every job that called fal failed on it and then failed over to WaveSpeed, which served it.
    hit_fal = [r for r in results if any(a["provider"] == "fal" for a in called(r))]
    assert hit_fal
    for result in hit_fal:
        calls = called(result)
        fal_at = [i for i, a in enumerate(calls) if a["provider"] == "fal"]
        assert all(calls[i]["outcome"] == "error" for i in fal_at), calls
        assert calls[-1]["provider"] == "wavespeed", calls
        assert calls[-1]["outcome"] == "ok", calls
        assert fal_at[0] < len(calls) - 1, calls
        assert result.provider == "wavespeed"
    assert all(r.provider == "wavespeed" for r in results)

    for name in ("fal", "wavespeed", "openai"):
        assert stats[name]["inside_retry_after"] == 0, name
