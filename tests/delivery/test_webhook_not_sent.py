"""Webhooks that are not sent use no attempt: a receiver's Retry-After pauses everything to it
(no request goes into the window), and a webhook that found no room in its receiver's line is
given back to be sent later. Either way the delivery is due again, its schedule where it was."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from imagerouter.webhooks import UrlPolicy, WebhookSender
from imagerouter.webhooks.targets import ReceiverBusy, ReceiverPaused, TargetLimits
from tests.delivery.conftest import Api, ApiFactory, listening
from tests.helpers.metrics import parse_metrics, sample
from tests.polling import eventually

SECRETS = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
ADMIN_KEY = "adm_not_sent_test_0123456789"
KEY = ("http", "127.0.0.1", 9)


@dataclass
class Pausing:
    """A receiver that answers its first ``refusals`` requests, each after ``refuse_after_s``,
    with a 429 and ``Retry-After: retry_after`` (down for a while); every later one with 204.
    It notes when each request arrived and when its last 429 went out."""

    retry_after: str = "1"
    refuse_after_s: float = 0.0
    refusals: int = 2
    arrivals: list[float] = field(default_factory=list)
    refused_at: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals.append(time.time())
        if len(self.arrivals) <= self.refusals:
            await asyncio.sleep(self.refuse_after_s)
            self.refused_at = time.time()
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        return web.Response(status=204)


@dataclass
class Slow:
    """A receiver that answers every request with 204 after ``delay_s``, and counts them."""

    delay_s: float
    seen: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen += 1
        await asyncio.sleep(self.delay_s)
        return web.Response(status=204)


async def test_a_pause_turns_the_line_away_and_refuses_until_it_ends() -> None:
    """A paused receiver: its two waiters are turned away at once with the pause's end, the
    request in flight keeps its slot, a new request is refused until the end, and the
    snapshot and summary show it paused; after the end a request gets a slot again."""
    limits = TargetLimits(1, 1)
    loop = asyncio.get_running_loop()
    far = loop.time() + 60
    ticket = await limits.acquire(KEY, far)
    waiters = [asyncio.ensure_future(limits.acquire(KEY, far)) for _ in range(2)]
    await asyncio.sleep(0)
    until = loop.time() + 0.3
    limits.pause(KEY, until)
    for waiter in waiters:
        with pytest.raises(ReceiverPaused) as refused:
            await waiter
        assert refused.value.until == until
    with pytest.raises(ReceiverPaused):
        await limits.acquire(KEY, far)
    assert limits.snapshot()[KEY] == {"limit": 1, "in_flight": 1, "waiting": 0, "paused_s": 1}
    assert limits.summary()["paused"] == 1
    limits.release(KEY, ticket, 0.01, overloaded=True)
    assert limits.snapshot()[KEY]["in_flight"] == 0  # no slot went to a turned-away waiter
    limits.pause(KEY, loop.time() + 0.05)  # a shorter pause does not cut the longer one
    await asyncio.sleep(max(0.0, until - loop.time()) + 0.02)
    ticket = await limits.acquire(KEY, far)
    assert limits.summary()["paused"] == 0
    limits.release(KEY, ticket, 0.01, overloaded=False)


async def test_a_receiver_is_paused_by_a_second_round_trip_refused_and_no_sooner() -> None:
    """Refusals with a Retry-After of requests sent at the same limit are one round trip: no
    pause. A 2xx between two refusals: no pause. A refusal of a request sent after the limit
    came down for the one before, with no 2xx since: paused for the Retry-After."""
    limits = TargetLimits(4, 4)
    far = asyncio.get_running_loop().time() + 60
    round_one = [await limits.acquire(KEY, far) for _ in range(4)]
    for ticket in round_one[:3]:
        limits.release(KEY, ticket, 0.01, True, retry_after_s=1.0)
    assert limits.snapshot()[KEY]["paused_s"] == 0
    limits.release(KEY, round_one[3], 0.01, overloaded=False)  # a 2xx after them
    ticket = await limits.acquire(KEY, far)
    limits.release(KEY, ticket, 0.01, True, retry_after_s=1.0)
    assert limits.snapshot()[KEY]["paused_s"] == 0
    ticket = await limits.acquire(KEY, far)
    limits.release(KEY, ticket, 0.01, True, retry_after_s=1.0)
    assert limits.snapshot()[KEY]["paused_s"] == 1
    with pytest.raises(ReceiverPaused):
        await limits.acquire(KEY, far)


async def test_a_second_refusal_waits_for_the_requests_sent_before_it() -> None:
    """After a round trip refused, three requests go out together and one is refused at once
    (an endpoint refusing what is beyond its capacity, as replicas back from one pause meet
    it): no pause yet, and nothing more is sent while the other two are out. A 2xx among
    them drops the pause and the waiting request goes; all of them refused pause the
    receiver for the longest Retry-After, turn the waiting request away and tell
    ``on_pause`` once."""
    loop = asyncio.get_running_loop()
    for last in ("served", "refused"):
        limits = TargetLimits(6, 12)
        earned: list[float] = []
        limits.on_pause.add(lambda pause, heard=earned: heard.append(pause.until))
        far = loop.time() + 60
        ticket = await limits.acquire(KEY, far)
        limits.release(KEY, ticket, 0.01, True, retry_after_s=5.0, status=503)  # round one
        assert limits.limit_of(KEY) == 3  # halved: a Retry-After may take it below the floor
        out = [await limits.acquire(KEY, far) for _ in range(3)]
        limits.release(KEY, out[0], 0.001, True, retry_after_s=5.0, status=429)
        waiting = asyncio.ensure_future(limits.acquire(KEY, far))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # held: nothing more goes out
        assert limits.paused_until(KEY) == 0.0
        limits.release(KEY, out[1], 0.05, True, retry_after_s=8.0, status=429)
        assert limits.paused_until(KEY) == 0.0
        await asyncio.sleep(0)
        assert not waiting.done()
        if last == "served":
            limits.release(KEY, out[2], 0.05, overloaded=False)
            ticket = await asyncio.wait_for(waiting, 1.0)  # the receiver serves: it goes
            assert limits.paused_until(KEY) == 0.0
            assert earned == []
            limits.release(KEY, ticket, 0.01, overloaded=False)
        else:
            limits.release(KEY, out[2], 0.05, True, retry_after_s=5.0, status=503)
            assert limits.paused_until(KEY) == pytest.approx(loop.time() + 8.0, abs=0.05)
            with pytest.raises(ReceiverPaused):
                await waiting
            assert earned == [limits.paused_until(KEY)]
        assert limits.snapshot()[KEY]["in_flight"] == 0


async def test_a_held_pause_lasts_no_longer_than_its_window() -> None:
    """A second refusal holds the pause while a request sent before it hangs: the request in
    line waits, but only until the Retry-After's window is over (as long as the pause would
    have lasted), and then goes; the hanging one's late refusal pauses nothing."""
    loop = asyncio.get_running_loop()
    limits = TargetLimits(8, 16)
    far = loop.time() + 60
    ticket = await limits.acquire(KEY, far)
    limits.release(KEY, ticket, 0.01, True, retry_after_s=0.1, status=503)  # round one: 8 → 4
    hanging, refused = [await limits.acquire(KEY, far) for _ in range(2)]
    limits.release(KEY, refused, 0.001, True, retry_after_s=0.1, status=503)  # 4 → 2, held
    waiting = asyncio.ensure_future(limits.acquire(KEY, far))
    await asyncio.sleep(0.03)
    assert not waiting.done()  # held
    ticket = await asyncio.wait_for(waiting, 1.0)  # the window is over: it goes
    assert limits.paused_until(KEY) == 0.0
    limits.release(KEY, hanging, 0.5, True, retry_after_s=0.1, status=503)
    assert limits.snapshot()[KEY]["in_flight"] == 1
    limits.release(KEY, ticket, 0.01, overloaded=False)


