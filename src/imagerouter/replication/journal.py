"""The windows a process was given, kept in the job store so that they outlive it.

A provider's Retry-After puts its key in a cooldown, its spent x-ratelimit budget holds it
off until the reset, a webhook receiver's refusals pause it. All lived only in the process's
memory: a server restarted within a window (a deploy, a
crash, ``kill``) forgot it and called the provider at once (a black-box pass: 11 calls into a
30 s window, the job handed back at shutdown and ten new ones). :class:`WindowJournal` writes
each window this process starts to the store (:class:`~imagerouter.jobs.store.WindowStore`),
and when a process starts on the store it applies those still running, before any job runs.
On PostgreSQL that is every replica starting on the schema; with Redis the windows are shared
live too (:class:`~imagerouter.replication.RedisState`), and the journal is what a fleet that
restarts together, Redis included, still has.

Windows only lengthen (the store keeps the latest end of each), so the order and duplicates of
writes do not matter. The writes go in the background, the latest of each window first; one
that fails is logged once for a run of failures and dropped (a window is a courtesy to the
provider that the next 429 re-teaches, never a reason to stop serving).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from imagerouter.lifecycle import AsyncResource
from imagerouter.replication.connection import replica_name
from imagerouter.replication.mirror import BudgetWatch, Mirror
from imagerouter.replication.receivers import ReceiverPauses
from imagerouter.replication.records import (
    BudgetRecord,
    CooldownRecord,
    ReceiverPauseRecord,
    Record,
    decode,
    encode,
)
from imagerouter.resilience.cooldowns import CooldownStarted
from imagerouter.transport.wire import Origin, origin_text
from imagerouter.webhooks.targets import PauseEarned, TargetLimits

if TYPE_CHECKING:
    from imagerouter.jobs.store import WindowStore
    from imagerouter.router import Router

__all__ = ["WindowJournal"]

log = logging.getLogger(__name__)

#: How long closing waits for the windows still to be written.
_FLUSH_TIMEOUT_S = 2.0


class WindowJournal(AsyncResource):
    """Keeps this process's Retry-After cooldowns, spent budgets and receiver pauses in the
    job store, and
    applies the running ones kept there when it starts (``async with``, or start/aclose)."""

    def __init__(
        self, router: Router, store: WindowStore, receivers: TargetLimits | None = None
    ) -> None:
        self.router = router
        self.store = store
        self.replica_id = replica_name()
        self.mirror = Mirror(router, self.replica_id)
        self.pauses = (
            None if receivers is None else ReceiverPauses(receivers, self.replica_id, router.clock)
        )
        self.budgets = BudgetWatch(self.mirror, self._queue)
        #: Windows applied at start (kept by an earlier process), written, and failed writes.
        self.restored = 0
        self.written = 0
        self.failures = 0
        self._box: dict[tuple[str, str], Record] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Apply the running windows the store keeps, then keep every window started here."""
        for text in await self.store.live_windows():
            record = decode(text)
            if isinstance(record, ReceiverPauseRecord):
                applied = self.pauses is not None and self.pauses.apply(record)
            else:
                applied = record is not None and self.mirror.apply(record)
            self.restored += bool(applied)
        if self.restored:
            log.info("windows restored from the job store: %d", self.restored)
        for cooldowns in self.mirror.cooldown_tables():
            cooldowns.on_start.add(self._on_cooldown)
        self.router.attempts.add(self.budgets.on_attempt)
        if self.pauses is not None:
            self.pauses.limits.on_pause.add(self._on_pause)
        self._task = asyncio.create_task(self._writer(), name="window-journal")

    async def aclose(self) -> None:
        """Stop listening, write what is queued (briefly), stop the writer."""
        if self._task is None:
            return
        for cooldowns in self.mirror.cooldown_tables():
            cooldowns.on_start.remove(self._on_cooldown)
        self.router.attempts.remove(self.budgets.on_attempt)
        if self.pauses is not None:
            self.pauses.limits.on_pause.remove(self._on_pause)
        self._closing = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), _FLUSH_TIMEOUT_S)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _on_cooldown(self, event: CooldownStarted) -> None:
        self._queue(self.mirror.cooldown_started(event))

    def _on_pause(self, event: PauseEarned) -> None:
        # Any pause, a 429's too: it is this process's successor that must hold off.
        offset = self.router.clock.wall() - asyncio.get_running_loop().time()
        name = origin_text(cast(Origin, event.key))
        self._queue(
            ReceiverPauseRecord(name, event.until + offset, self.replica_id, event.since + offset)
        )

    def _queue(self, record: CooldownRecord | BudgetRecord | ReceiverPauseRecord | None) -> None:
        if record is None or self._closing:
            return
        self._box[(record.kind, record.name)] = record
        self._wake.set()

    async def _writer(self) -> None:
        failing = False
        while True:
            if not self._box:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            key = next(iter(self._box))
            record = self._box.pop(key)
            until = cast(CooldownRecord | BudgetRecord | ReceiverPauseRecord, record).until
            try:
                await self.store.keep_window(record.kind, record.name, until, encode(record))
            except Exception as exc:  # the store is away: the next 429 teaches it again
                self.failures += 1
                if not failing:
                    log.warning("keeping the %s of %s failed: %s", record.kind, record.name, exc)
                failing = True
                continue
            failing = False
            self.written += 1
