"""The mock farm on its own thread and event loop, so the plugin's loop holds only the plugin.

Running the farm beside the plugin in one loop would blame the plugin for the farm's work (and
the farm's logs would mix with the plugin's); on its own thread, anything slow or leaky on the
plugin's loop is the plugin's. Every farm call is marshalled onto the farm's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from mockproviders import Farm, FarmAdapter, FarmJob, FaultProfile

__all__ = ["KitFarm"]

T = TypeVar("T")

#: Seconds to wait for the farm thread to start, answer a control call, or stop.
CONTROL_TIMEOUT_S = 15.0


class KitFarm:
    """A :class:`mockproviders.Farm` serving ``adapters`` (by default every loaded plugin's)
    on a thread.

    Use it as a context manager; ``set_faults``, ``reset``, ``stats``, ``providers`` and
    ``jobs`` are safe to call from any thread.
    """

    def __init__(self, adapters: Sequence[FarmAdapter] | None = None) -> None:
        self._adapters = None if adapters is None else list(adapters)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._farm: Farm | None = None

    def __enter__(self) -> KitFarm:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def thread_id(self) -> int | None:
        """The farm thread's ident (log records from it are the farm's, not the plugin's)."""
        return self._thread.ident if self._thread else None

    def start(self) -> None:
        """Start the thread and the farm on it; returns once the farm listens."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="imagerouter-kit-farm", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread

        async def start() -> Farm:
            farm = Farm(adapters=self._adapters)
            await farm.start()
            return farm

        self._farm = self._await(start())

    def close(self) -> None:
        """Stop the farm, then its loop and thread."""
        loop, thread, farm = self._loop, self._thread, self._farm
        self._loop = self._thread = self._farm = None
        if loop is None or thread is None:
            return
        try:
            if farm is not None:
                asyncio.run_coroutine_threadsafe(farm.aclose(), loop).result(CONTROL_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
            loop.close()

    # --- the farm's API, from any thread ------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._running().url

    def base_url(self, provider: str) -> str:
        """The base URL the provider's plugin should be given."""
        return self._call(lambda farm: farm.base_url(provider))

    def providers(self) -> dict[str, Any]:
        """The ``GET /_farm/providers`` document."""
        return self._call(lambda farm: farm.providers())

    def stats(self) -> dict[str, Any]:
        """The ``GET /_farm/stats`` document."""
        return self._call(lambda farm: farm.stats())

    def set_faults(self, provider: str, profile: FaultProfile | Mapping[str, Any]) -> None:
        """Replace the provider's live fault profile."""
        self._call(lambda farm: farm.set_faults(provider, profile))

    def reset(self) -> None:
        """Zero counters, empty token buckets, restart the scenario clock."""
        self._call(lambda farm: farm.reset())

    def jobs(self, provider: str) -> list[FarmJob]:
        """The provider's queued jobs (queue APIs only), oldest first."""
        return self._call(lambda farm: list(farm.state.jobs[provider]))

    def now(self) -> float:
        """The farm's monotonic clock (what job states are computed against)."""
        return self._call(lambda farm: farm.state.clock.now())

    # --- plumbing -----------------------------------------------------------------------------

    def _running(self) -> Farm:
        if self._farm is None:
            raise RuntimeError("the kit farm is not running; use `with KitFarm(...)`")
        return self._farm

    def _call(self, function: Callable[[Farm], T]) -> T:
        farm = self._running()

        async def run() -> T:
            return function(farm)

        return self._await(run())

    def _await(self, coroutine: Any) -> Any:
        if self._loop is None:
            raise RuntimeError("the kit farm is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT_S)
