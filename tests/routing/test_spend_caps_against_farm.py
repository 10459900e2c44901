"""Spend caps against the farm over loopback: a capped fal sends later jobs to WaveSpeed."""

from __future__ import annotations

import time

import pytest

from imagerouter import ImageRequest
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.windows import clear_of_the_hour_end

#: gpt-image-2 costs $0.042 per image on fal (catalog): the third call reaches a $0.10 cap.
FAL_COST = 0.042


@pytest.fixture(autouse=True)
async def _clear_of_the_hour_end() -> None:
    """Spend windows are UTC hours: no scenario here straddles the end of one."""
    await clear_of_the_hour_end()


class ShiftableClock:
    """The real clock, with a wall clock the test can move forward (to end a spend window)."""

    def __init__(self) -> None:
        self.shift_s = 0.0

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.shift_s


async def test_a_capped_fal_sends_later_jobs_to_wavespeed_until_the_hour_ends(
    farm: Farm,
) -> None:
    """Three jobs reach fal's $0.10 hourly cap; the next ones go to WaveSpeed with a spend_cap
    skip of fal and fal sees no call; in the next hour fal serves again."""
    clock = ShiftableClock()
    config = {"providers": {"fal": {"max_usd_per_hour": 0.1}}}
    request = ImageRequest(model="gpt-image-2", prompt="a lighthouse")
    async with farm_router(farm, config, clock=clock) as router:
        first = [await router.generate(request) for _ in range(3)]
        assert [r.provider for r in first] == ["fal"] * 3
        meter = router.instances["fal"].spend
        assert meter is not None
        assert meter.spent("hour") == pytest.approx(3 * FAL_COST)
        fal_calls = farm.stats()["providers"]["fal"]["generations"]

        later = [await router.generate(request) for _ in range(3)]
        assert [r.provider for r in later] == ["wavespeed"] * 3
        for result in later:
            fal_attempts = [a for a in result.attempts if a["provider"] == "fal"]
            assert [a["outcome"] for a in fal_attempts] == ["skipped"]
            assert fal_attempts[0]["reason"].startswith("spend_cap: ")
        assert farm.stats()["providers"]["fal"]["generations"] == fal_calls
        assert router.instances["wavespeed"].spend is None  # no cap, no meter

        status = {entry["name"]: entry for entry in router.provider_status()}
        assert status["fal"]["spend"]["hour"]["capped"] is True
        assert status["wavespeed"]["spend"] is None

        clock.shift_s = meter.frees_in("hour") + 1.0  # the next hour
        after = await router.generate(request)
    assert after.provider == "fal"
    assert farm.stats()["providers"]["fal"]["generations"] == fal_calls + 1


async def test_a_job_of_several_images_counts_each_image(farm: Farm) -> None:
    """A call's cost is the catalog's per-image cost times the images it returned."""
    config = {"providers": {"fal": {"max_usd_per_day": 1.0}}}
    request = ImageRequest(model="gpt-image-2", prompt="a lighthouse", n=3)
    async with farm_router(farm, config) as router:
        result = await router.generate(request)
        meter = router.instances["fal"].spend
        assert meter is not None
        assert result.provider == "fal"
        assert len(result.images) == 3
        assert meter.spent("day") == pytest.approx(3 * FAL_COST)
