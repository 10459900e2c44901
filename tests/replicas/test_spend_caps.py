"""Two ``imagerouter serve`` replicas, one Redis: a spend cap holds for the fleet as a whole
(config file → server → shared state, end to end)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.helpers.windows import clear_of_the_hour_end
from tests.replicas.fleet import Fleet, submit, until

pytestmark = pytest.mark.slow

#: gpt-image-2 costs $0.042 per image on fal (catalog): the third call reaches a $0.10 cap.
FAL_COST = 0.042


@pytest.fixture(autouse=True)
async def _clear_of_the_hour_end() -> None:
    """Spend windows are UTC hours: no scenario here straddles the end of one."""
    await clear_of_the_hour_end()


async def _final(session: aiohttp.ClientSession, fleet: Fleet, token: str, job: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}

    async def done() -> dict[str, Any] | None:
        async with session.get(f"{fleet.replicas[0].url}/v1/jobs/{job}", headers=headers) as r:
            body = await r.json()
        return body if body["status"] in ("completed", "failed", "canceled") else None

    return await until(done, 30, f"job {job} to finish")


async def _fal_spend(session: aiohttp.ClientSession, url: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{url}/v1/providers", headers=headers) as answer:
        providers = {p["name"]: p for p in (await answer.json())["data"]}
    return providers["fal"]["spend"]["hour"]


async def test_a_cap_reached_through_one_replica_holds_on_every_replica(make_fleet) -> None:
    """Three jobs (whichever replica runs them) reach fal's $0.10 hourly cap; both replicas
    then report fal capped with the fleet's total, and later jobs, through either replica, go
    to WaveSpeed with a spend_cap skip while fal sees no further call."""
    fleet = await make_fleet({}, replicas=2, providers={"fal": {"max_usd_per_hour": 0.1}})
    token, _, _ = await fleet.key("acme")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for n in range(3):
            job, _ = await submit(session, fleet.replicas, 0, token, f"spend-{n}")
            body = await _final(session, fleet, token, job)
            assert (body["status"], body["result"]["provider"]) == ("completed", "fal")
        for replica in fleet.replicas:
            hour = await until(
                lambda url=replica.url: _capped(session, url, token), 10, "fal capped everywhere"
            )
            assert hour["spent_usd"] == pytest.approx(3 * FAL_COST)
        assert fleet.stats("fal")["generations"] == 3

        for n in range(4):
            job, _ = await submit(session, fleet.replicas, n % 2, token, f"later-{n}")
            body = await _final(session, fleet, token, job)
            assert (body["status"], body["result"]["provider"]) == ("completed", "wavespeed")
            fal = [a for a in body["attempts"] if a["provider"] == "fal"]
            assert [a["outcome"] for a in fal] == ["skipped"]
            assert fal[0]["reason"].startswith("spend_cap: ")
        assert fleet.stats("fal")["generations"] == 3


async def _capped(session: aiohttp.ClientSession, url: str, token: str) -> dict | None:
    hour = await _fal_spend(session, url, token)
    return hour if hour["capped"] else None
