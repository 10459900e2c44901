"""The JobStore contract, run against both backends: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

import pytest

from imagerouter.auth import mint_key
from imagerouter.clock import FakeClock
from imagerouter.jobs import (
    InsufficientCredits,
    JobEvent,
    JobFinished,
    JobNotFound,
    JobStore,
    NewJob,
    StoredResponse,
)
from imagerouter.jobs.rules import WAITER_LOCK_S
from imagerouter.jobs.store import MAX_BALANCE
from imagerouter.jobs.types import AttemptRecord, Deferral, DeliveryAttempt
from tests.store.conftest import StoreFactory

REQUEST = {"model": "gpt-image-2", "prompt": "a lighthouse"}
HOOK = "https://h.example/x"


async def _account(store: JobStore, name: str = "acme", credits: int = 1000) -> str:
    account = await store.create_account(name)
    if credits:
        await store.grant_credits(account.id, credits, "test")
    return account.id


def _job(
    account_id: str, job_id: str, price: int = 10, key: str | None = None, **request: object
) -> NewJob:
    return NewJob(job_id, account_id, {**REQUEST, **request}, price, time.time() + 600, key)


async def _completed(store: JobStore, account_id: str, *urls: str) -> None:
    """One job a webhook URL of ``urls`` (``job_0``, ``job_1``, …), each leased to ``w1`` and
    completed: a delivery each."""
    for n, url in enumerate(urls):
        await store.submit_job(_job(account_id, f"job_{n}", webhook_url=url))
    await store.claim_jobs("w1", len(urls), 30)
    for n in range(len(urls)):
        await store.complete_job(f"job_{n}", "w1", {"provider": "fal"}, [])


async def _audit_balances(store: JobStore) -> None:
    audit = await store.audit()  # type: ignore[attr-defined]
    assert audit["balances"] == audit["ledger_sum"]
    assert audit["jobs"] == audit["debits"]
    assert audit["refunds"] == audit["refundable_jobs"]
    assert audit["jobs_with_two_final_events"] == 0


# --- submit and charge -------------------------------------------------------------------------


async def test_submit_debits_and_queues_in_one_step(store: JobStore) -> None:
    """A submit debits the price, creates the queued job and its event, all or nothing."""
    account_id = await _account(store)
    job = await store.submit_job(_job(account_id, "job_a", price=26))
    assert (job.status, job.price, job.refunded) == ("queued", 26, 0)
    assert (await store.get_account(account_id)).balance == 1000 - 26
    [event] = await store.events_since(account_id, "job_a", 0)
    assert (event.type, event.data) == ("job.queued", {"status": "queued", "price": 26})
    kinds = [(e.kind, e.amount, e.job_id) for e in await store.ledger(account_id)]
    assert kinds == [("debit", -26, "job_a"), ("grant", 1000, None)]
    await _audit_balances(store)


async def test_grants_stay_within_the_ledgers_range(store: JobStore) -> None:
    """A grant is 1..MAX_BALANCE and never lifts a balance past MAX_BALANCE: refused whole,
    with nothing written, rather than overflowing a 64-bit integer."""
    account_id = await _account(store, credits=MAX_BALANCE - 5)
    for amount in (0, -1, MAX_BALANCE + 1):
        with pytest.raises(ValueError, match="between 1 and"):
            await store.grant_credits(account_id, amount)
    with pytest.raises(ValueError, match="would pass the most"):
        await store.grant_credits(account_id, MAX_BALANCE)
    with pytest.raises(ValueError, match="would pass the most"):
        await store.grant_credits(account_id, 6)
    assert await store.grant_credits(account_id, 5) == MAX_BALANCE
    assert [entry.amount for entry in await store.ledger(account_id)] == [5, MAX_BALANCE - 5]


async def test_short_wallet_writes_nothing(store: JobStore) -> None:
    """A submit the wallet cannot pay for raises and leaves no job, debit or event."""
    account_id = await _account(store, "poor", credits=5)
    with pytest.raises(InsufficientCredits) as refused:
        await store.submit_job(_job(account_id, "job_b", price=6))
    assert (refused.value.balance, refused.value.price) == (5, 6)
    assert await store.get_job(account_id, "job_b") is None
    assert await store.events_since(account_id, None, 0) == []
    assert (await store.get_account(account_id)).balance == 5


async def test_concurrent_submits_never_overdraw(make_store: StoreFactory) -> None:
    """Submits racing on one wallet from two store instances charge at most what it holds."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first, credits=100)
    jobs = [_job(account_id, f"job_{n}", price=10) for n in range(30)]
    results = await asyncio.gather(
        *((first if n % 2 else second).submit_job(job) for n, job in enumerate(jobs)),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(created), len(refused)) == (10, 20)
    assert (await first.get_account(account_id)).balance == 0
    await _audit_balances(first)


async def test_jobs_list_newest_first_a_page_at_a_time(store: JobStore) -> None:
    """Listing pages through the account's jobs newest first, optionally by status."""
    account_id = await _account(store)
    for n in range(5):
        await store.submit_job(_job(account_id, f"job_{n}"))
    page = await store.list_jobs(account_id, limit=3)
    assert [j.id for j in page.jobs] == ["job_4", "job_3", "job_2"]
    rest = await store.list_jobs(account_id, limit=3, cursor=page.next_cursor)
    assert ([j.id for j in rest.jobs], rest.next_cursor) == (["job_1", "job_0"], None)
    await store.claim_jobs("w1", 1, 30)
    processing = await store.list_jobs(account_id, status="processing")
    assert [j.id for j in processing.jobs] == ["job_0"]


async def test_api_keys_are_stored_hashed_and_revocable(store: JobStore) -> None:
    """A key is found by id with its account, listed, and revoked once."""
    account_id = await _account(store)
    minted = mint_key(account_id, "ci", time.time())
    await store.create_api_key(minted.record)
    found = await store.get_api_key(minted.record.id)
    assert found is not None
    assert (found.account_id, found.account_name, found.active) == (account_id, "acme", True)
    assert minted.token not in found.secret_hash
    assert [k.id for k in await store.list_api_keys(account_id)] == [minted.record.id]
    assert await store.revoke_api_key(minted.record.id)
    assert not await store.revoke_api_key(minted.record.id)
    revoked = await store.get_api_key(minted.record.id)
    assert revoked is not None
    assert not revoked.active


