"""Several routers, one farm, one Redis prefix: they act as one router."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from imagerouter import ImageResult
from imagerouter.catalog import Catalog, load_catalog
from imagerouter.replication.records import BreakerRecord, CooldownRecord, Record
from imagerouter.resilience.breaker import BreakerState, BreakerTransition
from mockproviders import Farm
from tests.polling import eventually_fine
from tests.replication.helpers import SLOW_OPEN, fleet, replica, served_by


def fal_stats(farm: Farm) -> dict[str, Any]:
    return farm.stats()["providers"]["fal"]


async def test_retry_after_seen_by_one_router_keeps_the_others_off_that_provider(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A 429 + Retry-After to A keeps B and C off fal for the window; their jobs succeed."""
    async with fleet(farm, redis_url, prefix) as (a, b, c):
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 2})
        first = await a.generate()
        farm.set_faults("fal", {})
        assert served_by([first]) == ["wavespeed"]
        assert fal_stats(farm)["by_status"] == {"429": 1}

        await eventually_fine(lambda: b.cooling("fal") and c.cooling("fal"), what="B, C cool fal")
        results: list[Any] = []
        while a.cooling("fal"):  # the whole Retry-After window, as A learned it
            results += await asyncio.gather(*(r.generate() for r in (b, c) for _ in range(4)))
            await asyncio.sleep(0.02)
        assert results
        assert set(served_by(results)) == {"wavespeed"}
        fal = fal_stats(farm)
        assert fal["requests"] == 1
        assert fal["inside_retry_after"] == 0

        await eventually_fine(lambda: not b.cooling("fal"), what="B's window over")
        after = await b.generate()  # the window is over: fal is back in rotation
    assert served_by([after]) == ["fal"]
    assert fal_stats(farm)["inside_retry_after"] == 0


async def test_a_breaker_opened_on_one_router_opens_on_all_and_closes_on_all(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A breaker A opens is open on B and C, and A's successful probe closes it on all."""
    async with fleet(farm, redis_url, prefix) as replicas:
        a, b, c = replicas
        remote: dict[str, list[BreakerTransition]] = {r.name: [] for r in replicas}
        for r in replicas:
            r.state.remote_transitions.add(remote[r.name].append)

        farm.set_faults("fal", {"down": True})
        while a.breaker("fal") is not BreakerState.OPEN:
            assert served_by([await a.generate()]) == ["wavespeed"]
        await eventually_fine(
            lambda: b.breaker("fal") is c.breaker("fal") is BreakerState.OPEN,
            what="fal's breaker open on B and C",
        )
        fal_calls = fal_stats(farm)["requests"]
        results = await asyncio.gather(*(r.generate() for r in (b, c) for _ in range(4)))
        assert set(served_by(results)) == {"wavespeed"}
        assert fal_stats(farm)["requests"] == fal_calls  # B and C never tried fal

        farm.set_faults("fal", {})
        recovered: list[Any] = []
        while a.breaker("fal") is not BreakerState.CLOSED:
            recovered.append(await a.generate())
            await asyncio.sleep(0.05)
        assert served_by(recovered)[-1] == "fal"
        await eventually_fine(
            lambda: b.breaker("fal") is c.breaker("fal") is BreakerState.CLOSED,
            what="fal's breaker closed on B and C",
        )
        assert served_by([await b.generate(), await c.generate()]) == ["fal", "fal"]

    for name in ("r1", "r2"):
        assert [t.to_state for t in remote[name]] == [BreakerState.OPEN, BreakerState.CLOSED]
        assert all("(replica r0)" in t.reason for t in remote[name])
    assert remote["r0"] == []  # nothing came back to the replica that decided


async def test_a_replica_that_starts_later_reads_the_snapshot_first(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A replica that starts later has the fleet's cooldowns and open breakers at once."""
    config = SLOW_OPEN
    async with replica(farm, redis_url, prefix, "early", config) as a:
        farm.set_faults("wavespeed", {"down": True})
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 5})
        assert served_by([await a.generate()]) == ["openai"]
        farm.set_faults("fal", {})
        while a.breaker("wavespeed") is not BreakerState.OPEN:
            assert served_by([await a.generate()]) == ["openai"]
        farm.set_faults("wavespeed", {})
        await eventually_fine(lambda: a.state.status()["pending"] == 0 and a.state.published >= 2)

        async with replica(farm, redis_url, prefix, "late", config) as late:
            assert late.state.healthy
            assert late.cooling("fal")
            assert late.breaker("wavespeed") is BreakerState.OPEN
            until_a = a.router.instances["fal"].cooldowns.until("fal")
            until_late = late.router.instances["fal"].cooldowns.until("fal")
            assert until_a is not None
            assert until_late is not None
            assert abs(until_a - until_late) < 0.01
            assert served_by([await late.generate()]) == ["openai"]


