"""The SQLite job store's guarantees: final state once, refund once, leases guard writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagerouter.jobs import InsufficientCredits, JobFinished, NewJob
from imagerouter.jobs.sqlite import SQLiteJobStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteJobStore]:
    """A fresh store in a temporary directory."""
    async with SQLiteJobStore(tmp_path / "imagerouter.db") as opened:
        yield opened


async def _job(store: SQLiteJobStore, job_id: str = "job_a", price: int = 10) -> str:
    account = await store.create_account("acme")
    if account.balance < price:
        await store.grant_credits(account.id, 100)
    await store.submit_job(
        NewJob(job_id, account.id, {"model": "m", "prompt": "p"}, price, time.time() + 60)
    )
    return account.id


async def test_final_state_is_written_once_by_the_lease_holder(store: SQLiteJobStore) -> None:
    """Only the lease holder finishes a job, once; a second finish changes nothing."""
    await _job(store)
    [job] = await store.claim_jobs("w1", 5, 30)
    assert job.runs == 1
    assert not await store.complete_job(job.id, "w2", {"images": []}, [])
    assert await store.complete_job(
        job.id, "w1", {"images": []}, [{"provider": "fal", "outcome": "ok"}]
    )
    assert not await store.complete_job(job.id, "w1", {"images": []}, [])
    assert not await store.fail_job(job.id, "w1", {"code": "x", "message": "y"}, [])
    audit = await store.audit()
    assert audit["final_events"] == 1
    assert audit["refunds"] == 0


async def test_failure_refunds_exactly_once(store: SQLiteJobStore) -> None:
    """A failed job is refunded once; canceling it afterwards is refused and pays nothing."""
    account_id = await _job(store)
    await store.claim_jobs("w1", 1, 30)
    assert await store.fail_job("job_a", "w1", {"code": "boom", "message": "down"}, [])
    with pytest.raises(JobFinished):
        await store.cancel_job(account_id, "job_a")
    kinds = [(e.kind, e.amount) for e in await store.ledger(account_id)]
    assert kinds == [("refund", 10), ("debit", -10), ("grant", 100)]
    assert (await store.get_account(account_id)).balance == 100


async def test_expired_lease_is_requeued_and_old_holder_cannot_finish(
    store: SQLiteJobStore,
) -> None:
    """An expired lease goes back to the queue; its old holder can no longer finish the job."""
    await _job(store)
    await store.claim_jobs("dead", 1, 0.01)
    await asyncio.sleep(0.05)
    assert await store.requeue_expired() == 1
    [job] = await store.claim_jobs("alive", 1, 30)
    assert job.runs == 2
    assert not await store.complete_job(job.id, "dead", {}, [])
    assert await store.complete_job(job.id, "alive", {}, [])


async def test_short_wallet_writes_nothing(store: SQLiteJobStore) -> None:
    """A submit the wallet cannot pay for raises and leaves no job, debit or event."""
    account = await store.create_account("poor")
    with pytest.raises(InsufficientCredits) as refused:
        await store.submit_job(NewJob("job_b", account.id, {}, 5, time.time() + 60))
    assert (refused.value.balance, refused.value.price) == (0, 5)
    audit = await store.audit()
    assert audit["jobs"] == 0
    assert audit["debits"] == 0
    assert await store.events_since(None, None, 0) == []


async def test_concurrent_submits_share_commits(store: SQLiteJobStore) -> None:
    """Many concurrent submits are batched into fewer commits (group commit)."""
    account = await store.create_account("busy")
    await store.grant_credits(account.id, 10_000)
    commits = store.thread.commits
    await asyncio.gather(
        *(
            store.submit_job(NewJob(f"job_{n}", account.id, {}, 1, time.time() + 60))
            for n in range(200)
        )
    )
    assert store.thread.commits - commits < 200
    assert (await store.audit())["jobs"] == 200
