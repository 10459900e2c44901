"""Redis going away, hanging, or never there: nothing fails because of it, each replica says
so, and the fleet's state comes back together when Redis does."""

from __future__ import annotations

import logging

import pytest

from imagerouter import ImageResult
from imagerouter.catalog import Catalog, load_catalog
from imagerouter.resilience.breaker import BreakerState
from mockproviders import Farm
from tests.helpers.net import free_port
from tests.polling import eventually_fine
from tests.replication.helpers import SLOW_OPEN, replica, served_by
from tests.replication.proxy import TcpProxy


def wavespeed_first_catalog() -> Catalog:
    """The shipped catalog plus ``ws-first``: WaveSpeed, then fal."""
    return load_catalog().merged(
        Catalog.model_validate(
            {
                "models": {
                    "ws-first": {
                        "credits": {"low": 1, "standard": 1, "high": 1},
                        "providers": [
                            {"provider": "wavespeed", "model": "wavespeed-ai/flux-dev"},
                            {"provider": "fal", "model": "fal-ai/flux/dev"},
                        ],
                    }
                },
                "sources": ["<test>"],
            }
        )
    )


async def test_jobs_succeed_through_a_redis_outage_and_state_resyncs_after_it(
    farm: Farm, redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """Jobs succeed while A's Redis is cut; afterwards A and B each get what the other learned."""
    kwargs = {"router_kwargs": {"catalog": wavespeed_first_catalog()}}
    async with (
        replica(farm, proxy.url(), prefix, "a", SLOW_OPEN, **kwargs) as a,
        replica(farm, redis_url, prefix, "b", SLOW_OPEN, **kwargs) as b,
    ):
        assert a.state.healthy
        assert b.state.healthy
        proxy.cut()
        await eventually_fine(lambda: not a.state.healthy, what="A notices Redis is gone")

        farm.set_faults("fal", {"down": True})  # B opens fal's breaker; A cannot hear it
        while b.breaker("fal") is not BreakerState.OPEN:
            assert served_by([await b.generate()]) == ["wavespeed"]
        farm.set_faults("fal", {})
        farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 5})
        results = [await a.generate(model="ws-first")]  # A learns a Retry-After; B cannot
        farm.set_faults("wavespeed", {})
        results += [await a.generate() for _ in range(3)]
        assert all(isinstance(r, ImageResult) for r in results)
        assert a.breaker("fal") is BreakerState.CLOSED
        assert not b.cooling("wavespeed")
        status = a.state.status()
        assert status["healthy"] is False
        assert status["fallbacks"] >= 1
        assert status["last_error"]

        proxy.restore()
        await eventually_fine(lambda: a.state.healthy, what="A back in sync")
        await eventually_fine(
            lambda: a.breaker("fal") is BreakerState.OPEN, what="A adopts B's open"
        )
        await eventually_fine(lambda: b.cooling("wavespeed"), what="B gets A's Retry-After")
        assert a.state.disconnects == 1
        assert a.state.resyncs == 1
        assert served_by([await a.generate()]) == ["openai"]  # fal open, wavespeed cooling


async def test_a_hanging_redis_is_detected_and_nothing_waits_for_it(
    farm: Farm, redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """A Redis that never answers is detected by the heartbeat; jobs go on and resync after."""
    async with (
        replica(farm, proxy.url(), prefix, "a", op_timeout_s=0.1) as a,
        replica(farm, redis_url, prefix, "b") as b,
    ):
        proxy.stall()
        await eventually_fine(lambda: not a.state.healthy, what="A notices Redis hangs")
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 5})
        results = [await a.generate() for _ in range(3)]
        farm.set_faults("fal", {})
        assert served_by(results) == ["wavespeed"] * 3
        assert a.cooling("fal")
        assert not b.cooling("fal")
        assert "Timeout" in (a.state.last_error or "")

        proxy.restore()
        await eventually_fine(lambda: a.state.healthy, what="A back in sync")
        await eventually_fine(lambda: b.cooling("fal"), what="B gets A's Retry-After")


async def test_a_replica_starts_and_serves_while_redis_is_unreachable(
    farm: Farm, prefix: str
) -> None:
    """With no Redis at all, a replica starts, serves from local state and says why."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with replica(farm, url, prefix, "alone", start_timeout_s=0.5) as alone:
        assert not alone.state.healthy
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 3})
        results = [await alone.generate() for _ in range(3)]
        assert served_by(results) == ["wavespeed"] * 3
        assert alone.cooling("fal")
        assert farm.stats()["providers"]["fal"]["requests"] == 1
        status = alone.state.status()
    assert status["healthy"] is False
    assert status["backend"] == "redis"
    assert status["fallbacks"] >= 1
    assert status["last_error"].startswith("connect: ")
    assert status["resyncs"] == 0


async def test_a_replica_that_never_reaches_redis_says_so_once(
    farm: Farm, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``state`` URL on which no Redis answers (a typo'd port): the replica runs on local
    state, as when a live link breaks, and logs the one warning that says so and why (it
    logged nothing: a fleet could run unshared unseen), not one a reconnect."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="imagerouter.replication"):
        async with replica(farm, dead, prefix, "lonely") as lonely:
            await eventually_fine(lambda: lonely.state.fallbacks >= 3, what="three connect tries")
            assert not lonely.state.healthy
    told = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(told) == 1, told
    assert told[0].startswith("shared state unavailable (connect: ")
    assert told[0].endswith("; running on local state")