async def test_applied_records_are_never_published_back(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """Only the replica that decided publishes; the others apply once and echo nothing."""
    async with fleet(farm, redis_url, prefix, config=SLOW_OPEN) as (a, b, c):
        applied: dict[str, list[Record]] = {"r1": [], "r2": []}
        b.state.applied.add(applied["r1"].append)
        c.state.applied.add(applied["r2"].append)
        farm.set_faults("fal", {"down": True})
        while a.breaker("fal") is not BreakerState.OPEN:
            await a.generate()
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 3})
        farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 3})
        assert served_by([await a.generate()]) == ["openai"]
        await eventually_fine(lambda: len(applied["r1"]) == len(applied["r2"]) == 2)
        await asyncio.sleep(0.2)  # room for an echo, were there one
        assert a.state.published == 2
        assert b.state.published == c.state.published == 0
        for records in applied.values():
            assert sorted(type(r).__name__ for r in records) == ["BreakerRecord", "CooldownRecord"]
            assert all(r.origin == "r0" for r in records)
            breaker = next(r for r in records if isinstance(r, BreakerRecord))
            assert (breaker.name, breaker.state) == ("fal", "open")
            cooldown = next(r for r in records if isinstance(r, CooldownRecord))
            assert cooldown.name == "wavespeed"
        assert a.state.mirror.applied_count == 0


async def test_concurrent_cooldowns_converge_on_the_latest_end(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """Concurrent Retry-Afters for one provider converge on the latest end everywhere."""
    async with fleet(farm, redis_url, prefix) as replicas:
        for seconds, r in zip((3.0, 9.0, 6.0), replicas, strict=True):
            r.router.instances["fal"].cooldowns.start("fal", seconds, "retry-after")
        latest = replicas[1].router.instances["fal"].cooldowns.until("fal")
        assert latest is not None

        def close_enough() -> bool:
            ends = [r.router.instances["fal"].cooldowns.until("fal") for r in replicas]
            return all(e is not None and abs(e - latest) < 0.005 for e in ends)

        await eventually_fine(close_enough, what="every replica at the latest end")
        client = replicas[0].state._client
        assert client is not None
        stored = await client.hget(replicas[0].state.keys.cooldowns, "fal")
        assert '"origin":"r1"' in stored


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


async def test_a_spent_x_ratelimit_budget_pauses_every_replica(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """When A spends OpenAI's announced budget, B waits for the refill instead of a 429."""
    farm.set_faults("openai", {"rate_limit": {"rpm": 60, "burst": 2}})
    kwargs: dict[str, Any] = {"router_kwargs": {"catalog": openai_only_catalog()}}
    async with (
        replica(farm, redis_url, prefix, "a", **kwargs) as a,
        replica(farm, redis_url, prefix, "b", **kwargs) as b,
    ):
        first = [await a.generate(model="gpt-direct") for _ in range(2)]
        await eventually_fine(
            lambda: b.router.instances["openai"].budget is not None, what="B learns the budget"
        )
        budget = b.router.instances["openai"].budget
        assert budget is not None
        assert budget.time_until() > 0
        second = [await b.generate(model="gpt-direct") for _ in range(2)]
    assert all(isinstance(r, ImageResult) for r in first + second)
    openai = farm.stats()["providers"]["openai"]
    assert openai["by_status"] == {"200": 4}


async def test_health_inputs_are_shared_and_blended(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """Replicas see each other's health inputs, blended by how many calls back each score."""
    async with fleet(farm, redis_url, prefix, count=2) as (a, b):
        farm.set_faults("fal", {"error_rates": {"500": 1.0}})
        for _ in range(2):
            await a.generate()
        farm.set_faults("fal", {})
        await eventually_fine(lambda: "r0" in b.state.peers and "r1" in a.state.peers)
        await eventually_fine(lambda: b.state.peers["r0"]["fal"]["samples"] == 2)
        peer = b.state.peers["r0"]["fal"]
        assert peer["breaker"] == "closed"
        fleet_fal = b.state.fleet_health()["fal"]
        assert set(fleet_fal["replicas"]) == {"r0", "r1"}
        mine, theirs = fleet_fal["replicas"]["r1"], fleet_fal["replicas"]["r0"]
        assert theirs < mine  # A saw fal fail; B has no calls and the neutral score
        assert fleet_fal["score"] == pytest.approx(theirs, abs=0.01)  # B's weight is ~0
        assert b.state.status()["peers"] == ["r0"]
