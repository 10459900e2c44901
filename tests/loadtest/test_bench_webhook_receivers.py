"""``bench_webhook_receivers``' bookkeeping against a real receiver on loopback: every webhook
offered is counted once, as delivered, not sent (no room in line) or refused with a 503."""

from __future__ import annotations

import asyncio

from aiohttp import web

from loadtests.bench.bench_webhook_receivers import offer
from tests.delivery.conftest import listening


async def test_every_offered_webhook_is_counted_once() -> None:
    """A receiver taking 20 ms that answers 503 beyond 2 at once, 60 webhooks offered at
    200/s through a sender allowed 4: delivered, not sent and 503s add up to the 60."""
    held = {"now": 0, "ok": 0, "busy": 0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        if held["now"] >= 2:
            held["busy"] += 1
            return web.Response(status=503)
        held["now"] += 1
        try:
            await asyncio.sleep(0.02)
        finally:
            held["now"] -= 1
        held["ok"] += 1
        return web.Response(status=204)

    async with listening(hook) as url:
        result = await offer(url, rate=200, duration_s=0.3, per_target=4, ceiling=4)
    assert result["offered"] == 60
    assert result["delivered"] == held["ok"]
    assert result["rejected_503"] == held["busy"]
    assert result["delivered"] + result["rejected_503"] + result["not_sent"] == 60
    assert result["limit_at_end"] == 4
