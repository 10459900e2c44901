"""How many webhook requests go to one receiver at once: the floor always, more while the
receiver keeps up, back to the floor when it shows overload; never past the ceiling."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from aiohttp import web

from imagerouter.webhooks import UrlPolicy, WebhookSender
from imagerouter.webhooks.targets import TargetLimits
from tests.delivery.conftest import ApiFactory, listening
from tests.polling import eventually

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]


@dataclass
class Crowd:
    """A receiver that answers ``status`` after ``delay_s`` and counts the requests it holds
    at once."""

    delay_s: float = 0.02
    status: int = 200
    now: int = 0
    most: int = 0
    seen: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.now += 1
        self.seen += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.now -= 1
        return web.Response(status=self.status)


async def _send_all(crowd: Crowd, count: int, **limits: int) -> WebhookSender:
    """``count`` webhooks to ``crowd`` at once through one sender; every one answered."""
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    async with (
        listening(crowd.handle) as url,
        WebhookSender(policy, timeout_s=30.0, max_connections=256, **limits) as sender,
    ):
        results = await asyncio.gather(
            *(sender.send(url, f"msg_{n}", b"{}", SECRETS) for n in range(count))
        )
    assert [r.status for r in results] == [crowd.status] * count
    assert crowd.seen == count
    return sender


async def test_a_receiver_that_keeps_up_is_given_more_than_the_floor_never_past_the_ceiling() -> (
    None
):
    """300 webhooks at once to a receiver answering 2xx in 20 ms: its limit grows from 4, so
    it holds more than 4 at once, and never more than the ceiling of 24."""
    crowd = Crowd()
    sender = await _send_all(crowd, 300, per_target=4, per_target_max=24)
    assert 4 < crowd.most <= 24
    assert sender.targets.ceiling == 24


async def test_a_fixed_limit_holds_at_its_floor() -> None:
    """With ``per_target_max`` at ``per_target`` the receiver never holds more than 4."""
    crowd = Crowd()
    await _send_all(crowd, 120, per_target=4, per_target_max=4)
    assert crowd.most == 4


async def test_a_receiver_answering_503_is_held_at_the_floor() -> None:
    """Every answer a 503 (overload): the limit never grows past the floor of 3."""
    crowd = Crowd(status=503)
    sender = await _send_all(crowd, 120, per_target=3, per_target_max=32)
    assert crowd.most == 3
    assert list(sender.targets.snapshot().values()) == [{"limit": 3, "in_flight": 0}]


async def test_overload_halves_the_limit_and_success_grows_it_again() -> None:
    """Busy successes add one each up to the ceiling; a 429 or timeout halves it, not below
    the floor; an answer that says nothing of the load (a 404, a request never sent) leaves
    it as it was."""
    limits = TargetLimits(2, 10)
    key = ("http", "127.0.0.1", 9)
    far = asyncio.get_running_loop().time() + 60

    async def busy_round(overloaded: bool = False) -> None:
        count = limits.limit_of(key)
        for _ in range(count):
            await limits.acquire(key, far)
        for _ in range(count):
            limits.release(key, 0.01, overloaded=overloaded)

    for _ in range(4):
        await busy_round()
    assert limits.limit_of(key) == 10  # 2 → 3 → 5 → 7 → 10: one more a busy answer, to 10
    await limits.acquire(key, far)
    limits.release(key, 3.0, overloaded=False)  # slower than slow_s (2 s): overload too
    assert limits.limit_of(key) == 5
    await limits.acquire(key, far)
    limits.give_back(key)  # a 404, or a request never sent: says nothing
    assert limits.limit_of(key) == 5
    await limits.acquire(key, far)
    limits.release(key, 0.01, overloaded=True)
    assert limits.limit_of(key) == 2
    await busy_round(overloaded=True)
    assert limits.limit_of(key) == 2  # not below the floor
    assert limits.snapshot() == {key: {"limit": 2, "in_flight": 0}}


async def test_a_waiter_that_gives_up_leaves_no_slot_taken() -> None:
    """Beyond the limit a request waits in turn; one whose deadline passes raises TimeoutError
    and takes nothing, and the next waiter gets the slot freed after it."""
    limits = TargetLimits(1, 1)
    key = ("http", "127.0.0.1", 9)
    loop = asyncio.get_running_loop()
    await limits.acquire(key, loop.time() + 60)
    with pytest.raises(TimeoutError):
        await limits.acquire(key, loop.time() + 0.01)
    second = asyncio.ensure_future(limits.acquire(key, loop.time() + 60))
    await asyncio.sleep(0)
    assert not second.done()
    limits.release(key, 0.01, overloaded=False)
    await asyncio.wait_for(second, timeout=10)
    assert limits.snapshot()[key]["in_flight"] == 1
    limits.give_back(key)
    assert limits.snapshot()[key]["in_flight"] == 0


async def test_a_waiter_cancelled_as_its_turn_comes_passes_the_slot_on() -> None:
    """A waiter handed a slot in the same turn as it is cancelled gives the slot to the next
    in line: no slot is lost."""
    limits = TargetLimits(1, 1)
    key = ("http", "127.0.0.1", 9)
    far = asyncio.get_running_loop().time() + 60
    await limits.acquire(key, far)
    first = asyncio.ensure_future(limits.acquire(key, far))
    second = asyncio.ensure_future(limits.acquire(key, far))
    await asyncio.sleep(0)
    limits.release(key, 0.01, overloaded=False)  # hands the slot to ``first``...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, timeout=10)
    assert first.cancelled()
    assert limits.snapshot()[key]["in_flight"] == 1


async def test_the_server_sends_no_more_at_once_to_one_receiver_than_its_settings_allow(
    make_api: ApiFactory,
) -> None:
    """``webhook_per_target`` and ``webhook_per_target_max`` at 2: 24 jobs' webhooks to one
    receiver taking 50 ms, all delivered, never more than 2 at once."""
    api = await make_api(webhook_per_target=2, webhook_per_target_max=2)
    crowd = Crowd(delay_s=0.05)
    async with listening(crowd.handle) as url:
        token = await api.key(credits=10_000)
        status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
        assert status == 200, body
        for _ in range(24):
            await api.submit(token)

        async def all_delivered() -> bool:
            return crowd.seen >= 24

        await eventually(all_delivered, timeout_s=60, what="24 webhooks delivered")
    assert crowd.most == 2
