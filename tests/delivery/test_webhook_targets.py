"""How many webhook requests go to one receiver at once: the floor always, more while the
receiver keeps up, back to the floor when it shows overload; never past the ceiling."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from imagerouter.webhooks import NotSent, UrlPolicy, WebhookSender
from imagerouter.webhooks.targets import TargetLimits
from tests.delivery.conftest import ApiFactory, listening
from tests.helpers.at_once import AtOnce
from tests.polling import eventually

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]


@dataclass
class Crowd:
    """A receiver that answers ``status`` after ``delay_s`` and counts the requests it holds
    at once."""

    delay_s: float = 0.02
    status: int = 200
    seen: int = 0
    at_once: AtOnce = field(default_factory=AtOnce)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen += 1
        with self.at_once.held():
            await asyncio.sleep(self.delay_s)
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
    assert 4 < crowd.at_once.most <= 24
    assert sender.targets.ceiling == 24


async def test_a_fixed_limit_holds_at_its_floor() -> None:
    """With ``per_target_max`` at ``per_target`` the receiver never holds more than 4."""
    crowd = Crowd()
    await _send_all(crowd, 120, per_target=4, per_target_max=4)
    assert crowd.at_once.most == 4


async def test_a_receiver_answering_503_is_held_at_the_floor() -> None:
    """Every answer a 503 (overload): the limit never grows past the floor of 3."""
    crowd = Crowd(status=503)
    sender = await _send_all(crowd, 120, per_target=3, per_target_max=32)
    assert crowd.at_once.most == 3
    assert list(sender.targets.snapshot().values()) == [
        {"limit": 3, "in_flight": 0, "waiting": 0, "paused_s": 0}
    ]


async def test_a_webhook_waits_at_most_half_its_timeout_for_its_receiver() -> None:
    """One request at a time to a receiver taking 0.8 s, a 1 s timeout: the second webhook
    gives up after 0.5 s in line rather than go with 0.2 s left (it would time out and leave
    the receiver working on an answer nobody reads): the receiver sees one request, and the
    second is not sent, to be sent again after as long (not an attempt)."""
    crowd = Crowd(delay_s=0.8)
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    async with (
        listening(crowd.handle) as url,
        WebhookSender(policy, timeout_s=1.0, per_target=1, per_target_max=1) as sender,
    ):
        first, second = await asyncio.gather(
            sender.send(url, "msg_1", b"{}", SECRETS), sender.send(url, "msg_2", b"{}", SECRETS)
        )
        await asyncio.sleep(0.5)
    assert first.status == 200
    assert second.status is None
    assert second.error == "not sent: waited 0.5 s for the receiver"
    assert second.not_sent == NotSent("busy", 0.5)
    assert crowd.seen == 1


KEY = ("http", "127.0.0.1", 9)


async def _round(limits: TargetLimits, *, overloaded: bool = False, latency_s: float = 0.01):
    """As many requests as the limit allows sent at once, then all answered alike."""
    far = asyncio.get_running_loop().time() + 60
    tickets = [await limits.acquire(KEY, far) for _ in range(limits.limit_of(KEY))]
    for ticket in tickets:
        limits.release(KEY, ticket, latency_s, overloaded=overloaded)


async def _grow_to_ten_then_overload(limits: TargetLimits) -> None:
    """From a floor of 2, four busy rounds to 10, then a round of 503s: halved once, to 5."""
    for _ in range(4):
        await _round(limits)
    assert limits.limit_of(KEY) == 10
    await _round(limits, overloaded=True)
    assert limits.limit_of(KEY) == 5


async def test_a_busy_receiver_doubles_its_limit_a_round_trip_up_to_the_ceiling() -> None:
    """Until its first sign of overload, each busy 2xx adds one: 2 → 3 → 5 → 7 → 10, not past
    the ceiling of 10."""
    limits = TargetLimits(2, 10)
    seen = []
    for _ in range(5):
        await _round(limits)
        seen.append(limits.limit_of(KEY))
    assert seen == [3, 5, 7, 10, 10]


async def test_a_round_trip_of_overload_halves_the_limit_once() -> None:
    """Ten 503s answering requests sent together halve the limit once (10 → 5), not ten
    times; a slow 2xx is a sign of overload too; the floor holds; answers that say nothing of
    the load (a 404, a request never sent) change nothing."""
    limits = TargetLimits(2, 10)
    await _grow_to_ten_then_overload(limits)
    await _round(limits, latency_s=3.0)  # slower than slow_s (2 s)
    assert limits.limit_of(KEY) == 2
    await _round(limits, overloaded=True)
    assert limits.limit_of(KEY) == 2  # not below the floor
    await limits.acquire(KEY, asyncio.get_running_loop().time() + 60)
    limits.give_back(KEY)
    assert limits.snapshot() == {KEY: {"limit": 2, "in_flight": 0, "waiting": 0, "paused_s": 0}}


async def test_a_receiver_that_refuses_with_a_retry_after_can_be_held_below_the_floor() -> None:
    """A refusal with a Retry-After (a receiver telling this client it sends too many: with
    several replicas, their floors together can be more than it takes) halves the limit
    below the floor of 4, to 2; the same refusal without one leaves it at the floor, and so
    does one with a Retry-After to a fixed limit (the operator's: no answer moves it)."""
    for retry_after_s, ceiling, after in ((1.0, 8, 2), (None, 8, 4), (1.0, 4, 4)):
        limits = TargetLimits(4, ceiling)
        far = asyncio.get_running_loop().time() + 60
        tickets = [await limits.acquire(KEY, far) for _ in range(4)]
        limits.release(KEY, tickets[0], 0.001, True, retry_after_s=retry_after_s, status=429)
        for _ in tickets[1:]:
            limits.give_back(KEY)  # answers that say nothing of the load
        assert limits.limit_of(KEY) == after
        assert limits.paused_until(KEY) == 0.0


async def test_senders_sharing_a_receiver_each_take_their_share_of_its_limits() -> None:
    """With three senders a floor of 4 and a ceiling of 64 are 1 and 21 each (rounded down, at
    least 1): a receiver's limit of 13 here is scaled to 4 (4.33), so the fleet's total stays
    where it was, and back to 13 when this sender is alone again. A limit a Retry-After took
    below the floor is scaled too, not lifted to the new floor; a fixed limit is shared as
    well."""
    limits = TargetLimits(4, 64)
    far = asyncio.get_running_loop().time() + 60
    limits.share(3)
    assert (limits.floor, limits.ceiling, limits.senders) == (1, 21, 3)
    assert limits.limit_of(KEY) == 1  # a receiver not seen yet starts at the share's floor
    limits.share(1)
    for _ in range(3):
        await _round(limits)  # 4 → 6 → 9 → 13 (busy answers at first, not past 64)
    assert limits.limit_of(KEY) == 13
    limits.share(3)
    assert limits.limit_of(KEY) == 4
    tickets = [await limits.acquire(KEY, far) for _ in range(4)]
    with pytest.raises(TimeoutError):  # its share is all in flight
        await limits.acquire(KEY, asyncio.get_running_loop().time() + 0.01)
    waiting = asyncio.ensure_future(limits.acquire(KEY, far))
    await asyncio.sleep(0)
    limits.share(1)  # the limit grows back to 13: the waiter gets a freed slot at once
    assert limits.limit_of(KEY) == 13
    tickets.append(await asyncio.wait_for(waiting, timeout=10))
    for _ in tickets:
        limits.give_back(KEY)

    refused = TargetLimits(4, 64)
    ticket = await refused.acquire(KEY, far)
    refused.release(KEY, ticket, 0.001, True, retry_after_s=1.0, status=429)
    assert refused.limit_of(KEY) == 2  # below the floor of 4
    refused.share(2)
    assert refused.limit_of(KEY) == 1
    refused.share(1)
    assert refused.limit_of(KEY) == 2  # scaled back, not lifted to the floor

    fixed = TargetLimits(4, 4)
    fixed.share(2)
    assert (fixed.floor, fixed.ceiling, fixed.limit_of(KEY)) == (2, 2, 2)
    fixed.share(8)
    assert (fixed.floor, fixed.ceiling) == (1, 1)


async def test_after_overload_the_limit_grows_by_one_a_round_trip() -> None:
    """Once a receiver has shown where its capacity ends, growth is by one a round trip at
    most: from 5 (halved from 10), five rounds make 7 (only the answers that come while at
    least half the limit is in flight count), where before it, five rounds made 2 → 10."""
    limits = TargetLimits(2, 64)
    await _grow_to_ten_then_overload(limits)
    for _ in range(5):
        await _round(limits)
    assert limits.limit_of(KEY) == 7


async def test_a_waiter_that_gives_up_leaves_no_slot_taken() -> None:
    """Beyond the limit a request waits in turn; one whose deadline passes raises TimeoutError
    and takes nothing, and the next waiter gets the slot freed after it."""
    limits = TargetLimits(1, 1)
    loop = asyncio.get_running_loop()
    ticket = await limits.acquire(KEY, loop.time() + 60)
    with pytest.raises(TimeoutError):
        await limits.acquire(KEY, loop.time() + 0.01)
    second = asyncio.ensure_future(limits.acquire(KEY, loop.time() + 60))
    await asyncio.sleep(0)
    assert not second.done()
    limits.release(KEY, ticket, 0.01, overloaded=False)
    await asyncio.wait_for(second, timeout=10)
    assert limits.snapshot()[KEY]["in_flight"] == 1
    limits.give_back(KEY)
    assert limits.snapshot()[KEY]["in_flight"] == 0


async def test_a_waiter_cancelled_as_its_turn_comes_passes_the_slot_on() -> None:
    """A waiter handed a slot in the same turn as it is cancelled gives the slot to the next
    in line: no slot is lost."""
    limits = TargetLimits(1, 1)
    far = asyncio.get_running_loop().time() + 60
    ticket = await limits.acquire(KEY, far)
    first = asyncio.ensure_future(limits.acquire(KEY, far))
    second = asyncio.ensure_future(limits.acquire(KEY, far))
    await asyncio.sleep(0)
    limits.release(KEY, ticket, 0.01, overloaded=False)  # hands the slot to ``first``...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, timeout=10)
    assert first.cancelled()
    assert limits.snapshot()[KEY]["in_flight"] == 1


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
    assert crowd.at_once.most == 2
