"""Helpers for the shared-state tests: a fleet of routers on one farm and one Redis prefix.
(Waiting is :func:`tests.polling.eventually_fine`; a free port,
:func:`tests.helpers.net.free_port`.)"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from imagerouter import ImageRequest, ImageResult, Router
from imagerouter.replication import RedisState
from imagerouter.resilience.breaker import BreakerState
from mockproviders import Farm
from mockproviders.bridge import farm_router

#: Small breakers and short jobs, as in tests/routing.
FAST: dict[str, Any] = {
    "router": {
        "deadline_s": 10,
        "breaker": {
            "consecutive_failures": 3,
            "minimum_calls": 3,
            "open_base_s": 0.4,
            "open_max_s": 1.0,
            "half_open_probes": 1,
        },
    }
}


#: FAST, but a breaker stays open for 30 s once tripped.
SLOW_OPEN: dict[str, Any] = {
    "router": {
        **FAST["router"],
        "breaker": {**FAST["router"]["breaker"], "open_base_s": 30.0, "open_max_s": 30.0},
    }
}


@dataclass
class Replica:
    """One router replica and its shared-state link."""

    router: Router
    state: RedisState

    @property
    def name(self) -> str:
        return self.state.replica_id

    def breaker(self, instance: str) -> BreakerState:
        return self.router.instances[instance].breaker.state

    def cooling(self, instance: str) -> bool:
        return self.router.instances[instance].cooldowns.active(instance)

    async def generate(self, prompt: str = "a lighthouse", model: str = "gpt-image-2") -> Any:
        """One job; its result, or the exception it ended with."""
        try:
            return await self.router.generate(ImageRequest(model=model, prompt=prompt))
        except Exception as exc:
            return exc


@contextlib.asynccontextmanager
async def replica(
    farm: Farm,
    url: str,
    prefix: str,
    name: str,
    config: Mapping[str, Any] | None = None,
    router_kwargs: Mapping[str, Any] | None = None,
    **state_kwargs: Any,
) -> AsyncIterator[Replica]:
    """A router on ``farm`` with its own RedisState on ``prefix``."""
    state_kwargs.setdefault("health_interval_s", 0.1)
    state_kwargs.setdefault("reconnect_max_s", 0.2)
    router = farm_router(farm, config or FAST, **(router_kwargs or {}))
    state = RedisState(url, router, prefix=prefix, replica_id=name, **state_kwargs)
    async with router, state:
        yield Replica(router, state)


@contextlib.asynccontextmanager
async def fleet(
    farm: Farm, url: str, prefix: str, count: int = 3, **kwargs: Any
) -> AsyncIterator[list[Replica]]:
    """``count`` replicas (r0, r1, …) sharing ``prefix``."""
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(replica(farm, url, prefix, f"r{i}", **kwargs))
            for i in range(count)
        ]
        yield replicas


def served_by(results: list[Any]) -> list[str]:
    """The provider of each result; the exception's class name for a failed job."""
    return [r.provider if isinstance(r, ImageResult) else type(r).__name__ for r in results]
