"""A Redis that answers and refuses the URL's credentials is a mistake in the config, which
fails the replica's start naming ``server.state``; a Redis that is down only degrades it."""

from __future__ import annotations

import asyncio

import pytest

from imagerouter.errors import ConfigError
from imagerouter.replication import RedisState
from mockproviders import Farm
from mockproviders.bridge import farm_router
from tests.helpers.net import free_port
from tests.replication.helpers import FAST


async def test_refused_credentials_fail_the_start_naming_the_field(
    farm: Farm, redis_url: str, prefix: str
) -> None:
    """A user Redis does not know: ConfigError (field server.state), the password shown as
    ***, and nothing left running. Before, the replica started, ready and degraded for good."""
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    url = f"redis://nobody-here:hunter2-pw@{host_port}/0"
    tasks_before = asyncio.all_tasks()
    async with farm_router(farm, FAST) as router:
        with pytest.raises(ConfigError) as refused:
            async with RedisState(url, router, prefix=prefix):
                pytest.fail("the replica started with credentials Redis refused")
    assert refused.value.field == "server.state"
    assert "refused this replica's credentials" in str(refused.value)
    assert "hunter2-pw" not in str(refused.value)
    assert "nobody-here:***@" in str(refused.value)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - tasks_before == set()


async def test_a_redis_that_is_down_still_only_degrades_the_replica(
    farm: Farm, prefix: str
) -> None:
    """Nothing listening: the replica starts, running on its own state."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with farm_router(farm, FAST) as router, RedisState(url, router, prefix=prefix) as state:
        assert not state.healthy
        assert state.status()["last_error"]
