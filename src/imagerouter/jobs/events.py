"""Waiting on job events in-process: the hub the store's ``subscribe`` hook feeds.

The store calls :meth:`EventHub.publish` after each commit that wrote events. Code that wants
to react (the OpenAI-compatible endpoint waiting for its job, SSE streams, webhook senders)
waits here instead of polling; a slow poll of the store stays as the fallback for events
written by another process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from imagerouter.jobs.store import EventLog, JobQueue
from imagerouter.jobs.types import Job, JobEvent

__all__ = ["EventHub"]


class EventHub:
    """Wakes in-process waiters when new job events are committed."""

    def __init__(self) -> None:
        self.last_id = 0
        # made by the first waiter after a publish, so a publish nobody waits for makes none
        self._changed: asyncio.Event | None = None
        self._final: dict[str, set[asyncio.Future[JobEvent]]] = {}
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self, store: EventLog) -> None:
        """Subscribe to ``store``'s events."""
        self._unsubscribe = store.subscribe(self.publish)

    def close(self) -> None:
        """Unsubscribe and cancel every waiter."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for futures in self._final.values():
            for future in futures:
                future.cancel()
        self._final.clear()

    def publish(self, events: Sequence[JobEvent]) -> None:
        """Record ``events`` and wake whoever waits for them."""
        for event in events:
            self.last_id = max(self.last_id, event.id)
            if event.final:
                for future in self._final.pop(event.job_id, ()):
                    if not future.done():
                        future.set_result(event)
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def wait_new(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` seconds for any new event; True if one came."""
        changed = self._changed
        if changed is None:
            changed = self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), wait_s)
            return True
        return False

    async def wait_final(
        self,
        store: JobQueue,
        account_id: str,
        job_id: str,
        *,
        wait_s: float,
        poll_s: float = 1.0,
    ) -> Job | None:
        """The job once it is final (waiting up to ``wait_s`` seconds), else None.

        Registers for the job's final event before reading the store, so that no event can
        slip between the read and the wait; re-reads every ``poll_s`` for other processes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        future: asyncio.Future[JobEvent] = loop.create_future()
        self._final.setdefault(job_id, set()).add(future)
        try:
            while True:
                job = await store.get_job(account_id, job_id)
                if job is None or job.final:
                    return job
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(poll_s, remaining))
        finally:
            waiters = self._final.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._final[job_id]
            future.cancel()
