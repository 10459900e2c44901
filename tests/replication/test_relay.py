"""The windows (Retry-After cooldowns, spent budgets, paused receivers) go to the other
replicas through the job store they share (PostgreSQL ``NOTIFY``) as well as Redis, so none is
sent into while Redis is away: for every replica, for the sender, or only for a peer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from imagerouter.jobs.postgres import PostgresJobStore
from mockproviders import Farm
from tests.polling import eventually_fine
from tests.replication.helpers import replica, served_by
from tests.replication.proxy import TcpProxy
from tests.replication.test_blinks import wavespeed_first_catalog
from tests.store.pg import drop_schema, new_schema, require_postgres, with_schema


@pytest.fixture
async def stores() -> AsyncIterator[tuple[PostgresJobStore, PostgresJobStore]]:
    """Two store instances on one fresh schema: the store two replicas share."""
    base = require_postgres()
    schema = new_schema()
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(
                PostgresJobStore(with_schema(base, schema), pool_max=2, poll_interval_s=0.2)
            )
            for _ in range(2)
        ]
        yield opened[0], opened[1]
    await drop_schema(base, schema)


async def test_a_window_begun_as_redis_hangs_reaches_the_peer_through_the_store(
    farm: Farm, prefix: str, proxy: TcpProxy, stores: tuple[PostgresJobStore, PostgresJobStore]
) -> None:
    """Redis hangs just before A learns a Retry-After: A's publish times out, and B still
    learns the window, through PostgreSQL; later windows go the same way; B echoes nothing."""
    kwargs = {"router_kwargs": {"catalog": wavespeed_first_catalog()}}
    async with (
        replica(farm, proxy.url(), prefix, "a", store=stores[0], **kwargs) as a,
        replica(farm, proxy.url(), prefix, "b", store=stores[1], **kwargs) as b,
    ):
        assert a.state.healthy
        assert b.state.healthy
        proxy.stall()  # until the end: nothing passes through Redis from here
        farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 20})
        result = await a.generate(model="ws-first")
        assert served_by([result]) == ["fal"]
        await eventually_fine(lambda: not a.state.healthy, what="A's publish to time out")
        await eventually_fine(lambda: b.cooling("wavespeed"), what="B to learn the window")
        assert b.router.instances["wavespeed"].cooldowns.remaining("wavespeed") > 15
        assert a.state.relayed == 1

        farm.set_faults("wavespeed", {})
        farm.set_faults("fal", {"error_rates": {"429": 1.0}, "retry_after_s": 20})
        result = await a.generate()  # fal first: 429; WaveSpeed cooling; OpenAI serves
        assert served_by([result]) == ["openai"]
        await eventually_fine(lambda: b.cooling("fal"), what="B to learn the second window")
        assert a.state.relayed == 2
        assert b.state.relayed == 0  # what B applied it does not tell again


async def test_a_window_reaches_a_peer_cut_off_from_redis_while_the_sender_is_not(
    farm: Farm,
    redis_url: str,
    prefix: str,
    proxy: TcpProxy,
    stores: tuple[PostgresJobStore, PostgresJobStore],
) -> None:
    """Only B has lost Redis: A publishes its window to Redis as usual, and B, which cannot
    hear the channel, learns it through the store."""
    kwargs = {"router_kwargs": {"catalog": wavespeed_first_catalog()}}
    async with (
        replica(farm, redis_url, prefix, "a", store=stores[0], **kwargs) as a,
        replica(farm, proxy.url(), prefix, "b", store=stores[1], **kwargs) as b,
    ):
        proxy.cut()
        await eventually_fine(lambda: not b.state.healthy, what="B to notice Redis is gone")
        farm.set_faults("wavespeed", {"error_rates": {"429": 1.0}, "retry_after_s": 20})
        assert served_by([await a.generate(model="ws-first")]) == ["fal"]
        await eventually_fine(lambda: b.cooling("wavespeed"), what="B to learn the window")
        assert a.state.healthy
        assert a.state.published >= 1  # through Redis too
        assert a.state.relayed == 1
