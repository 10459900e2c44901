"""A running job's progress reports, turned into stored ``job.progress`` events.

Plugins report on every poll (:meth:`~imagerouter.provider.CallContext.progress`); a 40 s job
polled every few hundred milliseconds would write hundreds of events if each became one.
:class:`ProgressRecorder` keeps only changes (a new provider, status or queue position; a new
log line alone is not one) and writes at most one event per ``min_interval_s``: a change that
comes sooner waits, and a newer one replaces it, so the last state is never lost while the job
runs. The first event waits ``first_delay_s``: a job whose provider answers within it (most
jobs, whose first poll already says the queue is done) writes no progress event at all, since
its final event, written next, says everything the progress event would have (and a store
write, an event and a stream message per job is most of what progress costs). Writing is best
effort and off the job's path: the report returns at once, one background task writes, and a
store error is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.provider import Progress

__all__ = ["ProgressRecorder", "ProgressStore"]

log = logging.getLogger(__name__)


class ProgressStore(Protocol):
    """What the recorder needs of the store."""

    async def add_progress(self, job_id: str, owner: str, data: dict[str, Any]) -> bool:
        """Write a ``job.progress`` event while ``owner`` holds the job's lease."""
        ...


class ProgressRecorder:
    """Records one job's progress reports as events; see the module doc.

    Call it (``recorder(provider, report)``, the router's ``on_progress``) from the job's
    task; :meth:`aclose` when the job is over drops whatever still waits.
    """

    def __init__(
        self,
        store: ProgressStore,
        job_id: str,
        owner: str,
        *,
        min_interval_s: float = 1.0,
        first_delay_s: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self._store, self._job_id, self._owner = store, job_id, owner
        self._min_interval_s = min_interval_s
        self._first_delay_s = first_delay_s
        self._timer: asyncio.TimerHandle | None = None
        self._clock = clock or MonotonicClock()
        self._last_key: tuple[str, str, int | None] | None = None
        self._pending: dict[str, Any] | None = None
        self._written_at: float | None = None
        self._writer: asyncio.Task[None] | None = None
        #: Events written, for tests and logs.
        self.written = 0

    def __call__(self, provider: str, report: Progress) -> None:
        """Take one report; schedule its event if it says something new."""
        key = (provider, report.status, report.queue_position)
        if key == self._last_key:
            return
        self._last_key = key
        self._pending = {
            "provider": provider,
            "provider_status": report.status,
            "queue_position": report.queue_position,
            "log": report.log,
        }
        if self._timer is not None:
            return  # the first event's wait is running; it writes the newest report
        if self._written_at is None and self._writer is None and self._first_delay_s > 0:
            self._timer = asyncio.get_running_loop().call_later(
                self._first_delay_s, self._start_writer
            )
            return
        self._start_writer()

    def _start_writer(self) -> None:
        self._timer = None
        if self._pending is not None and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(
                self._write_pending(), name=f"progress-{self._job_id}"
            )

    async def _write_pending(self) -> None:
        while self._pending is not None:
            if self._written_at is not None:
                wait = self._written_at + self._min_interval_s - self._clock.now()
                if wait > 0:
                    await asyncio.sleep(wait)
            data, self._pending = self._pending, None
            if data is None:
                return
            self._written_at = self._clock.now()
            try:
                if await self._store.add_progress(self._job_id, self._owner, data):
                    self.written += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # progress is best effort: the job goes on
                log.warning("job %s: writing a progress event failed: %r", self._job_id, exc)

    async def aclose(self) -> None:
        """Drop the report still waiting (a job over within ``first_delay_s`` wrote none);
        stop the writer (an event being written lands only
        while the job's lease is held, so never after the final event)."""
        self._pending = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
