"""Redis goes away in the middle of a run and comes back: the replicas carry on from their
in-process state (no failed request, no failed job), then share state again."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import aiohttp
import pytest

from tests.replicas.fleet import submit, until

pytestmark = pytest.mark.slow

TOTAL = 60


async def test_a_redis_outage_fails_nothing_and_sharing_resumes(make_fleet) -> None:
    """Cut every replica's link to Redis (a TCP proxy) mid-load, restore it: every submit is
    accepted, every job completes, and afterwards a Retry-After seen by A reaches B and C."""
    fleet = await make_fleet(
        {name: {"generation_ms": 100} for name in ("fal", "wavespeed", "openai")}, proxy=True
    )
    assert fleet.proxy is not None
    token, _, _ = await fleet.key("acme")
    ids: dict[int, str] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def offer(n: int) -> None:
            await asyncio.sleep(n * 0.04)
            ids[n], _ = await submit(session, fleet.replicas, n % 3, token, f"k{n}")

        load = [asyncio.ensure_future(offer(n)) for n in range(TOTAL)]
        await asyncio.sleep(0.6)
        fleet.proxy.cut()
        await asyncio.sleep(1.2)
        fleet.proxy.restore()
        await asyncio.gather(*load)

        async def all_final() -> bool:
            audit = await fleet.store.audit()
            return set(audit["by_status"]) <= {"completed", "failed", "canceled"}

        await until(all_final, 60, "every job to finish")
        audit = await fleet.store.audit()
        assert audit["by_status"] == {"completed": TOTAL}
        assert len(set(ids.values())) == TOTAL

        fleet.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 30})
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "after"}
        async with session.post(
            f"{fleet.replicas[0].url}/v1/jobs",
            json={"model": "gpt-image-2", "prompt": "p"},
            headers=headers,
        ) as answer:
            assert answer.status == 202
        for index in (1, 2):
            await until(
                lambda i=index: (
                    (fleet.providers(i, token)["fal"]["cooldown_remaining_s"] or 0) > 20
                ),
                15,
                f"replica {index} to learn fal's cooldown after the outage",
            )


def _shared_state(fleet: Any, replica: int, token: str) -> dict[str, Any]:
    url = f"{fleet.replicas[replica].url}/v1/providers"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.load(answer)["shared_state"]


async def test_a_retry_after_reaches_the_other_replicas_while_redis_is_away(make_fleet) -> None:
    """With every replica's link to Redis cut, a 429 + Retry-After answered to the replica
    whose worker ran the job still keeps the others off that provider for the window: it tells
    them through PostgreSQL."""
    fleet = await make_fleet({"fal": {"generation_ms": 50}}, proxy=True)
    assert fleet.proxy is not None
    token, _, _ = await fleet.key("acme")
    fleet.proxy.cut()
    for index in range(3):
        await until(
            lambda i=index: not _shared_state(fleet, i, token)["healthy"],
            15,
            f"replica {index} to see Redis gone",
        )
    fleet.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 30})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await submit(session, fleet.replicas, 0, token, "during")
    for index in range(3):
        await until(
            lambda i=index: (fleet.providers(i, token)["fal"]["cooldown_remaining_s"] or 0) > 20,
            15,
            f"replica {index} to learn fal's cooldown while Redis is away",
        )
    assert fleet.stats("fal")["requests"] == 1
    assert not any(_shared_state(fleet, i, token)["healthy"] for i in range(3))
    relayed = [_relayed(fleet, index) for index in range(3)]
    assert sorted(relayed) == [0, 0, 1], relayed


def _relayed(fleet: Any, replica: int) -> int:
    """The windows one replica told the others through the job store (``/metrics``)."""
    with urllib.request.urlopen(f"{fleet.replicas[replica].url}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith('imagerouter_shared_state_relayed_total{outcome="sent"}'):
                return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no imagerouter_shared_state_relayed_total in /metrics")
