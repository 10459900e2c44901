"""Webhook receivers' pauses shared through Redis: a receiver that refused one replica's
requests two round trips running with a Retry-After is paused on every replica until the same
end (real Redis; the webhook senders' limits, :class:`TargetLimits`, driven as the sender does)."""

from __future__ import annotations

import asyncio

import pytest

from imagerouter.clock import MonotonicClock
from imagerouter.replication.receivers import ReceiverPauses
from imagerouter.replication.records import ReceiverPauseRecord, decode, encode
from imagerouter.webhooks.targets import PauseEarned, ReceiverPaused, TargetLimits
from mockproviders import Farm
from tests.polling import eventually_fine
from tests.replication.helpers import replica
from tests.replication.proxy import TcpProxy

RECEIVER = ("https", "hooks.example.com", 8443)


async def _refused_twice(limits: TargetLimits, retry_after_s: float, status: int = 503) -> float:
    """Two round trips to RECEIVER refused with ``status`` and ``retry_after_s``, as the
    sender releases them: the pause this earns, and its end (loop time)."""
    far = asyncio.get_running_loop().time() + 60
    for _ in range(2):
        ticket = await limits.acquire(RECEIVER, far)
        limits.release(RECEIVER, ticket, 0.01, True, retry_after_s=retry_after_s, status=status)
    return limits.paused_until(RECEIVER)


def _until(limits: TargetLimits) -> float:
    return limits.paused_until(RECEIVER)


def _paused(limits: TargetLimits) -> bool:
    return limits.paused_until(RECEIVER) > 0


async def test_a_pause_earned_on_one_replica_holds_on_all_with_the_same_end(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A's pause reaches B and C (their requests are turned away until its end, to within
    clock conversions); they apply it once and publish nothing back."""
    limits = [TargetLimits(2, 8) for _ in range(3)]
    async with (
        replica(farm, redis_url, prefix, "a", receivers=limits[0]) as a,
        replica(farm, redis_url, prefix, "b", receivers=limits[1]) as b,
        replica(farm, redis_url, prefix, "c", receivers=limits[2]) as c,
    ):
        until = await _refused_twice(limits[0], 5.0)
        await eventually_fine(lambda: _paused(limits[1]) and _paused(limits[2]), what="B, C")
        far = asyncio.get_running_loop().time() + 60
        for other in limits[1:]:
            assert _until(other) == pytest.approx(until, abs=0.05)
            with pytest.raises(ReceiverPaused):
                await other.acquire(RECEIVER, far)
        await asyncio.sleep(0.2)  # room for an echo, were there one
        assert a.state.published == 1
        assert b.state.published == c.state.published == 0
        assert b.state.status()["receiver_pauses_applied"] == 1
        assert c.state.status()["receiver_pauses_applied"] == 1
        assert a.state.status()["receiver_pauses_applied"] == 0


async def test_a_replica_that_starts_later_is_paused_before_it_serves(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """The pause is kept in Redis: a replica that starts during it reads it with the
    snapshot, before its first webhook."""
    early, late_limits = TargetLimits(2, 8), TargetLimits(2, 8)
    async with replica(farm, redis_url, prefix, "early", receivers=early) as a:
        until = await _refused_twice(early, 5.0)
        await eventually_fine(lambda: a.state.published == 1, what="the pause published")
        async with replica(farm, redis_url, prefix, "late", receivers=late_limits) as late:
            assert late.state.healthy
            assert _until(late_limits) == pytest.approx(until, abs=0.05)


async def test_a_pause_earned_while_redis_is_cut_reaches_the_others_on_reconnect(
    farm: Farm, redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """A earns a pause while its Redis is cut: B cannot hear it then, and gets it when A
    resyncs (A re-publishes its live pauses that Redis does not hold)."""
    limits_a, limits_b = TargetLimits(2, 8), TargetLimits(2, 8)
    async with (
        replica(farm, proxy.url(), prefix, "a", receivers=limits_a) as a,
        replica(farm, redis_url, prefix, "b", receivers=limits_b),
    ):
        proxy.cut()
        await eventually_fine(lambda: not a.state.healthy, what="A notices Redis is gone")
        until = await _refused_twice(limits_a, 10.0)
        await asyncio.sleep(0.2)
        assert not _paused(limits_b)
        proxy.restore()
        await eventually_fine(lambda: _paused(limits_b), what="B gets A's pause")
        assert _until(limits_b) == pytest.approx(until, abs=0.05)


async def test_records_name_the_origin_only_and_never_shorten_a_pause() -> None:
    """The record names ``scheme://host:port`` (an IPv6 host in brackets), survives the wire,
    and applied elsewhere pauses the same origin; an earlier end, an ended pause or this
    replica's own record changes nothing."""
    here, there = TargetLimits(1, 1), TargetLimits(1, 1)
    mine = ReceiverPauses(here, "r0", MonotonicClock())
    theirs = ReceiverPauses(there, "r1", MonotonicClock())
    origin = ("https", "::1", 8443)
    now = asyncio.get_running_loop().time()
    record = mine.earned(PauseEarned(origin, now + 3.0, now - 0.5, 503))
    assert record is not None
    assert record.name == "https://[::1]:8443"
    assert record.until - record.since == pytest.approx(3.5)
    assert decode(encode(record)) == record
    assert theirs.receive(record)
    assert there.paused_until(origin) == pytest.approx(now + 3.0, abs=0.05)
    [kept] = theirs.live_records()  # the pause and when its refusals began, to pass on
    assert (kept.until, kept.since) == (record.until, record.since)
    assert kept.origin == "r1"
    shorter = ReceiverPauseRecord(record.name, record.until - 2.0, "r0", record.since)
    assert not theirs.receive(shorter)
    assert there.paused_until(origin) == pytest.approx(now + 3.0, abs=0.05)
    ended = ReceiverPauseRecord("https://a.example:443", record.since, "r0", record.since - 1)
    assert not theirs.receive(ended)
    assert not mine.receive(record)  # its own: paused when it happened
    assert theirs.applied == 1