# --- claims and leases -------------------------------------------------------------------------


async def test_two_claimers_never_get_the_same_job(make_store: StoreFactory) -> None:
    """Claimers racing on two store instances split the queue: every job leased exactly once."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first, credits=10_000)
    for n in range(60):
        await first.submit_job(_job(account_id, f"job_{n:02d}", price=1))

    async def claimer(store: JobStore, owner: str) -> list[str]:
        got: list[str] = []
        while batch := await store.claim_jobs(owner, 4, 30):
            got += [job.id for job in batch]
            await asyncio.sleep(0)
        return got

    claims = await asyncio.gather(
        *(claimer(store, f"w{i}") for i, store in enumerate([first, second] * 3))
    )
    every = [job_id for got in claims for job_id in got]
    assert sorted(every) == [f"job_{n:02d}" for n in range(60)]
    assert sum(1 for got in claims if got) >= 2


async def test_claims_take_the_oldest_first_and_count_runs(store: JobStore) -> None:
    """A claim leases the oldest queued jobs and writes a processing event for each."""
    account_id = await _account(store)
    for n in range(3):
        await store.submit_job(_job(account_id, f"job_{n}"))
    jobs = await store.claim_jobs("w1", 2, 30)
    assert [(j.id, j.status, j.runs, j.lease_owner) for j in jobs] == [
        ("job_0", "processing", 1, "w1"),
        ("job_1", "processing", 1, "w1"),
    ]
    events = await store.events_since(account_id, None, 0)
    assert [(e.job_id, e.type) for e in events][-2:] == [
        ("job_0", "job.processing"),
        ("job_1", "job.processing"),
    ]
    assert await store.renew_leases("w1", ["job_0", "job_1", "job_2"], 30) == {"job_0", "job_1"}
    assert await store.renew_leases("w2", ["job_0"], 30) == set()


async def test_a_claims_events_reach_listeners_as_stored(store: JobStore) -> None:
    """The processing events of a claim of many jobs (more than one multi-row statement holds)
    are handed to subscribers with the ids, types, data and times the log keeps."""
    account_id = await _account(store)
    for n in range(70):
        await store.submit_job(_job(account_id, f"job_{n:02d}"))
    heard: list[JobEvent] = []
    unsubscribe = store.subscribe(heard.extend)
    try:
        claimed = await store.claim_jobs("w1", 70, 30)
        await _until(lambda: sum(e.type == "job.processing" for e in heard) == 70)
    finally:
        unsubscribe()
    processing = [e for e in heard if e.type == "job.processing"]
    assert [e.job_id for e in processing] == [j.id for j in claimed]
    assert all(e.data == {"status": "processing", "run": 1} for e in processing)
    stored = [
        e for e in await store.events_since(account_id, None, 0) if e.type == "job.processing"
    ]
    assert [(e.id, e.job_id, e.data) for e in stored] == [
        (e.id, e.job_id, e.data) for e in processing
    ]


async def test_expired_lease_is_requeued_and_old_holder_cannot_finish(
    make_store: StoreFactory,
) -> None:
    """An expired lease goes back to the queue (once, whoever sweeps); its old holder can no
    longer finish the job."""
    clock = FakeClock()
    first, second = await make_store(clock=clock), await make_store(clock=clock)
    account_id = await _account(first)
    await first.submit_job(_job(account_id, "job_a"))
    await first.claim_jobs("dead", 1, 5)
    clock.advance(10)
    swept = await asyncio.gather(first.requeue_expired(), second.requeue_expired())
    assert sorted(swept) == [0, 1]
    [job] = await second.claim_jobs("alive", 1, 30)
    assert job.runs == 2
    assert not await first.complete_job(job.id, "dead", {}, [])
    assert await second.complete_job(job.id, "alive", {"provider": "fal"}, [])
    reasons = [e.data.get("reason") for e in await first.events_since(account_id, "job_a", 0)]
    assert reasons.count("lease_expired") == 1


async def test_release_hands_a_job_back_to_the_queue(store: JobStore) -> None:
    """Only the holder releases a job; it is queued again with the reason in its event."""
    account_id = await _account(store)
    await store.submit_job(_job(account_id, "job_a"))
    await store.claim_jobs("w1", 1, 30)
    assert not await store.release_job("job_a", "w2", "shutdown")
    assert await store.release_job("job_a", "w1", "shutdown")
    job = await store.get_job(account_id, "job_a")
    assert job is not None
    assert (job.status, job.lease_owner) == ("queued", None)
    last = (await store.events_since(account_id, "job_a", 0))[-1]
    assert last.data == {"status": "queued", "reason": "shutdown"}


async def test_a_release_keeps_the_attempts_of_the_run_it_stopped(store: JobStore) -> None:
    """The calls a shutdown stopped go back with the job, under its run, once: the job then
    shows them beside the next run's. A release by a non-holder writes none."""
    account_id = await _account(store)
    await store.submit_job(_job(account_id, "job_a"))
    [claimed] = await store.claim_jobs("w1", 1, 30)
    stopped = [
        {"provider": "fal", "outcome": "canceled", "started_at": time.time(), "latency_ms": 9.0}
    ]
    assert not await store.release_job("job_a", "w2", "shutdown", stopped)
    assert await store.release_job("job_a", "w1", "shutdown", stopped)
    assert not await store.release_job("job_a", "w1", "shutdown", stopped)  # not held now
    [again] = await store.claim_jobs("w2", 1, 30)
    done = {"provider": "wavespeed", "outcome": "ok", "started_at": time.time(), "latency_ms": 5.0}
    assert await store.complete_job("job_a", "w2", {"images": []}, [done])
    job = await store.get_job(account_id, "job_a", with_attempts=True)
    assert job is not None
    runs = [(a["run"], a["provider"], a["outcome"]) for a in job.attempts]
    assert runs == [(claimed.runs, "fal", "canceled"), (again.runs, "wavespeed", "ok")], runs


