"""Job reads that wait together (the webhook bodies of a claim, clients polling their jobs)
are each answered on their own; on SQLite they share one statement
(:meth:`~imagerouter.jobs.sqlite.queue.SQLiteJobQueue._get_many`)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from imagerouter.jobs import JobStore
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import NewJob
from tests.store.conftest import ATTEMPT, StoreFactory

REQUEST = {"model": "gpt-image-2", "prompt": "a lighthouse"}


async def _account(store: JobStore, name: str) -> str:
    account = await store.create_account(name)
    await store.grant_credits(account.id, 1000)
    return account.id


async def _finished_jobs(store: JobStore, account_id: str, ids: list[str]) -> None:
    for job_id in ids:
        await store.submit_job(NewJob(job_id, account_id, dict(REQUEST), 10, time.time() + 600))
    await store.claim_jobs("w1", len(ids), 30)
    for job_id in ids:
        await store.complete_job(job_id, "w1", {"provider": "fal", "id": job_id}, [ATTEMPT])


async def test_reads_waiting_together_are_each_answered_on_their_own(
    make_store: StoreFactory,
) -> None:
    """One burst of reads: another account's job and a missing one read as None, a job read
    twice comes back as two objects, attempts only where asked for."""
    store = await make_store()
    acme, other = await _account(store, "acme"), await _account(store, "other")
    await _finished_jobs(store, acme, ["job_a", "job_b"])
    await _finished_jobs(store, other, ["job_x"])
    asked = [
        (acme, "job_a", True),
        (acme, "job_b", False),
        (acme, "job_x", True),  # not acme's
        (acme, "job_missing", False),
        (other, "job_x", False),
        (acme, "job_a", False),
    ]
    got = await asyncio.gather(
        *(store.get_job(account, job_id, with_attempts=want) for account, job_id, want in asked)
    )
    a_full, b, not_mine, missing, x, a_bare = got
    assert (not_mine, missing) == (None, None)
    assert a_full is not None
    assert b is not None
    assert x is not None
    assert a_bare is not None
    assert [job.id for job in (a_full, b, x, a_bare)] == ["job_a", "job_b", "job_x", "job_a"]
    assert (a_full.status, a_full.result) == ("completed", {"provider": "fal", "id": "job_a"})
    assert [(a["provider"], a["outcome"]) for a in a_full.attempts] == [("fal", "success")]
    assert (b.attempts, a_bare.attempts) == ([], [])
    assert a_full is not a_bare
    assert (x.account_id, x.request) == (other, REQUEST)


async def test_sqlite_answers_reads_waiting_together_with_one_select(tmp_path: Path) -> None:
    """Twenty reads in one turn of the loop are one SELECT of the jobs and one of their
    attempts, not forty statements."""
    async with SQLiteJobStore(tmp_path / "r.db") as store:
        account = await _account(store, "acme")
        ids = [f"job_{n:02d}" for n in range(20)]
        await _finished_jobs(store, account, ids)
        statements: list[str] = []

        def trace(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(statements.append)

        await store.thread.run(trace)
        jobs = await asyncio.gather(*(store.get_job(account, job_id) for job_id in ids))
        await store.thread.run(lambda conn: conn.set_trace_callback(None))
        assert [job.id for job in jobs if job is not None] == ids
        assert all(len(job.attempts) == 1 for job in jobs if job is not None)
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len([s for s in selects if "FROM jobs" in s]) == 1
        assert len([s for s in selects if "FROM attempts" in s]) == 1
