"""Plain submits that wait together share a transaction and a few statements (SQLite:
:meth:`~imagerouter.jobs.sqlite.thread.SQLiteThread.run_many`; PostgreSQL: a pipelined
``executemany``): each one is still answered on its own, and the books still balance."""

from __future__ import annotations

import asyncio
import itertools
import time

from imagerouter.jobs import JobStore
from imagerouter.jobs.errors import AccountNotFound, InsufficientCredits
from imagerouter.jobs.types import Job, NewJob
from tests.polling import eventually
from tests.store.conftest import StoreFactory

REQUEST = {"model": "gpt-image-2", "prompt": "a lighthouse"}


def _job(account_id: str, job_id: str, price: int) -> NewJob:
    return NewJob(job_id, account_id, dict(REQUEST), price, time.time() + 600, None)


async def _account(store: JobStore, name: str, credits: int) -> str:
    account = await store.create_account(name)
    await store.grant_credits(account.id, credits)
    return account.id


async def test_a_burst_of_submits_is_answered_one_by_one(make_store: StoreFactory) -> None:
    """One burst from three accounts (a rich one, one whose wallet holds 3 of its 7 jobs, one
    that does not exist) and a job id used twice: each submit gets its own answer, the
    ledger's balances follow each other, each created job has exactly one event, and a
    subscriber is told the events in id order."""
    store = await make_store()
    rich = await _account(store, "rich", 1000)
    short = await _account(store, "short", 30)
    heard: list[int] = []
    store.subscribe(lambda events: heard.extend(e.id for e in events))
    # the two accounts' jobs interleaved, so batches mix them
    mixed = [
        job
        for n in range(12)
        for job in (_job(rich, f"job_r{n}", 7), *([_job(short, f"job_s{n}", 10)] if n < 7 else []))
    ]
    jobs = [*mixed, _job("acct_nobody", "job_x", 1)]
    results = await asyncio.gather(*(store.submit_job(j) for j in jobs), return_exceptions=True)
    # then a burst with an id used before: refused alone, the others stand
    again = [_job(rich, "job_r0", 7), _job(rich, "job_r12", 7), _job(rich, "job_r13", 7)]
    results += await asyncio.gather(*(store.submit_job(j) for j in again), return_exceptions=True)
    assert all(
        isinstance(r, Job) for j, r in zip(mixed, results, strict=False) if j.account_id == rich
    )
    short_results = [r for j, r in zip(mixed, results, strict=False) if j.account_id == short]
    assert sum(isinstance(r, Job) for r in short_results) == 3
    assert sum(isinstance(r, InsufficientCredits) for r in short_results) == 4
    assert isinstance(results[19], AccountNotFound)
    assert isinstance(results[20], Exception)  # the duplicate id
    assert all(isinstance(r, Job) for r in results[21:])

    assert (await store.get_account(rich)).balance == 1000 - 14 * 7
    assert (await store.get_account(short)).balance == 0
    for account_id in (rich, short):
        entries = list(reversed(await store.ledger(account_id)))  # oldest first
        for before, after in itertools.pairwise(entries):
            assert after.balance_after == before.balance_after + after.amount
    events = await store.events_since(None, None, 0)
    created = {r.id for r in results if isinstance(r, Job)}
    await eventually(lambda: len(heard) == len(created), what="every event told")
    assert heard == sorted(heard)  # told in id order, whatever the batches
    assert sorted(e.job_id for e in events) == sorted(created)
    assert [e.id for e in events] == sorted({e.id for e in events})
    for event in events:
        assert event.type == "job.queued"
        [again] = await store.events_since(event.account_id, event.job_id, 0)
        assert again == event
    audit = await store.audit()  # type: ignore[attr-defined]
    assert audit["balances"] == audit["ledger_sum"]
    assert audit["jobs"] == audit["debits"]


async def test_a_burst_larger_than_one_insert_keeps_each_answer_on_its_own_rows(
    make_store: StoreFactory,
) -> None:
    """150 submits at once (more rows than one multi-row INSERT takes): the event each submit
    was told is the stored event of its own job, each job is debited once, and the ledger's
    balances run down entry by entry."""
    store = await make_store()
    account_id = await _account(store, "burst", 10_000)
    heard: dict[int, str] = {}
    store.subscribe(lambda events: heard.update((e.id, e.job_id) for e in events))
    jobs = [_job(account_id, f"job_b{n:03}", 3) for n in range(150)]
    results = await asyncio.gather(*(store.submit_job(j) for j in jobs))
    assert [r.id for r in results] == [j.id for j in jobs]
    await eventually(lambda: len(heard) == 150, what="every event told")
    stored = {e.id: e.job_id for e in await store.events_since(account_id, None, 0)}
    assert heard == stored
    entries = list(reversed(await store.ledger(account_id, limit=1000)))
    debits = [e for e in entries if e.amount < 0]
    assert sorted(e.job_id for e in debits) == [j.id for j in jobs]  # batches commit in any order
    assert [e.balance_after for e in debits] == [10_000 - 3 * (n + 1) for n in range(150)]
    assert (await store.get_account(account_id)).balance == 10_000 - 450


async def test_sqlite_tells_a_burst_once_and_before_its_submits_return(tmp_path) -> None:
    """SQLite: the events of submits that shared a transaction reach a listener in one call
    (not one call a submit), and each submit's event has been told when it returns."""
    from imagerouter.jobs.sqlite import SQLiteJobStore

    async with SQLiteJobStore(tmp_path / "jobs.db") as store:
        account_id = await _account(store, "burst", 10_000)
        calls: list[list[str]] = []
        store.subscribe(lambda events: calls.append([e.job_id for e in events]))

        async def submit(job: NewJob) -> bool:
            await store.submit_job(job)
            return any(job.id in call for call in calls)  # told before the submit returned

        jobs = [_job(account_id, f"job_c{n:03}", 3) for n in range(40)]
        told_first = await asyncio.gather(*(submit(j) for j in jobs))
        assert all(told_first)
        assert sorted(job_id for call in calls for job_id in call) == [j.id for j in jobs]
        assert len(calls) < len(jobs) / 4  # a batch is one call
