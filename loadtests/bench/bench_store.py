"""Benchmark of what the job store costs a job over its whole life, with no HTTP around it.

Run: ``python -m loadtests.bench.bench_store`` (about ten seconds; prints the figures and
writes ``loadtests/bench/results/store.json``).

A job's life in the store, as the server lives it under load, in batches of ``--batch`` jobs:
the submits (each its own call, gathered as concurrent requests are: they share commits), one
claim of the batch, each job completed with one provider attempt and its webhook delivery
enqueued (the account has a webhook URL), one claim of the deliveries, their bodies fixed,
and their attempts recorded; then every job read back by id, ``--batch`` reads at a time (clients
polling, a claim's webhook bodies). On SQLite, the same life is also run the way the server
lives it now, with the delivery handoff
(:class:`~imagerouter.jobs.types.DeliveryHandoff`): each completion writes its webhook
leased to the sender with its body fixed, and the attempts are recorded without a claim (runs
alternate between the lives). And the handoff's life on an account with no webhook URL
(no delivery enqueued, none recorded): the difference is what a job's webhook costs the store.
The figure is this process's CPU (user and system, event loop
and SQLite's threads together) per job, and the writer thread's own share, median of
``--repeats`` runs, each on a fresh database in the default temporary directory (the data
disk, as ``bench_end_to_end``'s server has it). It prices changes to the store precisely: the
end-to-end benchmark's run-to-run noise (±0.1 ms a job) is larger than most of them.

``--store postgresql://…`` runs the same life on PostgreSQL (then only the client's CPU is
counted: the server's processes are not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from imagerouter.jobs import JobStore, open_store
from imagerouter.jobs.ids import new_timed_id
from imagerouter.jobs.types import (
    AttemptRecord,
    Delivery,
    DeliveryAttempt,
    DeliveryHandoff,
    HandedDelivery,
    Job,
    NewJob,
)
from loadtests.bench.common import cpu_split, write_results

REQUEST = {
    "model": "gpt-image-2",
    "prompt": "a lighthouse at dusk, oil on canvas",
    "n": 1,
    "size": "1024x1024",
    "quality": "standard",
    "output_format": "png",
}
#: A completed job's result as the worker stores it (one image re-hosted, a signed URL).
RESULT = {
    "images": [
        {
            "url": "/v1/media/2026-12-05/05/job_2345abcdefghijklmnopqrstuvwxyz-0.png"
            "?expires=1765000000&sig=" + "0" * 64,
            "content_type": "image/png",
            "width": 1024,
            "height": 1024,
        }
    ],
    "provider": "fal",
    "model": "gpt-image-2",
    "provider_request_id": "4a1f6c2e-9a55-4c2b-8a8f-3b1d2c0e7f11",
}
ATTEMPT = {
    "provider": "fal",
    "outcome": "success",
    "started_at": 1_765_000_000.0,
    "latency_ms": 12.5,
    "error_class": None,
    "error": None,
    "status": 200,
    "retry_after": None,
    "reason": None,
}
WORKER, SENDER = "wrk_bench", "dlv_bench"
PRICE = 26


def _thread_cpu_s(native_id: int | None) -> float:
    """CPU seconds of this process's thread ``native_id`` (0 when unknown)."""
    return 0.0 if native_id is None else sum(cpu_split(os.getpid(), native_id))


def _handoff(handed: list[HandedDelivery]) -> DeliveryHandoff:
    """A sender's handoff that takes every completion's webhook into ``handed``."""

    def body(job: Job, delivery: Delivery) -> str:
        return f'{{"job":"{job.id}"}}'

    def take(deliveries: Sequence[HandedDelivery], queued: bool) -> None:
        handed.extend(deliveries)

    return DeliveryHandoff(SENDER, 60.0, lambda: 1 << 30, body, take)


async def _life(
    store: JobStore, account_id: str, batch: int, handed: list[HandedDelivery] | None
) -> tuple[int, int]:
    """One batch's life (with the handoff's deliveries in ``handed``, unless None); (jobs
    completed, deliveries recorded)."""
    now = time.time()
    jobs = [
        NewJob(new_timed_id("job", now), account_id, REQUEST, PRICE, now + 600)
        for _ in range(batch)
    ]
    await asyncio.gather(*(store.submit_job(job) for job in jobs))
    claimed = await store.claim_jobs(WORKER, batch, 30)
    done = await asyncio.gather(
        *(store.complete_job(job.id, WORKER, RESULT, [ATTEMPT]) for job in claimed)
    )
    if handed is None:
        deliveries = await store.claim_deliveries(SENDER, batch, 60)
        await store.set_delivery_bodies({d.id: f'{{"job":"{d.job_id}"}}' for d in deliveries})
    else:
        deliveries = [item.delivery for item in handed]
        handed.clear()
    if not deliveries:  # an account without a webhook URL
        return sum(done), 0
    now = time.time()
    sent = DeliveryAttempt("scheduled", now, now, "succeeded", latency_ms=1.0, status=200)
    held = await store.record_delivery_attempts(
        [AttemptRecord(d.id, SENDER, sent, "succeeded", None) for d in deliveries]
    )
    return sum(done), sum(held)


