"""Final states written while others wait (the worker pool finishing jobs) are each written on
their own; on SQLite, completions waiting together share a few statements
(:meth:`~imagerouter.jobs.sqlite.leases.SQLiteLeases._finish_many`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from imagerouter.jobs import JobStore
from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import NewJob
from tests.store.conftest import ATTEMPT, StoreFactory

HOOK = "https://hooks.example.com/acme"
OWN_HOOK = "https://hooks.example.com/job-a"
FAILED_ATTEMPT = {**ATTEMPT, "outcome": "error", "error_class": "ProviderUnavailable"}
BOOM = {"code": "all_providers_failed", "message": "every provider failed"}


async def _account(store: JobStore, name: str, webhook: str | None = None) -> str:
    account = await store.create_account(name)
    await store.grant_credits(account.id, 1000)
    if webhook is not None:
        await store.set_webhook_url(account.id, webhook)
    return account.id


async def _held(store: JobStore, jobs: list[tuple[str, str, dict]]) -> None:
    """Submit ``(account, job id, request)`` and lease them all to ``w1``."""
    for account_id, job_id, request in jobs:
        await store.submit_job(NewJob(job_id, account_id, request, 10, time.time() + 600))
    assert len(await store.claim_jobs("w1", len(jobs), 30)) == len(jobs)


def _result(job_id: str) -> dict:
    return {"provider": "fal", "images": [{"url": f"https://cdn.example/{job_id}.png"}]}


async def test_finishes_waiting_together_are_each_written_on_their_own(
    make_store: StoreFactory,
) -> None:
    """One burst of finishes: one by a worker that does not hold the lease is refused, a job's
    second finish is refused and its first counts, a failure is refunded once, and each
    written job has its own result, attempts, final event and webhook delivery (to the job's
    own URL, the account's, or none)."""
    store = await make_store()
    acme = await _account(store, "acme", HOOK)
    other = await _account(store, "other")
    prompt = {"model": "gpt-image-2", "prompt": "a lighthouse"}
    await _held(
        store,
        [
            (acme, "job_a", {**prompt, "webhook_url": OWN_HOOK}),
            (acme, "job_b", prompt),
            (other, "job_c", prompt),
            (acme, "job_d", prompt),
        ],
    )
    written = await asyncio.gather(
        store.complete_job("job_a", "w1", _result("job_a"), [ATTEMPT]),
        store.complete_job("job_b", "w2", _result("job_b"), [ATTEMPT]),  # not w2's lease
        store.fail_job("job_c", "w1", BOOM, [FAILED_ATTEMPT, FAILED_ATTEMPT]),
        store.complete_job("job_d", "w1", _result("job_d"), [FAILED_ATTEMPT, ATTEMPT]),
        store.complete_job("job_a", "w1", {"provider": "late"}, [ATTEMPT]),  # finished already
        store.complete_job("job_b", "w1", _result("job_b"), [ATTEMPT]),
    )
    assert written == [True, False, True, True, False, True]

    jobs = {
        job_id: await store.get_job(account_id, job_id)
        for account_id, job_id in [
            (acme, "job_a"),
            (acme, "job_b"),
            (other, "job_c"),
            (acme, "job_d"),
        ]
    }
    assert {job_id: job.status for job_id, job in jobs.items() if job} == {
        "job_a": "completed",
        "job_b": "completed",
        "job_c": "failed",
        "job_d": "completed",
    }
    assert jobs["job_a"]
    assert jobs["job_a"].result == _result("job_a")
    assert jobs["job_c"]
    assert jobs["job_c"].error == BOOM
    assert jobs["job_d"]
    assert jobs["job_d"].result == _result("job_d")
    outcomes = {job_id: [a["outcome"] for a in job.attempts] for job_id, job in jobs.items() if job}
    assert outcomes == {
        "job_a": ["success"],
        "job_b": ["success"],
        "job_c": ["error", "error"],
        "job_d": ["error", "success"],
    }

    finals = {
        e.job_id: e
        for e in await store.events_since(None, None, 0)
        if e.type in ("job.completed", "job.failed")
    }
    assert {job_id: e.type for job_id, e in finals.items()} == {
        "job_a": "job.completed",
        "job_b": "job.completed",
        "job_c": "job.failed",
        "job_d": "job.completed",
    }
    assert finals["job_a"].data == {"status": "completed", "provider": "fal"}
    assert finals["job_c"].data["refunded"] == 10
    assert [(e.kind, e.amount) for e in await store.ledger(other)] == [
        ("refund", 10),
        ("debit", -10),
        ("grant", 1000),
    ]
    assert (await store.get_account(acme)).balance == 1000 - 30

    urls = {
        job_id: [d.url for d in await store.job_deliveries(account_id, job_id)]
        for account_id, job_id in [
            (acme, "job_a"),
            (acme, "job_b"),
            (other, "job_c"),
            (acme, "job_d"),
        ]
    }
    assert urls == {"job_a": [OWN_HOOK], "job_b": [HOOK], "job_c": [], "job_d": [HOOK]}
    for account_id, job_id in [(acme, "job_a"), (acme, "job_b"), (acme, "job_d")]:
        (delivery,) = await store.job_deliveries(account_id, job_id)
        assert (delivery.event_id, delivery.event_type) == (
            finals[job_id].id,
            "job.completed",
        )


async def test_sqlite_writes_completions_waiting_together_with_a_few_statements(
    tmp_path: Path,
) -> None:
    """Sixteen completions in one turn of the loop are one UPDATE of the jobs' states and one
    INSERT each of their attempts, events and deliveries; a failure among them is written
    alone, in its place, so that the final events' ids follow the order the finishes were
    asked in."""
    async with SQLiteJobStore(tmp_path / "f.db") as store:
        account = await _account(store, "acme", HOOK)
        ids = [f"job_{n:02d}" for n in range(33)]
        await _held(store, [(account, job_id, {"model": "m", "prompt": "p"}) for job_id in ids])
        failing = "job_16"
        statements: list[str] = []
        await store.thread.run(lambda conn: conn.set_trace_callback(statements.append))
        written = await asyncio.gather(
            *(
                store.fail_job(job_id, "w1", BOOM, [FAILED_ATTEMPT])
                if job_id == failing
                else store.complete_job(job_id, "w1", _result(job_id), [ATTEMPT])
                for job_id in ids
            )
        )
        await store.thread.run(lambda conn: conn.set_trace_callback(None))
        assert all(written)

        def count(prefix: str) -> int:
            return sum(1 for s in statements if s.lstrip().startswith(prefix))

        # the sixteen before the failure, the failure alone, the sixteen after it
        assert count("UPDATE jobs SET status = 'completed'") == 2
        assert count("UPDATE jobs SET status = 'failed'") == 1
        assert count("INSERT INTO events") == 3
        assert count("INSERT INTO attempts") == 3
        assert count("INSERT OR IGNORE INTO deliveries") == 3

        events = await store.events_since(None, None, 0)
        finals = [e for e in events if e.type in ("job.completed", "job.failed")]
        assert [e.job_id for e in finals] == ids
        assert [e.type for e in finals].count("job.failed") == 1
        delivered = [len(await store.job_deliveries(account, job_id)) for job_id in ids]
        assert delivered == [1] * len(ids)
        audit = await store.audit()
        assert audit["by_status"] == {"completed": 32, "failed": 1}


async def test_sqlite_completions_refused_alone_when_their_batch_fails(tmp_path: Path) -> None:
    """A completion that cannot be written (an attempt whose latency is no number) fails on
    its own, with nothing of it written; the others waiting with it are written."""
    async with SQLiteJobStore(tmp_path / "g.db") as store:
        account = await _account(store, "acme")
        ids = ["job_a", "job_b", "job_c"]
        await _held(store, [(account, job_id, {"model": "m", "prompt": "p"}) for job_id in ids])
        outcomes = await asyncio.gather(
            store.complete_job("job_a", "w1", _result("job_a"), [ATTEMPT]),
            store.complete_job("job_b", "w1", _result("job_b"), [{**ATTEMPT, "latency_ms": "x"}]),
            store.complete_job("job_c", "w1", _result("job_c"), [ATTEMPT]),
            return_exceptions=True,
        )
        assert outcomes[0] is True
        assert outcomes[2] is True
        assert isinstance(outcomes[1], ValueError)
        job_b = await store.get_job(account, "job_b")
        assert job_b is not None
        assert job_b.status == "processing"
        assert job_b.attempts == []


async def test_sqlite_binds_one_result_a_statement(tmp_path: Path) -> None:
    """SQLite keeps a cached statement's last bound values, and a result can hold megabytes (an
    inline image): completions written together bind each result in a statement of its own,
    so the store never keeps more than one result a statement after the batch."""
    async with SQLiteJobStore(tmp_path / "h.db") as store:
        account = await _account(store, "acme")
        ids = [f"job_{n:02d}" for n in range(12)]
        await _held(store, [(account, job_id, {"model": "m", "prompt": "p"}) for job_id in ids])
        statements: list[str] = []
        await store.thread.run(lambda conn: conn.set_trace_callback(statements.append))
        results = {job_id: _result(job_id) | {"inline": f"image-of-{job_id}"} for job_id in ids}
        await asyncio.gather(
            *(store.complete_job(job_id, "w1", results[job_id], [ATTEMPT]) for job_id in ids)
        )
        await store.thread.run(lambda conn: conn.set_trace_callback(None))
        assert statements
        assert max(s.count('"inline":"image-of-') for s in statements) == 1
        for job_id in ids:
            job = await store.get_job(account, job_id)
            assert job is not None
            assert job.result == results[job_id]
