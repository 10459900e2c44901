"""The SQLite store hands a completion's webhook straight to this process's delivery worker
(:class:`~imagerouter.jobs.types.DeliveryHandoff`): written leased to it, its body fixed, in
the completion's transaction; anything it cannot hand over is left for a claim, as before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import pytest

from imagerouter.jobs.sqlite import SQLiteJobStore
from imagerouter.jobs.types import Delivery, DeliveryHandoff, HandedDelivery, Job, NewJob
from tests.store.conftest import ATTEMPT

HOOK = "https://hooks.example.com/acme"
RESULT = {"provider": "fal", "images": [{"url": "https://cdn.example/a.png"}]}
BOOM = {"code": "all_providers_failed", "message": "every provider failed"}


class Worker:
    """A delivery worker's side of the handoff, recording what it was told and when."""

    def __init__(self, room: int = 64, lease_s: float = 60.0, fail_body: bool = False) -> None:
        self.space = room
        self.fail_body = fail_body
        self.taken: list[HandedDelivery] = []
        self.queued = 0
        self.bodies: list[tuple[Job, Delivery]] = []
        self.took_on_loop = True
        self.handoff = DeliveryHandoff("dlv_here", lease_s, self.room, self.body, self.take)

    def room(self) -> int:
        return self.space

    def body(self, job: Job, delivery: Delivery) -> str:
        if self.fail_body:
            raise RuntimeError("the storage cannot sign URLs")
        self.bodies.append((job, delivery))
        return json.dumps({"id": job.id, "status": job.status, "event_id": delivery.event_id})

    def take(self, handed: Sequence[HandedDelivery], queued: bool) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.took_on_loop = False
        self.taken += handed
        self.queued += queued


@pytest.fixture
def store(sqlite_store: SQLiteJobStore) -> SQLiteJobStore:
    return sqlite_store


async def _held_jobs(store: SQLiteJobStore, count: int, *, secret: bool = True) -> str:
    """An account with a webhook URL (and a signing secret unless not ``secret``) holding
    ``count`` jobs leased to ``w1``."""
    account = await store.create_account("acme")
    await store.grant_credits(account.id, 1000)
    await store.set_webhook_url(account.id, HOOK)
    if secret:
        await store.add_webhook_secret(account.id, "whsec_" + "k" * 32, 0)
    request = {"model": "gpt-image-2", "prompt": "a lighthouse", "metadata": {"order": 7}}
    for n in range(count):
        await store.submit_job(NewJob(f"job_{n}", account.id, request, 10, time.time() + 600))
    assert len(await store.claim_jobs("w1", count, 30)) == count
    return account.id


async def _deliveries(store: SQLiteJobStore, account_id: str, job_id: str) -> list[Delivery]:
    return await store.job_deliveries(account_id, job_id)


async def test_a_completion_hands_its_webhook_leased_with_its_body_fixed(
    store: SQLiteJobStore,
) -> None:
    """Completions waiting together: each webhook is written leased to the worker, its body
    built from the final job and fixed, and handed over on the event loop after the commit
    with the account's secrets; no other worker can claim it while the lease holds."""
    worker = Worker()
    store.hand_deliveries(worker.handoff)
    account = await _held_jobs(store, 3)
    secrets = [s.secret for s in await store.webhook_secrets(account)]
    done = await asyncio.gather(
        *(store.complete_job(f"job_{n}", "w1", RESULT, [ATTEMPT]) for n in range(3))
    )
    assert done == [True, True, True]
    assert worker.took_on_loop
    assert worker.queued == 0
    assert sorted(h.delivery.job_id for h in worker.taken) == ["job_0", "job_1", "job_2"]
    for handed in worker.taken:
        assert list(handed.secrets) == secrets
        [row] = await _deliveries(store, account, handed.delivery.job_id)
        assert row.id == handed.delivery.id
        assert row.status == "delivering"
        assert row.body == handed.delivery.body
        assert json.loads(row.body)["event_id"] == row.event_id
    # the body was built from the job as its completion wrote it
    job, _ = worker.bodies[0]
    stored = await store.get_job(account, job.id, with_attempts=False)
    assert stored is not None
    assert (job.status, job.result, job.request, job.finished_at) == (
        "completed",
        stored.result,
        stored.request,
        stored.finished_at,
    )
    assert job.created_at == stored.created_at
    assert await store.claim_deliveries("dlv_other", 10, 60) == []


