"""Where each webhook receiver's limit stands, as an operator sees it: the sender's summary and
busiest receivers, the dashboard's snapshot and the Prometheus gauges, while a receiver holds
its requests; a receiver is named by its origin, never by its URL's path or query."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from imagerouter.transport.wire import origin_text
from imagerouter.webhooks import UrlPolicy, WebhookSender
from imagerouter.webhooks.targets import TargetLimits
from tests.delivery.conftest import ApiFactory, listening
from tests.polling import eventually

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
ADMIN_KEY = "adm_receivers_test_0123456789"
#: A customer's token in the webhook URL: it must never be shown.
TOKEN_IN_URL = "tok_s3cret_in_path"


@dataclass
class Gate:
    """A receiver that holds every request until ``opened``, then answers 204."""

    held: int = 0
    seen: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen += 1
        self.held += 1
        try:
            await self.opened.wait()
        finally:
            self.held -= 1
        return web.Response(status=204)


async def test_the_sender_shows_in_flight_and_waiting_by_receiver_origin() -> None:
    """Six webhooks to a receiver allowed two at once that holds them: two in flight and four
    waiting, named ``http://127.0.0.1:<port>`` without the URL's path or query; once it
    answers, none in flight or waiting and no receiver among the busiest."""
    gate = Gate()
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    async with (
        listening(gate.handle) as url,
        WebhookSender(policy, timeout_s=60.0, per_target=2, per_target_max=2) as sender,
    ):
        hook = f"{url}/{TOKEN_IN_URL}?key={TOKEN_IN_URL}"
        sends = [
            asyncio.ensure_future(sender.send(hook, f"msg_{n}", b"{}", SECRETS)) for n in range(6)
        ]

        async def two_held() -> bool:
            return gate.held == 2

        await eventually(two_held, timeout_s=10, what="the receiver holding two")
        origin = url.removesuffix("/hook")
        assert sender.busiest_receivers(5) == [
            {"receiver": origin, "limit": 2, "in_flight": 2, "waiting": 4, "paused_s": 0}
        ]
        summary = sender.targets.summary()
        assert summary["receivers"] == 1
        assert summary["at_floor"] == 1
        assert (summary["in_flight"], summary["waiting"]) == (2, 4)
        gate.opened.set()
        results = await asyncio.gather(*sends)
    assert [r.status for r in results] == [204] * 6
    assert sender.busiest_receivers(5) == []
    assert sender.targets.summary()["waiting"] == 0


async def test_the_busiest_receivers_come_first_and_only_busy_ones_are_listed() -> None:
    """Ordered by requests waiting, then in flight; a receiver with neither is left out; the
    summary counts a receiver whose limit grew as above the floor, and at the ceiling."""
    limits = TargetLimits(1, 2)
    far = asyncio.get_running_loop().time() + 60
    quiet, busy, idle = ("http", "a", 1), ("http", "b", 2), ("http", "c", 3)
    await limits.acquire(quiet, far)
    await limits.acquire(busy, far)
    waiters = [asyncio.ensure_future(limits.acquire(busy, far)) for _ in range(2)]
    ticket = await limits.acquire(idle, far)
    await asyncio.sleep(0)
    limits.release(idle, ticket, 0.01, overloaded=False)  # busy (1 of 1): grows to 2
    assert [key for key, _ in limits.busiest(5)] == [busy, quiet]
    assert limits.busiest(1) == [(busy, {"limit": 1, "in_flight": 1, "waiting": 2, "paused_s": 0})]
    summary = limits.summary()
    assert summary == {
        "receivers": 3,
        "at_floor": 2,
        "above_floor": 1,
        "at_ceiling": 1,
        "paused": 0,
        "in_flight": 2,
        "waiting": 2,
    }
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert limits.summary()["waiting"] == 0


async def test_the_dashboard_and_metrics_show_a_receiver_holding_its_webhooks(
    make_api: ApiFactory,
) -> None:
    """Through the job API: six jobs' webhooks to one receiver allowed two at once, which
    holds them. The admin snapshot lists the receiver by origin with two in flight and four
    waiting, ``/metrics`` has the same totals, and neither shows the URL's token. Once the
    receiver answers, every webhook is delivered and nothing waits."""
    api = await make_api(
        admin_key=ADMIN_KEY,
        webhook_per_target=2,
        webhook_per_target_max=2,
        webhook_timeout_s=60.0,
        webhook_lease_s=120.0,
    )
    gate = Gate()
    async with listening(gate.handle) as url:
        token = await api.key(credits=10_000)
        hook = {"url": f"{url}/{TOKEN_IN_URL}?key={TOKEN_IN_URL}"}
        status, body = await api.call("PUT", "/v1/webhook", token, json=hook)
        assert status == 200, body
        for _ in range(6):
            await api.submit(token)
        origin = url.removesuffix("/hook")

        async def held() -> dict[str, Any] | None:
            status, snap = await api.call("GET", "/v1/admin/snapshot", ADMIN_KEY)
            assert status == 200, snap
            hooks = snap["webhooks"]
            busiest = hooks["busiest"]
            if busiest and busiest[0]["waiting"] == 4:
                return hooks
            return None

        hooks = await eventually(held, timeout_s=30, what="two webhooks held and four waiting")
        assert hooks["busiest"] == [
            {"receiver": origin, "limit": 2, "in_flight": 2, "waiting": 4, "paused_s": 0}
        ]
        assert hooks["in_flight"] == 6  # every attempt started: two sent, four in line
        assert hooks["senders"] == 1  # one server, no shared state: its limits its own
        assert hooks["receivers"]["in_flight"] == 2
        assert hooks["receivers"]["waiting"] == 4
        metrics = await (await api.client.get("/metrics")).text()
        assert 'imagerouter_webhook_receiver_requests{state="in_flight"} 2.0' in metrics
        assert 'imagerouter_webhook_receiver_requests{state="waiting"} 4.0' in metrics
        assert 'imagerouter_webhook_receivers{state="at_floor"} 1.0' in metrics
        running = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("imagerouter_webhook_attempts_in_flight{")
        ]
        assert sum(running) == 6
        snapshot_text = await (
            await api.client.get("/v1/admin/snapshot", headers=api.auth(ADMIN_KEY))
        ).text()
        assert TOKEN_IN_URL not in snapshot_text
        assert TOKEN_IN_URL not in metrics
        gate.opened.set()

        async def delivered() -> bool:
            return gate.seen == 6 and gate.held == 0

        await eventually(delivered, timeout_s=30, what="six webhooks answered")

        async def drained() -> bool:
            status, snap = await api.call("GET", "/v1/admin/snapshot", ADMIN_KEY)
            assert status == 200, snap
            return snap["webhooks"]["busiest"] == [] and snap["webhooks"]["in_flight"] == 0

        await eventually(drained, timeout_s=30, what="no webhook in flight or waiting")


def test_a_receiver_is_named_by_scheme_host_and_port_an_ipv6_host_in_brackets() -> None:
    """The names the dashboard shows: ``scheme://host:port``, the port always given."""
    assert origin_text(("https", "hooks.example.com", 443)) == "https://hooks.example.com:443"
    assert origin_text(("http", "::1", 8080)) == "http://[::1]:8080"
