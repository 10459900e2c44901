"""A delivery worker that stops gives back the deliveries leased to it that have not started:
another worker sends them at its next claim, not once their leases run out."""

from __future__ import annotations

import asyncio
import time

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import Delivery, Job, NewJob
from imagerouter.webhooks import DeliveryConfig, DeliveryWorker, UrlPolicy, WebhookSender
from imagerouter.webhooks.payload import dumps_body, webhook_payload
from imagerouter.webhooks.worker import JobBodyBuilder
from tests.delivery.conftest import Receiver

JOBS = 3
#: Far longer than the test waits: a delivery still leased to the stopped worker is not sent.
LEASE_S = 120.0


RESULT = {"provider": "fal", "images": []}


async def _held_jobs(store: SQLiteJobStore, url: str, count: int) -> str:
    """An account whose webhook is ``url``, with ``count`` jobs leased to ``w1``."""
    account = await store.create_account("acme")
    await store.grant_credits(account.id, 1000)
    await store.set_webhook_url(account.id, url)
    await store.add_webhook_secret(account.id, "whsec_" + "k" * 32, 0)
    request = {"model": "gpt-image-2", "prompt": "a lighthouse"}
    for n in range(count):
        await store.submit_job(NewJob(f"job_{n}", account.id, request, 10, time.time() + 600))
    await store.claim_jobs("w1", count, 30)
    return account.id


async def _completed_jobs(store: SQLiteJobStore, url: str) -> str:
    """An account whose webhook is ``url``, with ``JOBS`` completed jobs (their deliveries
    pending: no worker was running to take them)."""
    account_id = await _held_jobs(store, url, JOBS)
    for n in range(JOBS):
        await store.complete_job(f"job_{n}", "w1", RESULT, [])
    return account_id


def _worker(
    store: SQLiteJobStore,
    sender: WebhookSender,
    job_body: JobBodyBuilder | None = None,
    poll_interval_s: float = 0.05,
) -> DeliveryWorker:
    async def build(delivery: Delivery) -> str:
        job = await store.get_job(delivery.account_id, delivery.job_id, with_attempts=False)
        assert job is not None
        return _body(job, delivery)

    config = DeliveryConfig(lease_s=LEASE_S, poll_interval_s=poll_interval_s, shutdown_grace_s=1.0)
    return DeliveryWorker(store, sender, build, config, job_body=job_body)


def _body(job: Job, delivery: Delivery) -> str:
    return dumps_body(webhook_payload(job, delivery, job.result))


def _sender() -> WebhookSender:
    return WebhookSender(UrlPolicy.from_allow(["127.0.0.1/32"]), timeout_s=2.0)


async def test_deliveries_claimed_as_a_worker_stops_go_to_the_next_worker_at_once(
    sqlite_store: SQLiteJobStore, receiver: Receiver
) -> None:
    """The worker's first claim is still running when it is told to stop (the store's thread
    is busy): what it claimed is not sent by it, and is given back with the bodies the claim
    fixed; a second worker then sends each webhook once, those very bytes, within seconds,
    although the first worker's leases would hold for minutes."""
    store = sqlite_store
    account_id = await _completed_jobs(store, receiver.url)
    async with _sender() as sender:
        busy = asyncio.get_running_loop().create_task(
            store.thread.run(lambda conn: time.sleep(0.3))
        )
        first = _worker(store, sender)
        await first.start()
        await asyncio.sleep(0.05)  # its claim waits behind the busy thread
        await first.aclose()
        await busy
        assert receiver.hits == []
        waiting = [(await store.job_deliveries(account_id, f"job_{n}"))[0] for n in range(JOBS)]
        assert {(d.status, d.attempts) for d in waiting} == {("pending", 0)}
        assert all(d.body is not None for d in waiting)  # fixed by the claim, kept

        second = _worker(store, sender)
        async with second:
            hits = await receiver.wait_hits(JOBS, timeout_s=10.0)
    assert len({hit.headers["webhook-id"] for hit in hits}) == JOBS
    assert {hit.headers["webhook-id"] for hit in hits} == {d.id for d in waiting}
    sent = {hit.headers["webhook-id"]: hit.body for hit in hits}
    assert all(sent[d.id] == (d.body or "").encode() for d in waiting)


async def test_a_delivery_handed_over_as_the_worker_stops_goes_to_the_next_worker_at_once(
    sqlite_store: SQLiteJobStore, receiver: Receiver
) -> None:
    """A completion's transaction reads the worker's room, then the worker is told to stop
    while the transaction still builds the webhook's body: the delivery it writes leased to
    the worker reaches the worker after its stop began, and is given back with the rest, so
    a second worker sends it at once rather than after the lease."""
    store = sqlite_store
    account_id = await _held_jobs(store, receiver.url, 1)
    loop = asyncio.get_running_loop()
    building = asyncio.Event()

    def slow_body(job: Job, delivery: Delivery) -> str:  # on the store's thread
        loop.call_soon_threadsafe(building.set)
        time.sleep(0.3)
        return _body(job, delivery)

    async with _sender() as sender:
        # polling once a minute: once its first claim is over (the store's thread runs in
        # order: the ping answers after it), no claim of its own is in flight when it stops
        first = _worker(store, sender, job_body=slow_body, poll_interval_s=60.0)
        await first.start()
        await asyncio.sleep(0)
        await store.ping()
        completing = loop.create_task(store.complete_job("job_0", "w1", RESULT, []))
        await building.wait()
        await first.aclose()
        assert await completing
        [given_back] = await store.job_deliveries(account_id, "job_0")
        assert (given_back.status, given_back.attempts) == ("pending", 0)
        assert given_back.body is not None  # fixed in the completion, kept
        assert receiver.hits == []

        second = _worker(store, sender)
        async with second:
            [hit] = await receiver.wait_hits(1, timeout_s=10.0)
    assert hit.headers["webhook-id"] == given_back.id
    assert hit.body == given_back.body.encode()
