"""Router metrics against the farm: the counters agree with what the farm saw."""

from __future__ import annotations

import asyncio

from imagerouter import ImageRequest
from imagerouter.metrics import RouterMetrics
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.metrics import parse_metrics


async def test_attempt_and_breaker_counters_match_the_farm(farm: Farm) -> None:
    """After a known scenario, per-provider attempt counters equal the farm's own counts, and
    the breaker's state and transitions are exported."""
    farm.set_faults("fal", {"error_rates": {"503": 1.0}})
    config = {"router": {"breaker": {"consecutive_failures": 3}}}
    metrics = RouterMetrics()
    async with farm_router(farm, config) as router:
        metrics.bind(router)
        for number in range(10):
            await router.generate(ImageRequest(model="flux-dev", prompt=str(number)))
        await asyncio.sleep(0)
    values = parse_metrics(metrics.render().decode())
    fal, wavespeed = (farm.stats()["providers"][p] for p in ("fal", "wavespeed"))
    fal_errors = values[
        (
            "imagerouter_provider_attempts_total",
            (("error_class", "ProviderUnavailable"), ("outcome", "error"), ("provider", "fal")),
        )
    ]
    assert fal_errors == fal["by_status"]["503"] == 3
    wavespeed_ok = values[
        (
            "imagerouter_provider_attempts_total",
            (("error_class", ""), ("outcome", "ok"), ("provider", "wavespeed")),
        )
    ]
    assert wavespeed_ok == wavespeed["generations"] == 10
    assert values[("imagerouter_breaker_state", (("provider", "fal"), ("state", "open")))] == 1
    opened = ("imagerouter_breaker_transitions_total", (("provider", "fal"), ("to_state", "open")))
    assert values[opened] == 1
    assert (
        values[("imagerouter_provider_skips_total", (("provider", "fal"), ("reason", "breaker")))]
        == 7
    )