async def test_a_handed_webhook_whose_worker_died_is_claimed_once_its_lease_expires(
    store: SQLiteJobStore,
) -> None:
    """At least once: the worker the webhook was handed to never sends it; once the lease
    runs out, another worker claims it, body as fixed, and its attempt is recorded."""
    worker = Worker(lease_s=0.3)
    store.hand_deliveries(worker.handoff)
    account = await _held_jobs(store, 1)
    assert await store.complete_job("job_0", "w1", RESULT, [ATTEMPT])
    [handed] = worker.taken
    store.hand_deliveries(None)
    assert await store.claim_deliveries("dlv_other", 10, 60) == []
    await asyncio.sleep(0.4)
    [claimed] = await store.claim_deliveries("dlv_other", 10, 60)
    assert (claimed.id, claimed.body) == (handed.delivery.id, handed.delivery.body)
    [row] = await _deliveries(store, account, "job_0")
    assert row.status == "delivering"


async def test_without_room_the_webhook_waits_for_a_claim(store: SQLiteJobStore) -> None:
    """With room for one, of two completions one webhook is handed and the other is left
    pending (and the worker told to claim it)."""
    worker = Worker(room=1)
    store.hand_deliveries(worker.handoff)
    account = await _held_jobs(store, 2)
    await asyncio.gather(
        *(store.complete_job(f"job_{n}", "w1", RESULT, [ATTEMPT]) for n in range(2))
    )
    assert len(worker.taken) == 1
    assert worker.queued == 1
    [claimed] = await store.claim_deliveries("dlv_here", 10, 60)
    assert claimed.job_id != worker.taken[0].delivery.job_id
    assert claimed.body is None
    statuses = [(await _deliveries(store, account, f"job_{n}"))[0].status for n in range(2)]
    assert statuses == ["delivering", "delivering"]


@pytest.mark.parametrize("case", ["body_fails", "no_secret", "failure"])
async def test_what_cannot_be_handed_is_left_for_a_claim(store: SQLiteJobStore, case: str) -> None:
    """A body that cannot be built, an account without a signing secret, and a failure (with
    its refund) are not handed: the job is still finished, its webhook pending for a claim,
    and the worker told so."""
    worker = Worker(fail_body=case == "body_fails")
    store.hand_deliveries(worker.handoff)
    account = await _held_jobs(store, 1, secret=case != "no_secret")
    if case == "failure":
        assert await store.fail_job("job_0", "w1", BOOM, [ATTEMPT])
    else:
        assert await store.complete_job("job_0", "w1", RESULT, [ATTEMPT])
    assert worker.taken == []
    assert worker.queued == 1
    [row] = await _deliveries(store, account, "job_0")
    assert (row.status, row.body) == ("pending", None)
    job = await store.get_job(account, "job_0")
    assert job is not None
    assert job.status == ("failed" if case == "failure" else "completed")


async def test_without_a_handoff_nothing_is_handed(store: SQLiteJobStore) -> None:
    """Once the handoff is removed, completions leave their webhooks pending, as before."""
    worker = Worker()
    store.hand_deliveries(worker.handoff)
    store.hand_deliveries(None)
    account = await _held_jobs(store, 1)
    assert await store.complete_job("job_0", "w1", RESULT, [ATTEMPT])
    assert (worker.taken, worker.queued) == ([], 0)
    [row] = await _deliveries(store, account, "job_0")
    assert row.status == "pending"
