"""Webhook receivers' limits shared through Redis: every heartbeat counts the live replicas that
send webhooks, and each takes its share of a receiver's floor and ceiling (real Redis)."""

from __future__ import annotations

from imagerouter.webhooks.targets import TargetLimits
from mockproviders import Farm
from tests.polling import eventually_fine
from tests.replication.helpers import replica
from tests.replication.proxy import TcpProxy


def _shares(*limits: TargetLimits) -> list[tuple[int, int, int]]:
    return [(each.senders, each.floor, each.ceiling) for each in limits]


async def test_replicas_sending_webhooks_share_each_receivers_limits(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A and B send webhooks, C does not: A and B count two senders and take a floor of 2 and
    a ceiling of 32 each (of 4 and 64). When B stops, A takes the whole again once B's
    heartbeat has expired."""
    limits_a, limits_b = TargetLimits(4, 64), TargetLimits(4, 64)
    async with (
        replica(farm, redis_url, prefix, "a", receivers=limits_a) as a,
        replica(farm, redis_url, prefix, "c") as c,
    ):
        assert _shares(limits_a) == [(1, 4, 64)]  # counted as it started: alone
        async with replica(farm, redis_url, prefix, "b", receivers=limits_b) as b:
            assert _shares(limits_b) == [(2, 2, 32)]  # counted as it started
            await eventually_fine(lambda: limits_a.senders == 2, what="A counts B")
            assert _shares(limits_a, limits_b) == [(2, 2, 32)] * 2
            assert a.state.status()["webhook_senders"] == b.state.status()["webhook_senders"] == 2
            assert "webhook_senders" not in c.state.status()  # a replica, not a sender
        await eventually_fine(lambda: limits_a.senders == 1, what="B's heartbeat to expire")
        assert _shares(limits_a) == [(1, 4, 64)]


async def test_a_replica_cut_off_from_redis_takes_the_whole_after_three_heartbeats(
    farm: Farm, redis_url: str, prefix: str, proxy: TcpProxy
) -> None:
    """A's Redis is cut: for three heartbeats it keeps its share (its peers are still there),
    then takes the whole, as a replica alone does; B takes the whole once A's heartbeat
    expires. Both share again when A's link is back."""
    limits_a, limits_b = TargetLimits(4, 64), TargetLimits(4, 64)
    async with (
        # heartbeats of 0.5 s: its three (1.5 s) are well past noticing the cut
        replica(farm, proxy.url(), prefix, "a", receivers=limits_a, health_interval_s=0.5) as a,
        replica(farm, redis_url, prefix, "b", receivers=limits_b),
    ):
        await eventually_fine(lambda: limits_a.senders == 2, what="A counts B")
        proxy.cut()
        await eventually_fine(lambda: not a.state.healthy, what="A notices Redis is gone")
        assert limits_a.senders == 2  # not at once: a blink is not a fleet gone
        await eventually_fine(
            lambda: _shares(limits_a, limits_b) == [(1, 4, 64)] * 2, what="both alone"
        )
        assert a.state.status()["webhook_senders"] == 1
        proxy.restore()
        await eventually_fine(
            lambda: _shares(limits_a, limits_b) == [(2, 2, 32)] * 2, what="both sharing again"
        )