async def test_one_that_gives_up_in_line_is_told_how_long_the_line_ahead_takes() -> None:
    """Seven waiting behind a limit of 2 whose answers took 0.2 s and then 0.4 s (the mean
    moved a fifth of the way, to 0.24 s): the sixth in line gives up with five ahead, 0.6 s
    of line; one that gives up before any answer, nothing known, 0."""
    limits = TargetLimits(2, 2)
    loop = asyncio.get_running_loop()
    far = loop.time() + 60
    first, second = [await limits.acquire(KEY, far) for _ in range(2)]
    waiters = [asyncio.ensure_future(limits.acquire(KEY, far)) for _ in range(5)]
    await asyncio.sleep(0)  # in line
    with pytest.raises(ReceiverBusy) as early:
        await limits.acquire(KEY, loop.time() + 0.01)
    assert early.value.line_wait_s == 0.0
    limits.release(KEY, first, 0.2, overloaded=False)
    limits.release(KEY, second, 0.4, overloaded=False)  # their slots to the first two in line
    waiters += [asyncio.ensure_future(limits.acquire(KEY, far)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ReceiverBusy) as late:
        await limits.acquire(KEY, loop.time() + 0.01)
    # ahead: the three left of the first five, the two after them, and the one given up
    # before (still in line until a slot passes it over)
    assert late.value.line_wait_s == pytest.approx(6 / 2 * 0.24)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_webhooks_that_found_no_room_come_back_after_the_line_ahead() -> None:
    """Eight webhooks at once to a receiver allowed one at a time, answering in 0.3 s, with a
    1 s timeout: those still in line after 0.5 s (all but the one or two it answered by then)
    are not sent; each is told to come back after 0.5 s at least, and those with more of the
    line ahead of them later still (the line ahead over the limit times 0.3 s), not all at
    once."""
    crowd = Slow(delay_s=0.3)
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    async with (
        listening(crowd.handle) as url,
        WebhookSender(policy, timeout_s=1.0, per_target=1, per_target_max=1) as sender,
    ):
        results = await asyncio.gather(
            *(sender.send(url, f"msg_{n}", b"{}", SECRETS) for n in range(8))
        )
    waits = sorted(r.not_sent.wait_s for r in results if r.not_sent is not None)
    sent = [r.status for r in results if r.not_sent is None]
    assert sent in ([204], [204, 204])
    assert len(waits) == 8 - len(sent)
    assert waits[0] == 0.5  # the first in line: nothing ahead, as long as it waited
    assert waits[-1] >= 5 * 0.3  # five or more ahead of the last, 0.3 s each


async def _sent_after_429(
    pause_at_most_s: float, retry_after: str, refusals: int = 2
) -> tuple[list, Pausing]:
    """Four webhooks at once to a receiver allowed one at a time whose first ``refusals``
    answers, each after 0.2 s, are 429s with ``retry_after``; then one more right after, one
    more 0.4 s later."""
    receiver = Pausing(retry_after=retry_after, refuse_after_s=0.2, refusals=refusals)
    policy = UrlPolicy.from_allow(["127.0.0.1/32"])
    async with (
        listening(receiver.handle) as url,
        WebhookSender(
            policy, timeout_s=10.0, per_target=1, per_target_max=1, pause_at_most_s=pause_at_most_s
        ) as sender,
    ):
        results = list(
            await asyncio.gather(*(sender.send(url, f"msg_{n}", b"{}", SECRETS) for n in range(4)))
        )
        results.append(await sender.send(url, "msg_4", b"{}", SECRETS))
        await asyncio.sleep(0.4)
        results.append(await sender.send(url, "msg_5", b"{}", SECRETS))
    return results, receiver


async def test_a_second_round_trip_refused_pauses_the_receiver_and_nothing_goes_into_it() -> None:
    """Two 429s running with ``Retry-After: 0.3`` (the second for a request sent after the
    first): the receiver is paused. The two webhooks in line and the one sent right after are
    not sent, each told to wait out the pause and its place in the line turned away (0.2 s a
    place, the receiver's pace); the one sent after the pause goes: the receiver sees three
    requests, the third after the window."""
    results, receiver = await _sent_after_429(60.0, "0.3")
    first, second, in_line, also_in_line, right_after, later = results
    assert [first.status, second.status] == [429, 429]
    turned_away = [in_line, also_in_line, right_after]
    for result in turned_away:
        assert result.status is None
        assert result.not_sent is not None
        assert result.not_sent.reason == "paused"
        assert re.fullmatch(
            r"not sent: the receiver asked for a pause \(0\.\d s left\)", result.error
        )
    waits = [result.not_sent.wait_s for result in turned_away]  # type: ignore[union-attr]
    assert 0 < waits[0] <= 0.3
    assert waits[1] - waits[0] >= 0.2 - 0.01  # a place in line: an answer's time, >= 0.2 s
    assert waits[2] > waits[1]
    assert later.status == 204
    assert len(receiver.arrivals) == 3
    assert receiver.arrivals[2] - receiver.refused_at >= 0.3 - 0.02


async def test_one_refusal_alone_does_not_pause_the_receiver() -> None:
    """A 429 with a Retry-After between answers that go on (an endpoint saying "fewer at
    once"): nothing is turned away, every webhook in line goes."""
    results, receiver = await _sent_after_429(60.0, "0.3", refusals=1)
    assert [r.status for r in results] == [429, 204, 204, 204, 204, 204]
    assert len(receiver.arrivals) == 6


async def test_a_pause_lasts_at_most_the_cap_and_none_without_one() -> None:
    """``Retry-After: 3600`` twice running pauses the receiver for the cap of 0.25 s, not an
    hour: the one sent 0.4 s later goes. With a cap of 0 nothing is paused: the webhooks in
    line go after the 429s, each to the receiver."""
    results, receiver = await _sent_after_429(0.25, "3600")
    assert all(r.not_sent is not None for r in results[2:5])
    assert results[5].status == 204
    assert len(receiver.arrivals) == 3

    results, receiver = await _sent_after_429(0.0, "3600")
    assert [r.status for r in results] == [429, 429, 204, 204, 204, 204]
    assert len(receiver.arrivals) == 6


async def _hook(api: Api, token: str, url: str) -> None:
    status, body = await api.call("PUT", "/v1/webhook", token, json={"url": url})
    assert status == 200, body


async def _all_delivered(api: Api, token: str, jobs: list[dict]) -> list[dict]:
    return [await api.wait_delivery(token, job["id"], ("succeeded",), timeout_s=30) for job in jobs]


async def test_webhooks_due_during_a_pause_wait_for_its_end_without_using_an_attempt(
    make_api: ApiFactory,
) -> None:
    """Through the job API, one attempt at a time to a receiver whose first two answers, each
    after 0.3 s, are 429s with ``Retry-After: 1``. Four jobs' webhooks: while the pause lasts,
    a waiting one says why in its ``last_error``; no request reaches the receiver in the
    second after the second 429; every webhook is delivered, the two turned away with one
    attempt each (none logged for the wait) and the refused ones with two, though their own
    retries fell due inside the pause. The snapshot and ``/metrics`` count them."""
    api = await make_api(
        admin_key=ADMIN_KEY, webhook_per_target=1, webhook_per_target_max=1, webhook_timeout_s=4
    )
    receiver = Pausing(retry_after="1", refuse_after_s=0.3)
    async with listening(receiver.handle) as url:
        token = await api.key(credits=10_000)
        await _hook(api, token, url)
        jobs = [await api.submit(token) for _ in range(4)]

        async def one_waiting() -> dict | None:
            for job in jobs:
                for delivery in await api.deliveries(token, job["id"]):  # none until it ends
                    unsent = delivery["attempts"] == 0  # not the refused one
                    if delivery["status"] == "pending" and delivery["last_error"] and unsent:
                        return delivery
            return None

        waiting = await eventually(one_waiting, timeout_s=10, what="a webhook waiting unsent")
        assert waiting["log"] == []
        assert waiting["last_error"].startswith("not sent: the receiver asked for a pause (")
        assert waiting["next_attempt_at"] >= receiver.refused_at + 1.0 - 0.02
        deliveries = await _all_delivered(api, token, jobs)
    assert len(receiver.arrivals) == 6
    assert all(at >= receiver.refused_at + 1.0 - 0.02 for at in receiver.arrivals[2:])
    logs = sorted(([a["status"] for a in d["log"]] for d in deliveries), key=len)
    assert logs == [[204], [204], [429, 204], [429, 204]]
    assert sorted(d["attempts"] for d in deliveries) == [1, 1, 2, 2]
    status, snap = await api.call("GET", "/v1/admin/snapshot", ADMIN_KEY)
    assert status == 200, snap
    deferred = snap["webhooks"]["deferred"]
    assert deferred["busy"] == 0
    assert deferred["paused"] >= 3
    metrics = parse_metrics(await (await api.client.get("/metrics")).text())
    paused = sample(metrics, "imagerouter_webhook_deferrals_total", reason="paused")
    assert paused == deferred["paused"]
    assert ("imagerouter_webhook_receivers_paused", ()) in metrics  # exposed, and at 0
    assert sample(metrics, "imagerouter_webhook_receivers_paused") == 0
    assert sample(metrics, "imagerouter_webhook_senders") == 1  # alone: no shared state


async def test_a_full_line_gives_webhooks_back_even_with_one_attempt_in_the_schedule(
    make_api: ApiFactory,
) -> None:
    """A schedule of one attempt, one request at a time to a receiver taking 0.4 s, a 1 s
    timeout (so 0.5 s in line at most, and at least 0.5 s to be answered): of four jobs'
    webhooks some find no room in time. Each is given back and sent later, and
    delivered on its one attempt: none fails unsent."""
    api = await make_api(
        admin_key=ADMIN_KEY,
        webhook_per_target=1,
        webhook_per_target_max=1,
        webhook_timeout_s=1.0,
        webhook_retry_schedule_s=[0],
    )
    receiver = Slow(delay_s=0.4)
    async with listening(receiver.handle) as url:
        token = await api.key(credits=10_000)
        await _hook(api, token, url)
        jobs = [await api.submit(token) for _ in range(4)]
        deliveries = await _all_delivered(api, token, jobs)
    assert [[a["status"] for a in d["log"]] for d in deliveries] == [[204]] * 4
    assert receiver.seen == 4
    status, snap = await api.call("GET", "/v1/admin/snapshot", ADMIN_KEY)
    assert status == 200, snap
    assert snap["webhooks"]["deferred"]["busy"] >= 1
    metrics = parse_metrics(await (await api.client.get("/metrics")).text())
    busy = sample(metrics, "imagerouter_webhook_deferrals_total", reason="busy")
    assert busy == snap["webhooks"]["deferred"]["busy"]
