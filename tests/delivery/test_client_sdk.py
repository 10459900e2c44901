"""The Python client SDK against a real server on loopback: jobs, SSE waits, typed errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from imagerouter.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    Conflict,
    InsufficientCredits,
    NotFound,
    RateLimitError,
    ValidationError,
    WaitTimeout,
)
from mockproviders import Farm
from tests.delivery.conftest import Api, ApiFactory
from tests.delivery.test_storage import PROMPT, SEED, farm_png


def _base(api: Api) -> str:
    return str(api.client.make_url("")).rstrip("/")


def _slow(farm: Farm, ms: float) -> None:
    for name in ("openai", "fal", "wavespeed"):
        farm.set_faults(name, {"generation_ms": {"dist": "fixed", "p50": ms}})


async def test_async_client_submits_waits_by_sse_lists_and_cancels(api: Api, farm: Farm) -> None:
    """AsyncClient submits, waits by SSE for the completed result, downloads its image, lists
    the job, cancels a running one (refunded), and maps 404 and 409 to typed errors."""
    token = await api.key()
    async with AsyncClient(_base(api), token) as client:
        queued = await client.submit(PROMPT, seed=SEED, metadata={"k": "v"})
        assert queued.status == "queued"
        assert not queued.final
        events = [event.type async for event in client.events(queued.id)]
        lifecycle = [kind for kind in events if kind != "job.progress"]  # fal's queue reports
        assert lifecycle == ["job.queued", "job.processing", "job.completed"]
        done = await client.wait(queued.id, timeout_s=20)
        assert done.status == "completed"
        assert done.result is not None
        assert done.result["metadata"] == {"k": "v"}
        assert await client.download(done.image_urls[0]) == farm_png(0)
        page = await client.list(limit=5)
        assert page.jobs[0].id == queued.id
        assert page.has_more is False
        _slow(farm, 3000)
        running = await client.submit("slow")
        canceled = await client.cancel(running.id)
        assert canceled.status == "canceled"
        assert canceled.credits["refunded"] > 0
        assert (await client.wait(running.id)).status == "canceled"
        with pytest.raises(Conflict) as again:
            await client.cancel(running.id)
        assert again.value.code == "job_finished"
        with pytest.raises(NotFound) as missing:
            await client.get("job_nope")
        assert (missing.value.status, missing.value.field) == (404, "id")
        with pytest.raises(WaitTimeout) as late:
            await client.wait((await client.submit("slower")).id, timeout_s=0.3)
        assert late.value.job is not None
        assert not late.value.job.final


async def test_client_errors_are_typed_after_the_api(make_api: ApiFactory) -> None:
    """A bad key, an invalid field, a refused webhook URL, a short wallet and a rate limit
    raise AuthenticationError, ValidationError(field), InsufficientCredits(balance, price)
    and RateLimitError(retry_after)."""
    api = await make_api(
        rate_limits={
            "generate": {"rate_per_s": 0.01, "burst": 4},
            "read": {"rate_per_s": 1000, "burst": 1000},
        }
    )
    token = await api.key(credits=30)
    async with AsyncClient(_base(api), "ir_not_a_key") as bad:
        with pytest.raises(AuthenticationError) as auth:
            await bad.list()
    assert auth.value.status == 401
    async with AsyncClient(_base(api), token) as client:
        with pytest.raises(ValidationError) as invalid:
            await client.submit("x", n=50)
        assert invalid.value.field == "n"
        assert invalid.value.errors
        await client.rotate_webhook_secret()
        with pytest.raises(ValidationError) as refused:
            await client.submit("x", webhook_url="http://169.254.169.254/")
        assert refused.value.field == "webhook_url"
        assert refused.value.code == "webhook_url_refused"
        await client.submit("x")
        with pytest.raises(InsufficientCredits) as short:
            await client.submit("x")
        assert (short.value.balance, short.value.price) == (4, 26)
        with pytest.raises(RateLimitError) as limited:
            await client.submit("x")
        assert limited.value.retry_after is not None
        assert limited.value.retry_after > 0


async def test_sync_client_waits_and_polls(api: Api) -> None:
    """The sync Client (in a thread, beside the server's loop) submits, waits by SSE and by
    polling, and downloads the result."""
    token = await api.key()
    base = _base(api)

    def work() -> tuple[bytes, str, str]:
        with Client(base, token) as client:
            first = client.wait(client.submit(PROMPT, seed=SEED).id, timeout_s=20)
            polled = client.wait(client.submit("polled").id, timeout_s=20, sse=False)
            return client.download(first.image_urls[0]), first.status, polled.status

    png, first, polled = await asyncio.to_thread(work)
    assert (first, polled) == ("completed", "completed")
    assert png == farm_png(0)


async def test_sync_wait_gives_up_at_its_timeout_while_the_stream_keeps_talking(
    api: Api, farm: Farm
) -> None:
    """The stream sends a heartbeat every 0.1 s (and fal's queue its progress): the sync
    client's wait still gives up at ``timeout_s`` with WaitTimeout and the job as last seen,
    as the async client's does, not when the 4 s job ends; ``events(deadline=…)`` ends there
    too. (Each heartbeat used to restart the read timeout that stood for the deadline.)"""
    token = await api.key()
    base = _base(api)
    _slow(farm, 4000)

    def work() -> tuple[WaitTimeout | None, list[str]]:
        with Client(base, token) as client:
            job = client.submit("slow")
            try:
                client.wait(job.id, timeout_s=1.0)
            except WaitTimeout as exc:
                caught: WaitTimeout | None = exc
            else:
                caught = None
            other = client.submit("slow too")
            seen = [e.type for e in client.events(other.id, deadline=time.monotonic() + 1.0)]
            return caught, seen

    caught, seen = await asyncio.to_thread(work)
    assert caught is not None, "wait returned the finished job, past its timeout"
    assert caught.job is not None
    assert not caught.job.final
    assert "job.completed" not in seen
