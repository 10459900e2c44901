"""The event log on SQLite (:class:`~imagerouter.jobs.store.EventLog`): one process's store,
so its subscribers are told of its own commits only, which are all the commits there are."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from imagerouter.jobs.rows import EVENT_COLUMNS, dumps, event_data, event_from_row, loads
from imagerouter.jobs.sqlite.base import SQLiteBase, execute_rows
from imagerouter.jobs.store import EventListener
from imagerouter.jobs.types import JobEvent

__all__ = ["INSERT_EVENTS", "SQLiteEventLog", "write_event", "write_events"]

#: The head of an INSERT of event rows ``(job_id, account_id, type, data, created_at)``.
INSERT_EVENTS = "INSERT INTO events (job_id, account_id, type, data, created_at) VALUES "


def write_event(
    conn: sqlite3.Connection,
    job_id: str,
    account_id: str,
    status: str,
    now: float,
    **data: Any,
) -> JobEvent:
    """Insert the job's event for ``status`` (its ``data`` from ``data``); the event."""
    return write_events(conn, status, [(job_id, account_id, data, now)])[0]


def write_events(
    conn: sqlite3.Connection,
    status: str,
    jobs: Sequence[tuple[str, str, dict[str, Any], float]],
) -> list[JobEvent]:
    """:func:`write_event` for many jobs moving to the same ``status``, each ``(job id,
    account id, data, time)``, by multi-row INSERTs; the events, in that order."""
    if not jobs:
        return []
    kind = f"job.{status}"
    payloads = [event_data(status, **data) for _, _, data, _ in jobs]
    rows = [
        value
        for (job_id, account_id, _, at), payload in zip(jobs, payloads, strict=True)
        for value in (job_id, account_id, kind, dumps(payload), at)
    ]
    execute_rows(conn, INSERT_EVENTS, "(?, ?, ?, ?, ?)", rows)
    # AUTOINCREMENT under the store's write lock: the rows took consecutive ids, in order
    first = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(jobs) + 1
    return [
        JobEvent(first + n, job_id, account_id, kind, at, payload)
        for n, ((job_id, account_id, _, at), payload) in enumerate(zip(jobs, payloads, strict=True))
    ]


class SQLiteEventLog(SQLiteBase):
    """Reading events back, and subscribing to new ones."""

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` (on the loop, after commit) with each batch of new events."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def subscribe_local(self, listener: EventListener) -> Callable[[], None]:
        """The same as :meth:`subscribe`: one SQLite store is one process's."""
        return self.subscribe(listener)

    async def events_since(
        self, account_id: str | None, job_id: str | None, after_id: int, limit: int = 500
    ) -> list[JobEvent]:
        """Events after ``after_id``, oldest first, of one account and/or job."""
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? "
            + ("AND account_id = ? " if account_id is not None else "")
            + ("AND job_id = ? " if job_id is not None else "")
            + "ORDER BY id LIMIT ?"
        )
        args = (
            after_id,
            *((account_id,) if account_id is not None else ()),
            *((job_id,) if job_id is not None else ()),
            limit,
        )
        rows = await self.thread.run(lambda conn: conn.execute(sql, args).fetchall())
        return [event_from_row(row, loads) for row in rows]

    async def last_event_id(self, account_id: str | None = None) -> int:
        """The newest event's id (of one account), 0 if none."""
        sql = "SELECT coalesce(max(id), 0) FROM events" + (
            " WHERE account_id = ?" if account_id is not None else ""
        )
        args = (account_id,) if account_id is not None else ()
        row = await self.thread.run(lambda conn: conn.execute(sql, args).fetchone())
        return int(row[0])
