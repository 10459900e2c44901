"""What every part of the SQLite store stands on: the connection thread, the clock, the event
listeners and the lifecycle; and :func:`run_steps`, which runs a shared rule of
:mod:`imagerouter.jobs.rules` on the thread's connection."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.jobs.common import StoreBase
from imagerouter.jobs.errors import StorageFull
from imagerouter.jobs.rules import AUDIT_BY_STATUS, AUDIT_TOTALS
from imagerouter.jobs.sql import Steps
from imagerouter.jobs.sqlite.schema import create_schema
from imagerouter.jobs.sqlite.thread import SQLiteThread
from imagerouter.jobs.store import EventListener, RevocationListener
from imagerouter.jobs.types import DeliveryHandoff, HandedDelivery, JobEvent

__all__ = ["SQLiteBase", "execute_rows", "id_chunks", "row_counts", "run_steps"]

log = logging.getLogger(__package__)  # the backend's one logger, whichever module logs

T = TypeVar("T")

#: Emitted by a transaction that queued a webhook delivery for a claim (while a handoff is set).
_DELIVERY_QUEUED = object()


#: Most ids bound in one ``IN (…)`` list (SQLite's oldest builds allow 999 parameters).
IDS_PER_STATEMENT = 500


def id_chunks(ids: Sequence[str]) -> Iterator[tuple[Sequence[str], str]]:
    """``ids`` in slices of at most :data:`IDS_PER_STATEMENT`, each with its ``?, ?, …``
    placeholders for an ``IN (…)`` list."""
    for start in range(0, len(ids), IDS_PER_STATEMENT):
        chunk = ids[start : start + IDS_PER_STATEMENT]
        yield chunk, ", ".join("?" * len(chunk))


#: Most rows one multi-row statement takes (11 parameters an attempt row: within the 999 of
#: SQLite's oldest builds).
ROWS_PER_STATEMENT = 64


@functools.cache
def _rows_sql(head: str, row: str, count: int, tail: str) -> str:
    return head + ", ".join([row] * count) + tail


def row_counts(rows: int) -> Iterator[int]:
    """How :func:`execute_rows` splits ``rows``: the largest power of two left, at most
    :data:`ROWS_PER_STATEMENT`, until none is left (100: 64, 32, 4)."""
    while rows > 0:
        count = min(ROWS_PER_STATEMENT, 1 << (rows.bit_length() - 1))
        yield count
        rows -= count


def execute_rows(
    conn: sqlite3.Connection, head: str, row: str, params: Sequence[Any], tail: str = ""
) -> list[Any]:
    """Run ``head`` followed by ``row`` repeated once per row of ``params`` (a flat list, the
    rows' parameters one after the other) and ``tail``, in order; the rows they return. One
    statement is one step (and one release of the GIL) for all its rows, where
    ``executemany`` steps once a row.

    The statements hold a power of two of rows (:func:`row_counts`), so each ``head`` has
    seven shapes, not 64: they all stay in the connection's statement cache, and the values
    SQLite keeps bound in a cached statement after it ran add up to at most 127 rows a
    ``head`` (a job's request can be 256 KiB)."""
    width = row.count("?")
    returned: list[Any] = []
    start = 0
    for count in row_counts(len(params) // width):
        end = start + count * width
        returned += conn.execute(_rows_sql(head, row, count, tail), params[start:end])
        start = end
    return returned


def run_steps(conn: sqlite3.Connection, steps: Steps[T]) -> T:
    """Run a rule's :mod:`~imagerouter.jobs.sql` steps on ``conn`` (``:name`` parameters are
    SQLite's own); its result."""
    answer: Any = None
    try:
        while True:
            query = steps.send(answer)
            cursor = conn.execute(query.sql, query.params)
            if query.want == "value":
                row = cursor.fetchone()
                answer = None if row is None else row[0]
            elif query.want == "row":
                answer = cursor.fetchone()
            else:
                answer = None
    except StopIteration as done:
        return done.value


class SQLiteBase(StoreBase):
    """The SQLite store's state and lifecycle; the aggregates are mixins over it.

    Its arguments are :class:`~imagerouter.jobs.sqlite.store.SQLiteJobStore`'s.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        batch_max: int = 256,
        revocation_poll_s: float = 0.25,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.thread = SQLiteThread(
            path, synchronous=synchronous, batch_max=batch_max, on_commit=self._publish
        )
        self._clock = clock or MonotonicClock()
        self._listeners: list[EventListener] = []
        #: How often the revoked keys are counted while someone listens for revocations.
        self.revocation_poll_s = revocation_poll_s
        self._revocation_listeners: list[RevocationListener] = []
        self._revocation_watch: asyncio.Task[None] | None = None
        #: The revocation watch's read-only connection, opened by its first count.
        self._reader: sqlite3.Connection | None = None
        self._handoff: DeliveryHandoff | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection thread and create the schema."""
        await self.thread.start(create_schema)

    async def aclose(self) -> None:
        """Stop watching for revocations, run what is queued and stop the connection thread."""
        task, self._revocation_watch = self._revocation_watch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        await self.thread.aclose()

    async def ping(self) -> None:
        """Raise if the database does not answer. A full disk is no failure here: the ping
        answered, only the batch it shared could not commit (reads work; writes answer
        ``storage_full``)."""
        with contextlib.suppress(StorageFull):
            await self.thread.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # --- after commit --------------------------------------------------------------------------

    def hand_deliveries(self, handoff: DeliveryHandoff | None) -> None:
        """Hand the webhooks of the jobs this store completes to ``handoff`` (None: stop);
        see :class:`~imagerouter.jobs.types.DeliveryHandoff`."""
        self._handoff = handoff

    def _queued_delivery(self) -> None:
        """On the thread, in a transaction that queued a delivery for a claim: tell the
        handoff's worker once the transaction commits (without a handoff, the final event
        that queued it wakes the worker)."""
        if self._handoff is not None:
            self.thread.emit([_DELIVERY_QUEUED])

    def _publish(self, items: Sequence[Any]) -> None:
        if not items:
            return
        events: Sequence[JobEvent] = items
        handed = [item for item in items if type(item) is HandedDelivery]
        queued = any(item is _DELIVERY_QUEUED for item in items)
        if handed or queued:
            events = [item for item in items if type(item) is JobEvent]
        if events:
            self._tell(events)
        handoff = self._handoff
        if handoff is not None and (handed or queued):
            try:
                handoff.take(handed, queued)
            except Exception:
                log.exception("the delivery handoff failed")

    def _tell(self, events: Sequence[JobEvent]) -> None:
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("job event listener %r failed", listener)

    # --- for tests and tools -------------------------------------------------------------------

    async def audit(self) -> dict[str, Any]:
        """Totals that must always agree: balances against the ledger, jobs against debits."""

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            totals = {k: int(conn.execute(sql).fetchone()[0]) for k, sql in AUDIT_TOTALS.items()}
            return {**totals, "by_status": dict(conn.execute(AUDIT_BY_STATUS).fetchall())}

        return await self.thread.run(op)
