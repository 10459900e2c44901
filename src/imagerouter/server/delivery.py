"""The delivery side of the app: output storage, webhook delivery and live event streams.

Each resource is owned by a cleanup context, started after the store and before the worker
pool (which re-hosts outputs through :data:`outputs_key`), so that on shutdown the pool stops
first, then the delivery worker (finishing or handing back its attempts), then the storage
pool. Live SSE streams are told to end by :func:`close_streams` on shutdown, before aiohttp
waits for open requests.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from imagerouter.jobs.postgres import is_postgres_url
from imagerouter.jobs.rules import PROGRESS_EVENT
from imagerouter.jobs.types import Delivery, Job
from imagerouter.server.errors import ApiError
from imagerouter.server.keys import (
    deliveries_key,
    outputs_key,
    router_key,
    settings_key,
    storage_key,
    store_key,
    streams_key,
    url_policy_key,
)
from imagerouter.server.observability import webhook_observer
from imagerouter.server.settings import ServerSettings
from imagerouter.storage import OutputStore, open_storage, present_result
from imagerouter.webhooks import (
    DeliveryWorker,
    Superseded,
    WebhookSender,
    dumps_body,
    progress_payload,
    webhook_payload,
)

__all__ = [
    "StreamRegistry",
    "close_streams",
    "storage_ctx",
    "stored_b64",
    "stored_keys",
    "webhooks_ctx",
]


log = logging.getLogger(__name__)


class StreamRegistry:
    """The open SSE streams, so that shutdown can end them at once."""

    def __init__(self) -> None:
        self._wakers: set[asyncio.Event] = set()
        self.closing = False

    def add(self, waker: asyncio.Event) -> None:
        """Track a stream by the event that wakes its loop."""
        self._wakers.add(waker)

    def discard(self, waker: asyncio.Event) -> None:
        """Forget a stream that ended."""
        self._wakers.discard(waker)

    def close_all(self) -> None:
        """Tell every stream to end (each sees ``closing`` when woken)."""
        self.closing = True
        for waker in self._wakers:
            waker.set()

    def __len__(self) -> int:
        return len(self._wakers)


def _warn_if_outputs_unshared(settings: ServerSettings) -> None:
    """Warn when outputs go to this machine's disk while jobs are in a shared store: right
    for one replica; with several, an image's link works on one replica alone. Said once
    the app starts, through the logs it configured (a JSON line with ``log_format =
    "json"``), not while it is being built."""
    if is_postgres_url(settings.store) and settings.storage.backend == "local":
        log.warning(
            "outputs are stored on this machine's disk (storage backend local) while jobs are "
            "in a shared PostgreSQL store: with more than one replica, an image's URL works only "
            "on the replica that stored it; use backend s3 (or none) for a fleet"
        )


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    """The storage backend and its bounded thread pool; the output re-hoster."""
    settings = app[settings_key]
    _warn_if_outputs_unshared(settings)
    async with open_storage(
        settings.storage, settings.data_dir, base_url=settings.public_url
    ) as storage:
        if storage is not None:
            app[storage_key] = storage
            app[outputs_key] = OutputStore(
                storage,
                lambda: app[router_key].session,
                settings.storage,
                http=lambda: app[router_key].http,
            )
        yield


def _job_body(app: web.Application):
    """The body of a job's final-event delivery, from the final job (the result's stored
    images signed afresh); a handoff runs it on the store's thread."""
    ttl_s = app[settings_key].storage.url_ttl_s

    def build(job: Job, delivery: Delivery) -> str:
        result = present_result(app.get(storage_key), job.result, ttl_s)
        return dumps_body(webhook_payload(job, delivery, result))

    return build


def _body_builder(app: web.Application):
    final_body = _job_body(app)

    async def build(delivery: Delivery) -> str:
        store = app[store_key]
        job = await store.get_job(delivery.account_id, delivery.job_id, with_attempts=False)
        if job is None:
            raise LookupError(f"job {delivery.job_id} is gone")
        if delivery.event_type == PROGRESS_EVENT:
            if job.final:
                raise Superseded(f"job {job.id} is {job.status}; its final webhook says so")
            found = await store.events_since(
                delivery.account_id, delivery.job_id, delivery.event_id - 1, 1
            )
            data = found[0].data if found and found[0].id == delivery.event_id else {}
            return dumps_body(progress_payload(job, delivery, data))
        return final_body(job, delivery)

    return build


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    """The URL policy, the webhook sender's session, the delivery worker and the stream
    registry."""
    settings = app[settings_key]
    policy = settings.url_policy()
    app[url_policy_key] = policy
    app[streams_key] = StreamRegistry()
    config = settings.delivery_config()
    store = app[store_key]
    if not callable(getattr(store, "claim_deliveries", None)):  # a backend without webhooks yet
        log.warning("the %s job store keeps no webhook deliveries", type(store).__name__)
        try:
            yield
        finally:
            app[streams_key].close_all()
        return
    async with WebhookSender(
        policy,
        timeout_s=settings.webhook_timeout_s,
        pause_at_most_s=settings.webhook_pause_max_s,
        max_connections=config.concurrency + config.slow_max,
        per_target=config.per_target,
        per_target_max=config.per_target_max,
    ) as sender:
        worker = DeliveryWorker(
            store,
            sender,
            _body_builder(app),
            config,
            job_body=_job_body(app),
            observe=webhook_observer(app),
        )
        app[deliveries_key] = worker
        async with worker:
            try:
                yield
            finally:
                app[streams_key].close_all()


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end every open SSE stream, so that shutdown need not wait for them."""
    if streams_key in app:
        app[streams_key].close_all()


def stored_keys(request: web.Request, job: Job) -> dict[int, str]:
    """Image index → storage key, for a result whose images are in this server's backend."""
    storage = request.app.get(storage_key)
    record = (job.result or {}).get("storage") or {}
    if storage is None or record.get("backend") != storage.name:
        return {}
    return dict(enumerate(record.get("keys") or []))


async def stored_b64(request: web.Request, key: str, max_bytes: int) -> str:
    """A stored image's bytes as base64, read from the backend (no HTTP round trip)."""
    data = await request.app[storage_key].get(key)
    if len(data) > max_bytes:
        raise ApiError(502, "image_too_large", "the generated image is too large to inline")
    return base64.b64encode(data).decode("ascii")
