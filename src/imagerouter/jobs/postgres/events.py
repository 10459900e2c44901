"""The event log on PostgreSQL (:class:`~imagerouter.jobs.store.EventLog`): reading events
back, and subscribing to every replica's through the :mod:`~imagerouter.jobs.postgres.feed`.
Events are written by the engine at the end of each transaction
(:meth:`~imagerouter.jobs.postgres.engine.GroupCommit.write_events`)."""

from __future__ import annotations

from collections.abc import Callable

from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.rows import EVENT_COLUMNS, event_from_row
from imagerouter.jobs.store import EventListener
from imagerouter.jobs.types import JobEvent

__all__ = ["PostgresEventLog"]


class PostgresEventLog(PostgresBase):
    """Reading events back, and subscribing to new ones."""

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` (on the loop, after commit) with each batch of new events, this
        replica's and every other's, in id order."""
        self._feed.listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._feed.listeners:
                self._feed.listeners.remove(listener)

        return unsubscribe

    def subscribe_local(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` (after commit) with the events this store instance wrote only:
        for per-replica counters (metrics, logs) that ``subscribe`` would count once per
        replica."""
        self._feed.local_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._feed.local_listeners:
                self._feed.local_listeners.remove(listener)

        return unsubscribe

    async def events_since(
        self, account_id: str | None, job_id: str | None, after_id: int, limit: int = 500
    ) -> list[JobEvent]:
        """Events after ``after_id``, oldest first, of one account and/or job. Ids commit in
        order, so nothing below the last id returned can still appear."""
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 "
            "AND ($2::text IS NULL OR account_id = $2) AND ($3::text IS NULL OR job_id = $3) "
            "ORDER BY id LIMIT $4",
            after_id,
            account_id,
            job_id,
            limit,
        )
        return [event_from_row(row) for row in rows]

    async def last_event_id(self, account_id: str | None = None) -> int:
        """The newest event's id (of one account), 0 if none."""
        if account_id is None:
            return int(await self._pool.fetchval("SELECT last_id FROM event_clock"))
        found = await self._pool.fetchval(
            "SELECT max(id) FROM events WHERE account_id = $1", account_id
        )
        return int(found or 0)
