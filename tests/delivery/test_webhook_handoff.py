"""The server's delivery worker takes its completions' webhooks straight from the store
(written leased to it in the completion's transaction) and still keeps its bound on attempts
in flight: those beyond it wait in the worker, and every one is sent once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.delivery.conftest import ApiFactory, listening
from tests.helpers.at_once import AtOnce
from tests.polling import eventually


class SlowReceiver:
    """Answers 204 after ``delay_s``; records the most requests it held at once."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.url = ""
        self.at_once = AtOnce()
        self.ids: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        with self.at_once.held():
            await request.read()
            await asyncio.sleep(self.delay_s)
            self.ids[request.headers["webhook-id"]] += 1
            return web.Response(status=204)


@pytest.fixture
async def slow_receiver() -> AsyncIterator[SlowReceiver]:
    found = SlowReceiver(0.05)
    async with listening(found.handle) as found.url:
        yield found


async def test_handed_webhooks_keep_the_bound_on_attempts_in_flight(
    make_api: ApiFactory, slow_receiver: SlowReceiver
) -> None:
    """Twelve jobs finishing close together with one attempt allowed in flight: the receiver
    never holds two requests at once, each job's webhook arrives exactly once, and each
    delivery ends succeeded after one attempt."""
    api = await make_api(webhook_concurrency=1, webhook_slow_after_s=30.0)
    token = await api.key()
    status, body = await api.call("PUT", "/v1/webhook", token, json={"url": slow_receiver.url})
    assert status == 200, body
    jobs = [await api.submit(token) for _ in range(12)]

    async def all_sent() -> bool:
        return sum(slow_receiver.ids.values()) >= len(jobs) or None

    await eventually(all_sent, timeout_s=20.0, what="twelve webhooks")
    assert slow_receiver.at_once.most == 1
    deliveries = [await api.wait_delivery(token, job["id"], ("succeeded",)) for job in jobs]
    assert sorted(slow_receiver.ids) == sorted(d["id"] for d in deliveries)
    assert set(slow_receiver.ids.values()) == {1}
    assert all(len(d["log"]) == 1 for d in deliveries)
