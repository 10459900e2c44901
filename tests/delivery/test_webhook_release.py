"""A delivery worker that stops gives back the deliveries leased to it that have not started:
another worker sends them at its next claim, not once their leases run out."""

from __future__ import annotations

import asyncio
import time

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import Delivery, NewJob
from imagerouter.webhooks import DeliveryConfig, DeliveryWorker, UrlPolicy, WebhookSender
from imagerouter.webhooks.payload import dumps_body, webhook_payload
from tests.delivery.conftest import Receiver

JOBS = 3
#: Far longer than the test waits: a delivery still leased to the stopped worker is not sent.
LEASE_S = 120.0


async def _completed_jobs(store: SQLiteJobStore, url: str) -> str:
    """An account whose webhook is ``url``, with ``JOBS`` completed jobs (their deliveries
    pending: no worker was running to take them)."""
    account = await store.create_account("acme")
    await store.grant_credits(account.id, 1000)
    await store.set_webhook_url(account.id, url)
    await store.add_webhook_secret(account.id, "whsec_" + "k" * 32, 0)
    request = {"model": "gpt-image-2", "prompt": "a lighthouse"}
    for n in range(JOBS):
        await store.submit_job(NewJob(f"job_{n}", account.id, request, 10, time.time() + 600))
    await store.claim_jobs("w1", JOBS, 30)
    for n in range(JOBS):
        await store.complete_job(f"job_{n}", "w1", {"provider": "fal", "images": []}, [])
    return account.id


def _worker(store: SQLiteJobStore, sender: WebhookSender) -> DeliveryWorker:
    async def build(delivery: Delivery) -> str:
        job = await store.get_job(delivery.account_id, delivery.job_id, with_attempts=False)
        assert job is not None
        return dumps_body(webhook_payload(job, delivery, job.result))

    config = DeliveryConfig(lease_s=LEASE_S, poll_interval_s=0.05, shutdown_grace_s=1.0)
    return DeliveryWorker(store, sender, build, config)


async def test_deliveries_claimed_as_a_worker_stops_go_to_the_next_worker_at_once(
    sqlite_store: SQLiteJobStore, receiver: Receiver
) -> None:
    """The worker's first claim is still running when it is told to stop (the store's thread
    is busy): what it claimed is not sent by it, and is given back; a second worker then
    sends each webhook once, within seconds, although the first worker's leases would hold
    for minutes."""
    store = sqlite_store
    account_id = await _completed_jobs(store, receiver.url)
    async with WebhookSender(UrlPolicy.from_allow(["127.0.0.1/32"]), timeout_s=2.0) as sender:
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

        second = _worker(store, sender)
        async with second:
            hits = await receiver.wait_hits(JOBS, timeout_s=10.0)
    assert len({hit.headers["webhook-id"] for hit in hits}) == JOBS
    assert {hit.headers["webhook-id"] for hit in hits} == {d.id for d in waiting}