# --- final writes and refunds ------------------------------------------------------------------


async def test_final_state_is_written_once_by_the_lease_holder(store: JobStore) -> None:
    """Only the lease holder finishes a job, once; a second finish changes nothing."""
    account_id = await _account(store)
    await store.submit_job(_job(account_id, "job_a"))
    [job] = await store.claim_jobs("w1", 5, 30)
    attempt = {"provider": "fal", "outcome": "ok", "started_at": time.time(), "latency_ms": 5.0}
    assert not await store.complete_job(job.id, "w2", {"images": []}, [])
    assert await store.complete_job(job.id, "w1", {"images": [], "provider": "fal"}, [attempt])
    assert not await store.complete_job(job.id, "w1", {"images": []}, [])
    assert not await store.fail_job(job.id, "w1", {"code": "x", "message": "y"}, [])
    done = await store.get_job(account_id, job.id)
    assert done is not None
    assert (done.status, done.result, done.lease_owner) == (
        "completed",
        {"images": [], "provider": "fal"},
        None,
    )
    assert [(a["run"], a["provider"], a["outcome"]) for a in done.attempts] == [(1, "fal", "ok")]
    # a webhook's body needs the job, not its attempts: the same job without them
    without = await store.get_job(account_id, job.id, with_attempts=False)
    assert without is not None
    assert without.attempts == []
    assert (without.status, without.result, without.price) == (done.status, done.result, done.price)
    audit = await store.audit()  # type: ignore[attr-defined]
    assert (audit["final_events"], audit["refunds"]) == (1, 0)


async def test_racing_finishes_write_one_final_state(make_store: StoreFactory) -> None:
    """Complete, fail and cancel racing on one job from two instances: exactly one wins, and
    the refund is paid at most once."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first)
    for n in range(10):
        await first.submit_job(_job(account_id, f"job_{n}"))
    await first.claim_jobs("w1", 10, 30)

    async def cancel(job_id: str) -> bool:
        try:
            await second.cancel_job(account_id, job_id)
        except JobFinished:
            return False
        return True

    for n in range(10):
        job_id = f"job_{n}"
        won = await asyncio.gather(
            first.complete_job(job_id, "w1", {"provider": "fal"}, []),
            second.fail_job(job_id, "w1", {"code": "boom", "message": "down"}, []),
            cancel(job_id),
        )
        assert sum(won) == 1
    await _audit_balances(first)


async def test_failure_refunds_exactly_once(store: JobStore) -> None:
    """A failed job is refunded once, with the refund in its event; canceling it afterwards is
    refused and pays nothing."""
    account_id = await _account(store, credits=100)
    await store.submit_job(_job(account_id, "job_a"))
    await store.claim_jobs("w1", 1, 30)
    assert await store.fail_job("job_a", "w1", {"code": "boom", "message": "down"}, [])
    with pytest.raises(JobFinished):
        await store.cancel_job(account_id, "job_a")
    kinds = [(e.kind, e.amount) for e in await store.ledger(account_id)]
    assert kinds == [("refund", 10), ("debit", -10), ("grant", 100)]
    assert (await store.get_account(account_id)).balance == 100
    last = (await store.events_since(account_id, "job_a", 0))[-1]
    assert last.data["refunded"] == 10
    assert last.data["error"] == {"code": "boom", "message": "down"}


async def test_cancel_refunds_once_and_the_holder_cannot_finish(store: JobStore) -> None:
    """Canceling a running job refunds it; its worker's late finish is refused."""
    account_id = await _account(store, credits=100)
    await store.submit_job(_job(account_id, "job_a"))
    await store.claim_jobs("w1", 1, 30)
    canceled = await store.cancel_job(account_id, "job_a")
    assert (canceled.status, canceled.refunded) == ("canceled", 10)
    assert not await store.complete_job("job_a", "w1", {}, [])
    with pytest.raises(JobFinished):
        await store.cancel_job(account_id, "job_a")
    with pytest.raises(JobNotFound):
        await store.cancel_job(account_id, "job_nope")
    assert (await store.get_account(account_id)).balance == 100


async def test_a_canceled_runs_attempts_are_kept_once_and_only_for_that_run(
    store: JobStore,
) -> None:
    """The attempts a run made before its job was canceled are written once; not for a job
    still running (its finish writes them), nor for another run, nor twice."""
    account_id = await _account(store, credits=100)
    await store.submit_job(_job(account_id, "job_a"))
    (claimed,) = await store.claim_jobs("w1", 1, 30)
    calls = [
        {"provider": "fal", "outcome": "error", "error_class": "RateLimited", "retry_after": 2.0},
        {"provider": "wavespeed", "outcome": "canceled", "reason": "abandoned in flight"},
    ]
    assert not await store.record_canceled_attempts("job_a", claimed.runs, calls)  # running
    await store.cancel_job(account_id, "job_a")
    assert not await store.record_canceled_attempts("job_a", claimed.runs + 1, calls)
    assert await store.record_canceled_attempts("job_a", claimed.runs, calls)
    assert not await store.record_canceled_attempts("job_a", claimed.runs, calls)
    job = await store.get_job(account_id, "job_a")
    assert job is not None
    assert [(a["provider"], a["outcome"]) for a in job.attempts] == [
        ("fal", "error"),
        ("wavespeed", "canceled"),
    ]
    assert job.attempts[0]["retry_after"] == 2.0


# --- idempotency -------------------------------------------------------------------------------


async def test_idempotency_key_lifecycle(store: JobStore) -> None:
    """A key is new once, then in flight, then replays its response; another body mismatches;
    a released key starts afresh."""
    account_id = await _account(store)
    begin = store.idempotency_begin
    assert (await begin(account_id, "k1", "fp", 30, 3600)).state == "new"
    assert (await begin(account_id, "k1", "fp", 30, 3600)).state == "in_flight"
    assert (await begin(account_id, "k1", "other", 30, 3600)).state == "mismatch"
    response = StoredResponse(202, {"id": "job_x"}, {"Location": "/v1/jobs/job_x"})
    await store.idempotency_finish(account_id, "k1", response)
    replay = await begin(account_id, "k1", "fp", 30, 3600)
    assert (replay.state, replay.response) == ("replay", response)
    assert (await begin(account_id, "k2", "fp", 30, 3600)).state == "new"
    await store.idempotency_release(account_id, "k2")
    assert (await begin(account_id, "k2", "fp", 30, 3600)).state == "new"


