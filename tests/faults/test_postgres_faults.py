"""PostgreSQL fails under a two-replica fleet carrying steady load: first every replica's
sessions are killed (``pg_terminate_backend``), then the server restarts and stays down a
moment. Submits meanwhile get a 503 ``store_unavailable`` with ``Retry-After`` (never a 500,
never a 202 for a job that was not stored); the pools reconnect by themselves; afterwards
every accepted job ends once, the books balance, and LISTEN/NOTIFY is back (each replica
listens again, and an SSE stream on one replica sees a job submitted on the other)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.faults.services import OwnPostgres
from tests.faults.tally import Load, settled_books
from tests.replicas.fleet import until

pytestmark = pytest.mark.slow

TOTAL = 240


async def _sse_sees(url: str, token: str, submit) -> bool:
    """Open ``/v1/events`` on ``url``, run ``submit()`` (a job id), and wait (bounded) until
    the stream carries an event of that job."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{url}/v1/events", headers=headers) as stream,
    ):
        assert stream.status == 200
        job_id = await submit()
        async for raw in stream.content:
            line = raw.decode().strip()
            if line.startswith("data:") and json.loads(line[5:])["job_id"] == job_id:
                return True
    return False


async def test_postgres_killed_sessions_and_a_restart_lose_nothing(
    fault_counts, make_fleet, own_postgres: OwnPostgres
) -> None:
    fleet = await make_fleet(
        {name: {"generation_ms": 150} for name in ("fal", "wavespeed", "openai")},
        replicas=2,
        server={"workers": 6},
    )
    token, _, _ = await fleet.key("load", 1_000_000)
    load = Load([r.url for r in fleet.replicas], token, TOTAL, interval_s=0.025)
    running = asyncio.ensure_future(load.run())
    await asyncio.sleep(1.0)
    killed = await asyncio.to_thread(own_postgres.terminate)
    assert killed >= 2, "the replicas had no session to kill"
    await asyncio.sleep(1.0)
    await asyncio.to_thread(own_postgres.restart, 1.5)
    await running

    found = await settled_books(fleet.fetch)
    fault_counts(load.report("pg-restart", found))
    load.assert_clean(found)
    assert load.unavailable > 0, "no submit saw the outage"
    assert load.gave_up == 0
    assert len(load.accepted) >= TOTAL // 2  # every keyed submit, retried after Retry-After
    assert found.by_status == {"completed": found.totals["jobs"]}

    async def every_replica_listens() -> bool:
        rows = await fleet.fetch(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imagerouter' "
            "AND query LIKE 'LISTEN%'"
        )
        return rows[0][0] >= 3  # two replicas and this test's store

    await until(every_replica_listens, 20, "every feed to LISTEN again")
    headers = {"Authorization": f"Bearer {token}"}

    async def submit_on_first() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{fleet.replicas[0].url}/v1/jobs", json=load.body, headers=headers) as r,
        ):
            assert r.status == 202
            return (await r.json())["id"]

    assert await asyncio.wait_for(_sse_sees(fleet.replicas[1].url, token, submit_on_first), 20)
