"""Spend caps shared through the real Redis: a cap reached on one replica holds on the others."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
import redis

from imagerouter import ImageResult
from mockproviders import Farm
from tests.helpers.windows import clear_of_the_hour_end
from tests.polling import eventually_fine
from tests.replication.helpers import FAST, replica, served_by
from tests.replication.proxy import TcpProxy

#: gpt-image-2 costs $0.042 per image on fal (catalog): the third call reaches a $0.10 cap.
FAL_COST = 0.042
CAPPED: dict[str, Any] = {**FAST, "providers": {"fal": {"max_usd_per_hour": 0.1}}}


@pytest.fixture(autouse=True)
async def _clear_of_the_hour_end() -> None:
    """Spend windows are UTC hours: no scenario here straddles the end of one."""
    await clear_of_the_hour_end()


def fal_calls(farm: Farm) -> int:
    return farm.stats()["providers"]["fal"]["generations"]


def capped(r: Any, name: str = "fal") -> bool:
    return r.router.instances[name].spend.capped() is not None


def hour_key(prefix: str) -> str:
    return f"{prefix}:spend:fal:hour:{math.floor(time.time() / 3600)}"


async def test_a_cap_reached_on_replica_a_is_respected_by_replica_b(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A spends fal up to its hourly cap; B, which never called fal, skips it with spend_cap
    and fal sees no further call; Redis holds the fleet's total with an expiry."""
    async with (
        replica(farm, redis_url, prefix, "a", CAPPED) as a,
        replica(farm, redis_url, prefix, "b", CAPPED) as b,
    ):
        assert served_by([await a.generate() for _ in range(3)]) == ["fal"] * 3
        assert capped(a)
        await eventually_fine(lambda: capped(b), what="B learns fal's cap is reached")
        calls = fal_calls(farm)
        results = [await b.generate() for _ in range(3)]
        assert served_by(results) == ["wavespeed"] * 3
        for result in results:
            assert isinstance(result, ImageResult)
            reasons = [a["reason"] for a in result.attempts if a["provider"] == "fal"]
            assert len(reasons) == 1
            assert reasons[0].startswith("spend_cap: ")
        assert fal_calls(farm) == calls
        spent = b.router.instances["fal"].spend.spent("hour")  # type: ignore[union-attr]
        assert spent == pytest.approx(3 * FAL_COST)

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert float(client.get(hour_key(prefix))) == pytest.approx(3 * FAL_COST)
        assert 0 < client.pttl(hour_key(prefix)) <= (3600 + 60) * 1000
    finally:
        client.close()


async def test_the_replicas_spend_adds_up_and_a_late_replica_starts_capped(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """Two calls on A and one on B reach the cap together (neither alone would); a replica
    that starts afterwards reads the total when it connects and never calls fal."""
    async with (
        replica(farm, redis_url, prefix, "a", CAPPED) as a,
        replica(farm, redis_url, prefix, "b", CAPPED) as b,
    ):
        assert served_by([await a.generate() for _ in range(2)]) == ["fal"] * 2
        assert not capped(a)
        spend_b = b.router.instances["fal"].spend
        assert spend_b is not None
        await eventually_fine(
            lambda: spend_b.spent("hour") == pytest.approx(2 * FAL_COST), what="B hears of A's"
        )
        assert served_by([await b.generate()]) == ["fal"]
        await eventually_fine(lambda: capped(a) and capped(b), what="both capped")
        calls = fal_calls(farm)
        async with replica(farm, redis_url, prefix, "c", CAPPED) as c:
            assert capped(c)
            assert served_by([await c.generate()]) == ["wavespeed"]
        assert fal_calls(farm) == calls


async def test_spend_made_while_redis_is_cut_reaches_the_fleet_once_it_is_back(
    farm: Farm, redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """A replica cut off from Redis counts its spend locally (and caps itself), and sends it
    when Redis is back: then the other replica is capped too."""
    async with (
        replica(farm, proxy.url(), prefix, "a", CAPPED) as a,
        replica(farm, redis_url, prefix, "b", CAPPED) as b,
    ):
        assert a.state.spend.healthy
        proxy.cut()
        await eventually_fine(lambda: not a.state.spend.healthy, what="A notices Redis is gone")
        assert served_by([await a.generate() for _ in range(4)]) == ["fal"] * 3 + ["wavespeed"]
        assert capped(a)
        assert not capped(b)
        proxy.restore()
        await eventually_fine(lambda: capped(b), what="B hears of A's spend once Redis is back")
        assert a.state.status()["spend"]["pending"] == 0