async def test_a_key_waiting_for_its_job_is_locked_briefly(make_store: StoreFactory) -> None:
    """A request that holds a key for its whole wait (the OpenAI route) takes it with a long
    lock, and its job's creation shortens that to WAITER_LOCK_S: a retry within it is in
    flight, after it takes the key over with the job to wait on (one job, one charge), and
    holds it as briefly. (The long lock for the whole wait gave a crashed holder's retries
    409s for the deadline and 30 s more.)"""
    clock = FakeClock()
    store = await make_store(clock=clock)
    account_id = await _account(store)
    begin = store.idempotency_begin
    assert (await begin(account_id, "k", "fp", 330, 3600)).state == "new"
    clock.advance(WAITER_LOCK_S + 1)
    assert (await begin(account_id, "k", "fp", 330, 3600)).state == "in_flight"  # no job yet
    await store.submit_job(_job(account_id, "job_k", key="k"))
    assert (await begin(account_id, "k", "fp", 330, 3600)).state == "in_flight"
    clock.advance(WAITER_LOCK_S + 1)
    taken = await begin(account_id, "k", "fp", 330, 3600)
    assert (taken.state, taken.job_id) == ("new", "job_k")
    assert (await begin(account_id, "k", "fp", 330, 3600)).state == "in_flight"
    clock.advance(WAITER_LOCK_S + 1)
    again = await begin(account_id, "k", "fp", 330, 3600)
    assert (again.state, again.job_id) == ("new", "job_k")
    assert (await store.get_account(account_id)).balance == 1000 - 10