async def one_run(
    store_url: str | None, rounds: int, batch: int, handoff: bool = False, webhook: bool = True
) -> dict[str, Any]:
    """A fresh store, ``rounds`` batches (with the delivery handoff when ``handoff``; on an
    account with a webhook URL when ``webhook``); CPU per job and the checks."""
    handed: list[HandedDelivery] | None = [] if handoff else None
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        async with open_store(store_url or tmp) as store:
            if handed is not None:
                store.hand_deliveries(_handoff(handed))  # type: ignore[attr-defined]
            account = await store.create_account(f"bench-{os.getpid()}-{time.time_ns()}")
            await store.grant_credits(account.id, 10**12)
            if webhook:
                await store.set_webhook_url(account.id, "http://127.0.0.1:9/hooks")
                await store.add_webhook_secret(account.id, "whsec_" + "b" * 32, 0)
            writer = getattr(getattr(store, "thread", None), "native_id", None)  # SQLite only
            await _life(store, account.id, batch, handed)  # warm-up: statements, pages
            before = resource.getrusage(resource.RUSAGE_SELF)
            writer_before, wall = _thread_cpu_s(writer), time.perf_counter()
            completed = delivered = 0
            for _ in range(rounds):
                jobs, deliveries = await _life(store, account.id, batch, handed)
                completed, delivered = completed + jobs, delivered + deliveries
            after = resource.getrusage(resource.RUSAGE_SELF)
            writer_s, wall = _thread_cpu_s(writer) - writer_before, time.perf_counter() - wall
            balance = (await store.get_account(account.id)).balance
            read_us, read = await _reads(store, account.id, batch)
    expected = rounds * batch
    per = 1e6 / max(1, completed)
    return {
        "user_us": (after.ru_utime - before.ru_utime) * per,
        "system_us": (after.ru_stime - before.ru_stime) * per,
        "writer_thread_us": writer_s * per if writer is not None else None,
        "wall_us": wall * per,
        "read_us": read_us,
        "exact": completed == expected
        and delivered == (expected if webhook else 0)
        and read == expected + batch
        and balance == 10**12 - (expected + batch) * PRICE,
    }


async def _reads(store: JobStore, account_id: str, batch: int) -> tuple[float, int]:
    """Every job of the account read back by id, ``batch`` reads gathered at a time (clients
    polling, a claim's webhook bodies); CPU µs a read, and the jobs found."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_jobs(account_id, limit=500, cursor=cursor)
        ids += [job.id for job in page.jobs]
        cursor = page.next_cursor
        if cursor is None:
            break
    before = resource.getrusage(resource.RUSAGE_SELF)
    found = 0
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        jobs = await asyncio.gather(
            *(store.get_job(account_id, job_id, with_attempts=False) for job_id in chunk)
        )
        found += sum(job is not None for job in jobs)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu * 1e6 / max(1, len(ids)), found


def _medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each figure's median over ``runs``."""
    medians: dict[str, float | None] = {}
    for key in ("user_us", "system_us", "writer_thread_us", "wall_us", "read_us"):
        values = [run[key] for run in runs if run[key] is not None]
        medians[key] = round(statistics.median(values), 1) if values else None
    return medians


def main(argv: list[str] | None = None) -> None:
    """Run the repeats and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="Batches per run.")
    parser.add_argument("--batch", type=int, default=64, help="Jobs per batch.")
    parser.add_argument("--repeats", type=int, default=5, help="Runs (the median is kept).")
    parser.add_argument("--store", default=None, help="A store URL (default: SQLite).")
    args = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    handed_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    for _ in range(args.repeats):  # the lives alternate, so that all see the same host
        runs.append(asyncio.run(one_run(args.store, args.rounds, args.batch)))
        if args.store is None:
            handed_runs.append(asyncio.run(one_run(None, args.rounds, args.batch, handoff=True)))
            bare_runs.append(
                asyncio.run(one_run(None, args.rounds, args.batch, handoff=True, webhook=False))
            )
    medians = _medians(runs)
    total = round((medians["user_us"] or 0) + (medians["system_us"] or 0), 1)
    result = {
        "benchmark": "store",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "store": "postgresql" if args.store else "sqlite",
        "jobs_per_run": args.rounds * args.batch,
        "batch": args.batch,
        "cpu_us_per_job": total,
        **medians,
        "every_run_exact": all(run["exact"] for run in runs + handed_runs + bare_runs),
        "runs": runs,
    }
    writer = (
        ""
        if medians["writer_thread_us"] is None
        else (f", of which the writer thread {medians['writer_thread_us']} µs")
    )
    print(
        f"store ({result['store']}): {total} µs of CPU a job's life "
        f"({medians['user_us']} user + {medians['system_us']} system{writer}; "
        f"median of {args.repeats} runs of {args.rounds * args.batch} jobs); a job read back "
        f"by id, {args.batch} reads at a time: {medians['read_us']} µs; "
        f"every job and webhook exact: {result['every_run_exact']}"
    )
    if handed_runs:
        handed = _medians(handed_runs)
        handed_total = round((handed["user_us"] or 0) + (handed["system_us"] or 0), 1)
        result["handoff"] = {"cpu_us_per_job": handed_total, **handed, "runs": handed_runs}
        print(
            f"store with the delivery handoff: {handed_total} µs of CPU a job's life "
            f"({handed['user_us']} user + {handed['system_us']} system, of which the writer "
            f"thread {handed['writer_thread_us']} µs): {handed_total / total:.2f} of the "
            f"claim's"
        )
        bare = _medians(bare_runs)
        bare_total = round((bare["user_us"] or 0) + (bare["system_us"] or 0), 1)
        webhook_us = round(handed_total - bare_total, 1)
        result["no_webhook"] = {"cpu_us_per_job": bare_total, **bare, "runs": bare_runs}
        result["webhook_cpu_us_per_job"] = webhook_us
        print(
            f"store with the handoff, no webhook URL: {bare_total} µs of CPU a job's life "
            f"(the writer thread {bare['writer_thread_us']} µs): a job's webhook costs the "
            f"store {webhook_us} µs"
        )
    print(f"wrote {write_results('store', result)}")


if __name__ == "__main__":
    main()
