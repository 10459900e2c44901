"""A replica frozen (SIGSTOP) past its leases while it holds running jobs, then thawed
(SIGCONT): the other replica takes its jobs over, and every job ends once, with one final
event and one debit; the thawed replica's late writes change nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.tally import Load, books, settled_books
from tests.replicas.fleet import until

pytestmark = pytest.mark.slow

TOTAL = 120


async def test_a_replica_paused_past_its_leases_loses_nothing_and_charges_once(
    fault_counts,
    make_fleet,
) -> None:
    fleet = await make_fleet(
        {name: {"generation_ms": 700} for name in ("fal", "wavespeed", "openai")},
        replicas=2,
        server={"workers": 6},
    )
    token, _, _ = await fleet.key("load", 100_000)
    victim = fleet.replicas[1]
    load = Load([r.url for r in fleet.replicas], token, TOTAL, interval_s=0.05, timeout_s=1.5)
    running = asyncio.ensure_future(load.run())

    async def victim_holds_leases() -> bool:
        owners = await fleet.fetch(
            "SELECT count(DISTINCT lease_owner) FROM jobs WHERE status = 'processing'"
        )
        return owners[0][0] >= 2

    await until(victim_holds_leases, 20, "both replicas to hold leases")
    victim.pause()
    try:
        await asyncio.sleep(2.0 * 2 + 0.5)  # lease_s is 2 s: every lease it held ran out
    finally:
        victim.resume()
    await running

    await settled_books(fleet.fetch)
    await asyncio.sleep(1.0)  # the thawed replica's late writes, if any, land now
    found = await books(fleet.fetch)
    fault_counts(load.report("replica-paused", found))
    load.assert_clean(found)
    assert found.by_status == {"completed": found.totals["jobs"]}
    assert len(load.accepted) >= TOTAL // 2  # every keyed submit, at least
    requeued = await fleet.fetch(
        "SELECT count(*) FROM events WHERE type = 'job.queued' "
        "AND data->>'reason' = 'lease_expired'"
    )
    assert requeued[0][0] >= 1, "the paused replica held no lease that ran out"
    assert victim.alive