async def test_a_replica_served_2xx_since_the_refusals_began_is_not_paused() -> None:
    """B's request, sent after A's refusals began, was answered 2xx: the receiver refuses only
    what is beyond its capacity, so A's pause is not applied on B. A replica with no such
    answer (only older ones) applies it."""
    served, idle = TargetLimits(2, 8), TargetLimits(2, 8)
    theirs = ReceiverPauses(served, "b", MonotonicClock())
    quiet = ReceiverPauses(idle, "c", MonotonicClock())
    loop = asyncio.get_running_loop()
    far = loop.time() + 60
    ticket = await idle.acquire(RECEIVER, far)
    idle.release(RECEIVER, ticket, 0.01, overloaded=False)  # a 2xx before the refusals
    await asyncio.sleep(0.05)
    since = loop.time()
    ticket = await served.acquire(RECEIVER, far)
    await asyncio.sleep(0.02)
    served.release(RECEIVER, ticket, 0.01, overloaded=False)  # sent after since: served
    record = ReceiverPauses(TargetLimits(2, 8), "a", MonotonicClock()).earned(
        PauseEarned(RECEIVER, loop.time() + 5.0, since, 503)
    )
    assert not theirs.receive(record)
    assert not _paused(served)
    assert await served.acquire(RECEIVER, far) >= 0  # B goes on sending
    assert quiet.receive(record)
    assert _paused(idle)


async def test_a_replica_with_requests_out_holds_the_pause_until_an_answer() -> None:
    """B has a request in flight when A's pause arrives: B keeps sending until an answer
    tells. Its first refusal with a Retry-After applies A's pause (A's two round trips and
    B's refusal are the fleet's second); a 2xx instead drops it."""
    for answer in ("refused", "served"):
        limits = TargetLimits(2, 8)
        b = ReceiverPauses(limits, "b", MonotonicClock())
        loop = asyncio.get_running_loop()
        far = loop.time() + 60
        out = await limits.acquire(RECEIVER, far)
        record = ReceiverPauses(TargetLimits(2, 8), "a", MonotonicClock()).earned(
            PauseEarned(RECEIVER, loop.time() + 5.0, loop.time() - 1.0, 503)
        )
        assert not b.receive(record)
        assert not _paused(limits)
        also = await limits.acquire(RECEIVER, far)  # held: B goes on sending
        if answer == "refused":
            limits.release(RECEIVER, out, 0.01, True, retry_after_s=1.0)
            assert _until(limits) == pytest.approx(loop.time() + 5.0, abs=0.05)
            with pytest.raises(ReceiverPaused):
                await limits.acquire(RECEIVER, far)
        else:
            limits.release(RECEIVER, out, 0.01, overloaded=False)
            limits.release(RECEIVER, also, 0.01, True, retry_after_s=1.0)
            assert not _paused(limits)  # one refusal of its own, after a 2xx: no pause


async def test_a_pause_a_429_earned_stays_with_the_replica_it_refused(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """Two round trips refused with 429 pause A alone: a 429 says this client sends too many,
    and another replica's requests may be what the receiver serves. A 503's pause (the
    receiver is unavailable) is the fleet's."""
    limits_a, limits_b = TargetLimits(2, 8), TargetLimits(2, 8)
    async with (
        replica(farm, redis_url, prefix, "a", receivers=limits_a) as a,
        replica(farm, redis_url, prefix, "b", receivers=limits_b),
    ):
        await _refused_twice(limits_a, 5.0, status=429)
        assert _paused(limits_a)  # paused here, for itself
        assert a.state.receivers is not None
        assert a.state.receivers.live_records() == []  # nothing of the fleet's to re-publish
        await asyncio.sleep(0.3)  # room for it to travel, were it published
        assert a.state.published == 0
        assert not _paused(limits_b)
