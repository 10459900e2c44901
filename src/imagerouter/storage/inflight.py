"""The writes a storage backend has running in its thread pool, by key.

A pool thread goes on writing after the coroutine that started it was cancelled: the
coroutine's ``await`` ends at once, the file or object lands a moment later. A delete that
should leave nothing behind (a job canceled while its images were being stored) must wait for
those writes first, or the write lands after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterable
from typing import Any

__all__ = ["WritesInFlight"]


class WritesInFlight:
    """Each key's writes still running in a pool: :meth:`track` one when it is handed to the
    pool, :meth:`settle` to wait until every write of some keys has ended."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[asyncio.Future[Any]]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def track(self, keys: Iterable[str], work: concurrent.futures.Future[Any]) -> None:
        """``work`` (a pool's future) writes ``keys``; it is forgotten once it has ended,
        however it ended (its result is its caller's business).

        The caller awaits a future of its own over ``work``, not this one: a cancelled
        caller's future is cancelled at once, whether or not the pool is still writing, and
        this one must stay pending until the write has really ended."""
        ended = asyncio.wrap_future(work)
        held = list(keys)
        for key in held:
            self._by_key.setdefault(key, set()).add(ended)
        ended.add_done_callback(lambda _: self._forget(held, ended))

    def _forget(self, keys: list[str], ended: asyncio.Future[Any]) -> None:
        if not ended.cancelled():
            ended.exception()  # seen: the writer's own future reports it
        for key in keys:
            running = self._by_key.get(key)
            if running is not None:
                running.discard(ended)
                if not running:
                    del self._by_key[key]

    async def settle(self, keys: Iterable[str]) -> None:
        """Wait until every write of ``keys`` running now has ended (never raising for how
        they ended)."""
        running = {future for key in keys for future in self._by_key.get(key, ())}
        if running:
            await asyncio.wait(running)
