"""kill -9 of one replica under load: its leased jobs move to the others, every job completes
exactly once, the ledger balances, and every webhook arrives (one webhook-id per job)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.replicas.fleet import PRICE, Receiver, submit, until

pytestmark = pytest.mark.slow

TOTAL = 90
CREDITS = 100_000


async def test_kill_9_of_a_replica_loses_nothing_and_charges_once(make_fleet) -> None:
    """Kill -9 a replica holding leased jobs mid-load; clients retry its submits on the others
    with the same Idempotency-Key: every job completes once, debits = jobs, no refund, the
    balance adds up, and every job's webhook is delivered with a single webhook-id."""
    async with Receiver() as receiver:
        fleet = await make_fleet(
            {name: {"generation_ms": 700} for name in ("fal", "wavespeed", "openai")},
            server={"workers": 6},
        )
        token, _, secret = await fleet.key("load", CREDITS, webhook=receiver.url)
        victim = fleet.replicas[1]
        ids: dict[int, str] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

            async def offer(n: int) -> None:
                await asyncio.sleep(n * 0.02)
                ids[n], _ = await submit(session, fleet.replicas, n % 3, token, f"k{n}")

            load = [asyncio.ensure_future(offer(n)) for n in range(TOTAL)]

            async def every_replica_holds_leases() -> bool:
                rows = await fleet.fetch(
                    "SELECT count(DISTINCT lease_owner) FROM jobs WHERE status = 'processing'"
                )
                return rows[0][0] >= 3

            await until(every_replica_holds_leases, 20, "leases on all three replicas")
            victim.kill()
            await asyncio.gather(*load)

        async def all_final() -> bool:
            audit = await fleet.store.audit()
            return audit["jobs"] == TOTAL and set(audit["by_status"]) <= {"completed", "failed"}

        await until(all_final, 60, "every job to finish")
        audit = await fleet.store.audit()
        assert len(set(ids.values())) == TOTAL == audit["jobs"]
        assert audit["by_status"] == {"completed": TOTAL}
        assert audit["final_events"] == TOTAL
        assert audit["jobs_with_two_final_events"] == 0
        assert (audit["debits"], audit["refunds"]) == (TOTAL, 0)
        assert audit["balances"] == audit["ledger_sum"] == CREDITS - PRICE * TOTAL
        requeued = await fleet.fetch(
            "SELECT count(*) FROM events WHERE type = 'job.queued' "
            "AND data->>'reason' = 'lease_expired'"
        )
        assert requeued[0][0] >= 1, "the killed replica held no lease"
        assert (await fleet.fetch("SELECT max(runs) FROM jobs"))[0][0] >= 2

        await until(lambda: {h.job_id for h in receiver.hits} >= set(ids.values()), 30, "hooks")
        verifier = Webhook(secret)
        by_job: dict[str, set[str]] = {}
        for hit in receiver.hits:
            payload = verifier.verify(hit.body, hit.headers)
            assert payload["type"] == "job.completed"
            by_job.setdefault(hit.job_id, set()).add(hit.headers["webhook-id"])
        assert set(by_job) == set(ids.values())
        assert all(len(webhook_ids) == 1 for webhook_ids in by_job.values())
        delivered = await fleet.fetch("SELECT status, count(*) FROM deliveries GROUP BY status")
        assert dict(delivered) == {"succeeded": TOTAL}
        assert json.loads(receiver.hits[0].body)["data"]["credits"]["refunded"] == 0
