"""Redis goes away in the middle of a run and comes back: the replicas carry on from their
in-process state (no failed request, no failed job), then share state again."""

from __future__ import annotations

import asyncio

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