async def test_submit_once_creates_one_job_per_key(make_store: StoreFactory) -> None:
    """The same key submitted at once through two instances creates and charges one job; the
    others replay its response or see another body refused."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first)
    response = StoredResponse(202, {"id": "job_a"})
    jobs = [_job(account_id, f"job_{n}", key="k") for n in ("a", "b", "c", "d")]
    outcomes = await asyncio.gather(
        *(
            (first if n % 2 else second).submit_job_once(job, "fp", response, ttl_s=3600)
            for n, job in enumerate(jobs)
        )
    )
    created = [o for o in outcomes if not hasattr(o, "state")]
    assert len(created) == 1
    assert {o.state for o in outcomes if hasattr(o, "state")} == {"replay"}
    mismatch = await first.submit_job_once(
        _job(account_id, "job_e", key="k"), "other", response, ttl_s=3600
    )
    assert mismatch.state == "mismatch"  # type: ignore[union-attr]
    assert (await first.get_account(account_id)).balance == 1000 - 10
    await _audit_balances(first)


async def test_expired_idempotency_keys_are_purged(make_store: StoreFactory) -> None:
    """A key past its time to live is purged and may be used again."""
    clock = FakeClock()
    store = await make_store(clock=clock)
    account_id = await _account(store)
    await store.idempotency_begin(account_id, "k", "fp", 30, 60)
    clock.advance(61)
    assert await store.purge_idempotency() == 1
    assert (await store.idempotency_begin(account_id, "k", "fp2", 30, 60)).state == "new"


async def test_a_backlog_of_expired_keys_is_purged_in_bounded_steps(
    make_store: StoreFactory,
) -> None:
    """Keys found expired in numbers (a server back after a long stop) are all purged over
    several steps of ``purge_batch`` (a loop that stopped after one step would leave 23), and
    live keys are kept. That each step is its own op is checked on SQLite, in
    ``test_sqlite_subjournal.py``."""
    clock = FakeClock()
    store = await make_store(clock=clock)
    store.purge_batch = 7  # type: ignore[attr-defined]
    account_id = await _account(store)
    for n in range(30):
        await store.idempotency_begin(account_id, f"old-{n}", "fp", 30, 60)
    clock.advance(30)
    await store.idempotency_begin(account_id, "live", "fp", 30, 60)
    clock.advance(31)
    assert await store.purge_idempotency() == 30
    assert await store.purge_idempotency() == 0
    assert (await store.idempotency_begin(account_id, "old-0", "fp2", 30, 60)).state == "new"
    assert (await store.idempotency_begin(account_id, "live", "fp2", 30, 60)).state == "mismatch"


# --- events ------------------------------------------------------------------------------------


async def test_events_are_ordered_and_resumable(store: JobStore) -> None:
    """Event ids only grow; ``events_since`` filters by account and job and resumes after an
    id; ``last_event_id`` is the newest one."""
    acme, other = await _account(store), await _account(store, "other")
    await store.submit_job(_job(acme, "job_a"))
    await store.submit_job(_job(other, "job_b"))
    await store.claim_jobs("w1", 2, 30)
    await store.complete_job("job_a", "w1", {"provider": "fal"}, [])
    every = await store.events_since(None, None, 0)
    ids = [e.id for e in every]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids) == 5
    mine = await store.events_since(acme, None, 0)
    assert [e.type for e in mine] == ["job.queued", "job.processing", "job.completed"]
    assert await store.events_since(acme, None, mine[0].id) == mine[1:]
    assert [e.job_id for e in await store.events_since(None, "job_b", 0)] == ["job_b"] * 2
    assert await store.events_since(acme, "job_b", 0) == []
    assert await store.last_event_id() == ids[-1]
    assert await store.last_event_id(acme) == mine[-1].id
    assert await store.events_since(acme, None, 0, limit=2) == mine[:2]


async def test_subscribers_get_each_event_once_in_order(store: JobStore) -> None:
    """A listener gets every committed event once, in id order; after unsubscribing, none."""
    got: list[JobEvent] = []
    unsubscribe = store.subscribe(got.extend)
    account_id = await _account(store)
    await asyncio.gather(*(store.submit_job(_job(account_id, f"job_{n}")) for n in range(20)))
    await store.claim_jobs("w1", 20, 30)
    stored = await store.events_since(None, None, 0)
    await _until(lambda: len(got) >= len(stored))
    assert [e.id for e in got] == [e.id for e in stored]
    unsubscribe()
    await store.submit_job(_job(account_id, "job_late"))
    await asyncio.sleep(0.1)
    assert len(got) == len(stored)


async def test_readers_never_miss_an_event_under_concurrent_writers(
    make_store: StoreFactory,
) -> None:
    """Readers polling ``events_since`` while two instances write concurrently end with every
    event, in id order: an id is never seen before a lower one commits (gap-safe resume)."""
    first, second = await make_store(), await make_store()
    accounts = [await _account(first, f"a{n}", credits=10_000) for n in range(4)]
    seen: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for event in await second.events_since(None, None, last):
                seen.append(event.id)
                last = event.id
            if finished:
                return

    async def writer(store: JobStore, worker: str, offset: int) -> None:
        for n in range(25):
            account = accounts[(n + offset) % len(accounts)]
            await store.submit_job(_job(account, f"job_{worker}_{n}", price=1))
            for job in await store.claim_jobs(worker, 2, 30):
                await store.complete_job(job.id, worker, {"provider": "fal"}, [])

    reading = asyncio.ensure_future(reader())
    await asyncio.gather(*(writer(s, f"w{i}", i) for i, s in enumerate([first, second] * 2)))
    done.set()
    await reading
    stored = [e.id for e in await first.events_since(None, None, 0, limit=10_000)]
    assert seen == stored
    assert len(stored) > 100


async def test_another_instance_sees_the_events(make_store: StoreFactory) -> None:
    """Two store instances on one database: a listener on one gets, in order, the events the
    other commits (PostgreSQL's LISTEN/NOTIFY)."""
    if make_store.backend == "sqlite":
        pytest.skip("the embedded SQLite store is one process: subscribe sees its own writes")
    writer, watcher = await make_store(), await make_store()
    got: list[JobEvent] = []
    watcher.subscribe(got.extend)
    account_id = await _account(writer)
    await writer.submit_job(_job(account_id, "job_a"))
    await writer.claim_jobs("w1", 1, 30)
    await writer.complete_job("job_a", "w1", {"provider": "fal"}, [])
    await _until(lambda: len(got) >= 3)
    assert [(e.job_id, e.type) for e in got] == [
        ("job_a", "job.queued"),
        ("job_a", "job.processing"),
        ("job_a", "job.completed"),
    ]
    assert got == await writer.events_since(account_id, None, 0)
    assert watcher.feed.notified >= 1  # type: ignore[attr-defined]
    assert watcher.feed.carried >= 1  # type: ignore[attr-defined]


async def test_a_listener_gets_every_writers_events_once_in_order(
    make_store: StoreFactory,
) -> None:
    """Two instances writing at once: a listener on a third gets every event of both, once
    each, in id order (from notifications, or read back when one is missing)."""
    if make_store.backend == "sqlite":
        pytest.skip("the embedded SQLite store is one process: subscribe sees its own writes")
    first, second, watcher = await make_store(), await make_store(), await make_store()
    got: list[JobEvent] = []
    watcher.subscribe(got.extend)
    accounts = [await _account(first, f"a{n}", credits=10_000) for n in range(3)]

    async def writer(store: JobStore, name: str) -> None:
        for n in range(30):
            await store.submit_job(_job(accounts[n % 3], f"job_{name}_{n}", price=1))
            for job in await store.claim_jobs(name, 3, 30):
                await store.complete_job(job.id, name, {"provider": "fal"}, [])

    await asyncio.gather(writer(first, "w1"), writer(second, "w2"))
    stored = await first.events_since(None, None, 0, limit=10_000)
    await _until(lambda: len(got) >= len(stored))
    assert [e.id for e in got] == [e.id for e in stored]
    assert got == stored


async def test_local_subscribers_see_only_their_instance(make_store: StoreFactory) -> None:
    """``subscribe_local`` (PostgreSQL) hands a listener only the events its own instance
    wrote, for per-replica counters."""
    if make_store.backend == "sqlite":
        pytest.skip("SQLite's subscribe is already local to its one process")
    first, second = await make_store(), await make_store()
    mine: list[JobEvent] = []
    every: list[JobEvent] = []
    first.subscribe_local(mine.extend)  # type: ignore[attr-defined]
    first.subscribe(every.extend)
    account_id = await _account(first)
    await first.submit_job(_job(account_id, "job_a"))
    await second.submit_job(_job(account_id, "job_b"))
    await _until(lambda: len(every) >= 2)
    assert [e.job_id for e in mine] == ["job_a"]
    assert sorted(e.job_id for e in every) == ["job_a", "job_b"]


async def test_local_subscribers_hear_of_an_event_before_every_subscriber(
    store: JobStore,
) -> None:
    """An instance's own events reach its ``subscribe_local`` listeners before (or, on
    SQLite, with) its ``subscribe`` listeners: the metrics count a job's end locally and
    forget, through ``subscribe``, jobs that ended on another replica; heard the other way
    round, a job ended here was forgotten before its end was counted (no duration). On
    PostgreSQL the commit's own NOTIFY often arrives before the committing task resumes."""
    heard: list[tuple[str, int]] = []
    store.subscribe_local(lambda events: heard.extend(("local", e.id) for e in events))
    store.subscribe(lambda events: heard.extend(("every", e.id) for e in events))
    account_id = await _account(store)
    for n in range(5):
        # keyed: a transaction of its own, as every write but a batch of plain submits (one
        # statement, whose ids are known only once committed: their job.queued events may
        # reach ``subscribe`` first, which no listener minds)
        await store.submit_job(_job(account_id, f"job_{n}", key=f"k{n}"))
    assert len(await store.claim_jobs("w1", 5, 30)) == 5
    for n in range(4):
        assert await store.complete_job(f"job_{n}", "w1", {"provider": "fal"}, [])
    await store.cancel_job(account_id, "job_4")
    await _until(lambda: sum(who == "every" for who, _ in heard) >= 15)
    ids = sorted({event_id for _, event_id in heard})
    assert len(ids) == 15
    for event_id in ids:
        local, every = heard.index(("local", event_id)), heard.index(("every", event_id))
        assert local < every, (event_id, heard)


# --- webhooks ----------------------------------------------------------------------------------


async def test_a_final_event_enqueues_its_delivery(store: JobStore) -> None:
    """The transaction that finishes a job enqueues its webhook (the job's URL, else the
    account's), due at once, with the final event's id."""
    account_id = await _account(store)
    await store.set_webhook_url(account_id, "https://hooks.example/acme")
    await store.submit_job(_job(account_id, "job_a", webhook_url="https://hooks.example/job"))
    await store.submit_job(_job(account_id, "job_b"))
    await store.claim_jobs("w1", 2, 30)
    await store.complete_job("job_a", "w1", {"provider": "fal"}, [])
    await store.fail_job("job_b", "w1", {"code": "boom", "message": "down"}, [])
    [a] = await store.job_deliveries(account_id, "job_a")
    [b] = await store.job_deliveries(account_id, "job_b")
    final_a = (await store.events_since(account_id, "job_a", 0))[-1]
    assert (a.url, a.status, a.event_id, a.event_type) == (
        "https://hooks.example/job",
        "pending",
        final_a.id,
        "job.completed",
    )
    assert (b.url, b.event_type) == ("https://hooks.example/acme", "job.failed")


async def test_delivery_ids_keep_their_shape_and_sort_by_when_the_job_ended(
    store: JobStore,
) -> None:
    """A delivery's id (its ``webhook-id``) is ``msg_`` and 24 base32 characters, led by the
    time: deliveries enqueued later sort later, so the deliveries' index grows at its end."""
    account_id = await _account(store)
    names = [f"job_{n}" for n in range(4)]
    for job_id in names:
        await store.submit_job(_job(account_id, job_id, webhook_url="https://h.example/x"))
    await store.claim_jobs("w1", len(names), 30)
    for job_id in names:
        await asyncio.sleep(0.003)  # a later millisecond each
        await store.complete_job(job_id, "w1", {"provider": "fal"}, [])
    ids = [(await store.job_deliveries(account_id, job_id))[0].id for job_id in names]
    assert all(re.fullmatch(r"msg_[a-z2-7]{24}", i) for i in ids), ids
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


async def test_a_final_event_to_a_disabled_url_enqueues_it_disabled(store: JobStore) -> None:
    """Once a URL answered 410, a job that ends with that URL gets its delivery enqueued
    ``disabled``, never due, with the reason; a job with another URL is unaffected."""
    account_id = await _account(store)
    for job_id, url in (("job_a", "gone"), ("job_b", "gone"), ("job_c", "live")):
        await store.submit_job(_job(account_id, job_id, webhook_url=f"https://h.example/{url}"))
    await store.claim_jobs("w1", 3, 30)
    await store.complete_job("job_a", "w1", {"provider": "fal"}, [])
    [first] = await store.claim_deliveries("d1", 10, 60)
    now = time.time()
    gone = DeliveryAttempt("scheduled", now, now, "disabled", status=410)
    assert await store.record_delivery_attempt(
        first.id, "d1", gone, status="disabled", next_attempt_at=None, disable_url=True
    )
    await store.fail_job("job_b", "w1", {"code": "boom", "message": "down"}, [])
    await store.complete_job("job_c", "w1", {"provider": "fal"}, [])
    [b] = await store.job_deliveries(account_id, "job_b")
    [c] = await store.job_deliveries(account_id, "job_c")
    assert (b.status, b.next_attempt_at) == ("disabled", None)
    assert "410 Gone" in (b.last_error or "")
    assert (c.url, c.status, c.last_error) == ("https://h.example/live", "pending", None)


async def test_a_disabled_url_is_enabled_again_by_name(store: JobStore) -> None:
    """``enable_webhook_url`` clears a URL's 410 disablement for its account only (True once),
    and a job ending with it afterwards gets a pending delivery; the one disabled stays so."""
    account_id = await _account(store)
    other = await store.create_account("other")
    url = "https://h.example/gone"
    for job_id in ("job_a", "job_b"):
        await store.submit_job(_job(account_id, job_id, webhook_url=url))
    await store.claim_jobs("w1", 2, 30)
    await store.complete_job("job_a", "w1", {"provider": "fal"}, [])
    [first] = await store.claim_deliveries("d1", 10, 60)
    now = time.time()
    gone = DeliveryAttempt("scheduled", now, now, "disabled", status=410)
    await store.record_delivery_attempt(
        first.id, "d1", gone, status="disabled", next_attempt_at=None, disable_url=True
    )
    assert await store.enable_webhook_url(other.id, url) is False  # another account's: none
    assert await store.enable_webhook_url(account_id, url) is True
    assert await store.enable_webhook_url(account_id, url) is False
    await store.complete_job("job_b", "w1", {"provider": "fal"}, [])
    [b] = await store.job_deliveries(account_id, "job_b")
    assert (b.status, b.last_error) == ("pending", None)
    [a] = await store.job_deliveries(account_id, "job_a")
    assert a.status == "disabled"


async def test_deliveries_are_leased_logged_and_replayed(make_store: StoreFactory) -> None:
    """A due delivery is leased to one worker; its attempt is logged under its lease; a final
    one can be replayed with the same id; a 410 disables the URL."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first)
    await _completed(first, account_id, *[HOOK] * 2)
    claims = await asyncio.gather(
        first.claim_deliveries("d1", 10, 60), second.claim_deliveries("d2", 10, 60)
    )
    assert sorted(d.job_id for got in claims for d in got) == ["job_0", "job_1"]
    [delivery] = await first.job_deliveries(account_id, "job_0")
    owner = "d1" if any(d.id == delivery.id for d in claims[0]) else "d2"
    assert await first.set_delivery_body(delivery.id, '{"a":1}') == '{"a":1}'
    assert await first.set_delivery_body(delivery.id, '{"b":2}') == '{"a":1}'
    now = time.time()
    ok = DeliveryAttempt("scheduled", now, now, "succeeded", latency_ms=3.0, status=200)
    assert not await first.record_delivery_attempt(
        delivery.id, "intruder", ok, status="succeeded", next_attempt_at=None
    )
    assert await first.record_delivery_attempt(
        delivery.id, owner, ok, status="succeeded", next_attempt_at=None
    )
    [sent] = await first.job_deliveries(account_id, "job_0")
    assert (sent.status, sent.attempts, sent.step, sent.body) == ("succeeded", 1, 1, '{"a":1}')
    assert [(a.outcome, a.status) for a in sent.log] == [
        ("succeeded", 200),
        ("succeeded", 200),
    ]
    replay = await first.replay_delivery(account_id, "job_0")
    assert replay is not None
    assert (replay.state, replay.delivery.id, replay.delivery.replay) == ("queued", sent.id, True)

    [other] = await first.job_deliveries(account_id, "job_1")
    other_owner = "d1" if any(d.id == other.id for d in claims[0]) else "d2"
    gone = DeliveryAttempt("scheduled", now, now, "disabled", status=410)
    assert await first.record_delivery_attempt(
        other.id, other_owner, gone, status="disabled", next_attempt_at=None, disable_url=True
    )
    replay = await first.replay_delivery(account_id, "job_1")
    assert replay is not None
    assert replay.state == "disabled"
    await first.set_webhook_url(account_id, "https://h.example/x")
    endpoint = await first.get_webhook(account_id)
    assert endpoint is not None
    assert (endpoint.url, endpoint.disabled_at) == ("https://h.example/x", None)


async def test_released_deliveries_are_claimed_again_at_once(make_store: StoreFactory) -> None:
    """A stopping worker gives back the deliveries it leased and has not started: another
    worker claims them at once, well inside the lease; a delivery it no longer holds (another
    worker's, or already attempted) is left as it is."""
    first, second = await make_store(), await make_store()
    account_id = await _account(first)
    await _completed(first, account_id, *[HOOK] * 3)
    claimed = {d.job_id: d for d in await first.claim_deliveries("d1", 10, 60)}
    assert sorted(claimed) == ["job_0", "job_1", "job_2"]
    now = time.time()
    ok = DeliveryAttempt("scheduled", now, now, "succeeded", latency_ms=2.0, status=200)
    assert await first.record_delivery_attempt(
        claimed["job_0"].id, "d1", ok, status="succeeded", next_attempt_at=None
    )
    ids = [d.id for d in claimed.values()]

    assert await second.release_deliveries("intruder", ids) == 0
    assert await second.claim_deliveries("d2", 10, 60) == []
    assert await first.release_deliveries("d1", ids) == 2
    assert await first.release_deliveries("d1", []) == 0

    again = await second.claim_deliveries("d2", 10, 60)
    assert sorted(d.job_id for d in again) == ["job_1", "job_2"]
    assert {d.id for d in again} == {claimed["job_1"].id, claimed["job_2"].id}
    assert await first.release_deliveries("d1", ids) == 0  # d2's now
    [sent] = await first.job_deliveries(account_id, "job_0")
    assert (sent.status, sent.attempts) == ("succeeded", 1)


async def test_a_delivery_given_back_unsent_keeps_its_place_in_the_schedule(
    store: JobStore,
) -> None:
    """A delivery its worker gives back unsent (``defer_deliveries``) is pending again at the
    time given with the reason as its last error, its attempts, schedule step and log as they
    were; one held by another owner is left alone."""
    account_id = await _account(store)
    await _completed(store, account_id, HOOK, HOOK)
    first, second = await store.claim_deliveries("d1", 10, 60)
    now = time.time()
    retry = DeliveryAttempt("scheduled", now, now, "retry", status=503, next_attempt_at=now)
    assert await store.record_delivery_attempt(
        first.id, "d1", retry, status="pending", next_attempt_at=now
    )
    [first] = await store.claim_deliveries("d1", 10, 60)
    assert (first.attempts, first.step) == (1, 1)
    due = time.time() + 0.4
    paused = Deferral(first.id, due, "not sent: the receiver asked for a pause (0.4 s left)")
    busy = Deferral(second.id, due + 0.1, "not sent: waited 7.5 s for the receiver")
    assert await store.defer_deliveries("intruder", [paused, busy]) == 0
    assert await store.defer_deliveries("d1", [paused, busy]) == 2
    assert await store.defer_deliveries("d1", [paused]) == 0  # no longer held
    assert await store.defer_deliveries("d1", []) == 0
    assert await store.claim_deliveries("d2", 10, 60) == []  # not due yet
    await asyncio.sleep(max(0.0, due + 0.1 - time.time()) + 0.05)
    again = {d.id: d for d in await store.claim_deliveries("d2", 10, 60)}
    assert sorted(again) == sorted([first.id, second.id])
    assert (again[first.id].attempts, again[first.id].step) == (1, 1)
    assert (again[second.id].attempts, again[second.id].step) == (0, 0)
    assert again[first.id].next_attempt_at == pytest.approx(due)
    assert again[second.id].next_attempt_at == pytest.approx(due + 0.1)
    assert again[first.id].last_error == paused.reason
    assert again[second.id].last_error == busy.reason
    [listed] = await store.job_deliveries(account_id, first.job_id)
    assert [a.status for a in listed.log] == [503]


async def test_a_batch_of_delivery_attempts_is_recorded_in_one_call(store: JobStore) -> None:
    """``record_delivery_attempts`` answers each record in order as ``record_delivery_attempt``
    would: held leases move on (a success final, a retry pending at its time), a lost lease
    answers False with its log kept, and a 410 disables its URL."""
    account_id = await _account(store)
    await _completed(store, account_id, HOOK, HOOK, "https://h.example/gone")
    claimed = {d.job_id: d for d in await store.claim_deliveries("d1", 10, 60)}
    assert sorted(claimed) == ["job_0", "job_1", "job_2"]
    now = time.time()
    ok = DeliveryAttempt("scheduled", now, now, "succeeded", latency_ms=2.0, status=200)
    retry = DeliveryAttempt("scheduled", now, now, "retry", status=503, next_attempt_at=now + 60)
    gone = DeliveryAttempt("scheduled", now, now, "disabled", status=410)
    records = [
        AttemptRecord(claimed["job_0"].id, "d1", ok, "succeeded", None),
        AttemptRecord(claimed["job_1"].id, "intruder", ok, "succeeded", None),
        AttemptRecord(claimed["job_1"].id, "d1", retry, "pending", now + 60),
        AttemptRecord(claimed["job_2"].id, "d1", gone, "disabled", None, disable_url=True),
    ]
    assert await store.record_delivery_attempts(records) == [True, False, True, True]
    assert await store.record_delivery_attempts([]) == []
    [first] = await store.job_deliveries(account_id, "job_0")
    [second] = await store.job_deliveries(account_id, "job_1")
    [third] = await store.job_deliveries(account_id, "job_2")
    assert (first.status, first.attempts, [a.outcome for a in first.log]) == (
        "succeeded",
        1,
        ["succeeded"],
    )
    assert (second.status, second.attempts, second.next_attempt_at) == ("pending", 1, now + 60)
    assert [a.outcome for a in second.log] == ["succeeded", "retry"]
    assert third.status == "disabled"
    replay = await store.replay_delivery(account_id, "job_2")
    assert replay is not None
    assert replay.state == "disabled"


async def test_a_batch_of_distinct_deliveries_is_recorded_as_one_by_one(store: JobStore) -> None:
    """A batch whose records each name a different delivery and none disables its URL (what
    the delivery worker writes under load, and what SQLite writes with a few statements for
    all): held leases move on with their attempt logged and numbered, a lost lease answers
    False with its attempt still logged, an unknown delivery answers False and logs nothing,
    and every answer is in the records' order."""
    account_id = await _account(store)
    jobs = 70  # more than one multi-row statement holds
    await _completed(store, account_id, *[HOOK] * jobs)
    claimed = {d.job_id: d for d in await store.claim_deliveries("d1", jobs, 60)}
    assert len(claimed) == jobs
    now = time.time()
    ok = DeliveryAttempt("scheduled", now, now, "succeeded", latency_ms=2.0, status=200)
    retry = DeliveryAttempt(
        "scheduled", now, now, "retry", status=503, error="HTTP 503", next_attempt_at=now + 60
    )
    records = [
        AttemptRecord(claimed["job_0"].id, "intruder", ok, "succeeded", None),
        AttemptRecord("dlv_unknown", "d1", ok, "succeeded", None),
        AttemptRecord(claimed["job_1"].id, "d1", retry, "pending", now + 60),
        *(
            AttemptRecord(claimed[f"job_{n}"].id, "d1", ok, "succeeded", None)
            for n in range(jobs - 1, 1, -1)
        ),
    ]

    held = await store.record_delivery_attempts(records)

    assert held == [False, False, True, *[True] * (jobs - 2)]
    [lost] = await store.job_deliveries(account_id, "job_0")
    assert (lost.status, lost.attempts) == ("delivering", 0)
    assert [(a.attempt, a.outcome) for a in lost.log] == [(1, "succeeded")]
    [pending] = await store.job_deliveries(account_id, "job_1")
    assert (pending.status, pending.attempts, pending.step) == ("pending", 1, 1)
    assert (pending.next_attempt_at, pending.last_error) == (now + 60, "HTTP 503")
    assert [(a.attempt, a.outcome, a.status) for a in pending.log] == [(1, "retry", 503)]
    for n in range(2, jobs):
        [sent] = await store.job_deliveries(account_id, f"job_{n}")
        assert (sent.status, sent.attempts, sent.step, sent.next_attempt_at) == (
            "succeeded",
            1,
            1,
            None,
        )
        assert [(a.attempt, a.outcome, a.latency_ms) for a in sent.log] == [(1, "succeeded", 2.0)]
    # the delivery whose attempt an intruder logged is still its owner's to move on
    assert await store.record_delivery_attempts(
        [AttemptRecord(claimed["job_0"].id, "d1", ok, "succeeded", None)]
    ) == [True]
    [lost] = await store.job_deliveries(account_id, "job_0")
    assert (lost.status, lost.attempts) == ("succeeded", 1)


async def test_a_batch_of_delivery_bodies_is_fixed_once(store: JobStore) -> None:
    """``set_delivery_bodies`` fixes each delivery's body if it has none, and answers the body
    each now has: a second batch changes nothing."""
    account_id = await _account(store)
    await _completed(store, account_id, *[HOOK] * 2)
    ids = sorted(d.id for d in await store.claim_deliveries("d1", 10, 60))
    assert await store.set_delivery_body(ids[0], '{"n":0}') == '{"n":0}'
    fixed = await store.set_delivery_bodies({ids[0]: '{"x":0}', ids[1]: '{"n":1}'})
    assert fixed == {ids[0]: '{"n":0}', ids[1]: '{"n":1}'}
    again = await store.set_delivery_bodies({ids[1]: '{"x":1}'})
    assert again == {ids[1]: '{"n":1}'}
    assert await store.set_delivery_bodies({}) == {}
    bodies = {
        d.id: d.body for n in range(2) for d in await store.job_deliveries(account_id, f"job_{n}")
    }
    assert bodies == {ids[0]: '{"n":0}', ids[1]: '{"n":1}'}


async def test_webhook_secrets_rotate_with_grace(make_store: StoreFactory) -> None:
    """A new secret is current; the previous one keeps signing for the grace, then stops."""
    clock = FakeClock()
    store = await make_store(clock=clock)
    account_id = await _account(store)
    await store.add_webhook_secret(account_id, "whsec_one", 3600)
    await store.add_webhook_secret(account_id, "whsec_two", 60)
    secrets = await store.webhook_secrets(account_id)
    assert [(s.secret, s.current) for s in secrets] == [("whsec_two", True), ("whsec_one", False)]
    clock.advance(61)
    assert [s.secret for s in await store.webhook_secrets(account_id)] == ["whsec_two"]


# --- helpers -----------------------------------------------------------------------------------


async def _until(condition, timeout_s: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _ids(events: Sequence[JobEvent]) -> list[int]:
    return [e.id for e in events]
