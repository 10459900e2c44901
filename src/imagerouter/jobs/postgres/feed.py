"""The LISTEN/NOTIFY event feed: every committed event, of every replica, to this store's
``subscribe`` listeners, once each and in id order.

Each committing transaction sends ``NOTIFY`` with its id range and, when they fit in the
payload, its events (:mod:`~imagerouter.jobs.postgres.engine`). The feed keeps one dedicated
``LISTEN`` connection and publishes a notification's events when they follow the last event
published; otherwise (a gap, a long batch, a reconnect, or every ``poll_interval_s`` as a
backstop) it reads the events table after the last one published. Ids commit in order, so
reading "after the last one" misses nothing.

This store's own events reach its ``subscribe_local`` listeners no later than its
``subscribe`` listeners, as on SQLite (the metrics rely on it: they count a job's end locally,
and forget through ``subscribe`` the jobs another replica ended). A commit's own NOTIFY (or a
read of the table) often arrives before the committing task is told of its commit, so the
events a transaction wrote are announced (:meth:`EventFeed.writing`) before it commits, and
whichever comes first, their publication or :meth:`EventFeed.committed`, tells the local
listeners. The one exception is a batch of plain submits (one statement, whose ids are known
only once it committed): their ``job.queued`` events may reach ``subscribe`` first.

The same connection listens on the keys channel: each revoking transaction sends
``NOTIFY`` with the key's id (:meth:`~imagerouter.jobs.postgres.accounts.PostgresAccounts.
revoke_api_key`), handed to the revocation listeners at once. Notifications sent while the
connection was lost are gone, so after a reconnect they are told ``None`` (forget every key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from imagerouter.jobs.postgres.connection import GuardedPool
from imagerouter.jobs.rows import EVENT_COLUMNS, event_from_row
from imagerouter.jobs.store import EventListener, PeerListener, RevocationListener
from imagerouter.jobs.types import JobEvent

__all__ = ["EventFeed"]

log = logging.getLogger(__package__)


@dataclass(slots=True)
class _Writing:
    """The events of one of this store's transactions whose commit it has not yet been told
    of, and the last of them already told to the local listeners."""

    events: Sequence[JobEvent]
    told: int


def _same(found: JobEvent | None, mine: JobEvent) -> bool:
    """``found`` (published) is ``mine`` (written): an id alone is not enough, since ids a
    rolled-back transaction took are taken again by the next one."""
    return found is not None and (found.job_id, found.type) == (mine.job_id, mine.type)


class EventFeed:
    """Publishes every committed event, of every replica, to this store's listeners: once
    each, in id order. Local commits are published at once when they follow the last event
    published; anything else (another replica's commit, told by NOTIFY, or found by the
    periodic check) is read from the events table.

    Args:
        dsn: where to open the ``LISTEN`` connection.
        connect_kwargs: asyncpg options of that connection.
        channel: the NOTIFY channel of the store's schema.
        poll_interval_s: how often new events are looked for without a notification.
        keys_channel: the NOTIFY channel of key revocations (payload: the key's id).
        peers_channel: the NOTIFY channel of peer messages (payload: the message).
    """

    def __init__(
        self,
        dsn: str,
        connect_kwargs: dict[str, Any],
        channel: str,
        poll_interval_s: float,
        keys_channel: str,
        peers_channel: str,
    ) -> None:
        self.dsn, self.connect_kwargs, self.channel = dsn, connect_kwargs, channel
        self.keys_channel, self.peers_channel = keys_channel, peers_channel
        self.poll_interval_s = poll_interval_s
        self.listeners: list[EventListener] = []
        self.local_listeners: list[EventListener] = []
        self.revocation_listeners: list[RevocationListener] = []
        self.peer_listeners: list[PeerListener] = []
        #: The id of the last event handed to the listeners.
        self.published = 0
        #: This store's transactions that wrote events, by their first event's id, until
        #: they are told committed or abandoned.
        self._writing: dict[int, _Writing] = {}
        #: Notifications received and those whose events they carried, catch-up reads done,
        #: listener reconnects (for tests and metrics).
        self.notified = 0
        self.carried = 0
        self.reads = 0
        self.reconnects = 0
        self._pool: GuardedPool | None = None
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def listener_pid(self) -> int | None:
        """The server process id of the ``LISTEN`` connection, None while there is none (for
        tests that cut it)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn.get_server_pid()

    async def start(self, pool: GuardedPool) -> None:
        """Listen, then follow the events committed from now on (read through ``pool``)."""
        self._pool = pool
        await self._listen()  # first: an event committed after the read below is notified
        last = await pool.fetchval("SELECT last_id FROM event_clock")
        self.published = max(self.published, last)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-event-feed")

    async def aclose(self) -> None:
        """Stop following and close the ``LISTEN`` connection."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._unlisten()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn, **self.connect_kwargs)
        try:
            await conn.add_listener(self.channel, self._notified)
            await conn.add_listener(self.keys_channel, self._key_revoked)
            await conn.add_listener(self.peers_channel, self._peer_message)
            conn.add_termination_listener(lambda _conn: self._wake.set())
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _unlisten(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
            if not conn.is_closed():
                conn.terminate()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """A commit's ``first last [events]``: publish the events carried when they follow
        the last one published, else read what is missing from the table."""
        self.notified += 1
        try:
            first_text, last_text, *rest = payload.split(" ", 2)
            first, last = int(first_text), int(last_text)
        except ValueError:
            self._wake.set()
            return
        if last <= self.published:
            return  # this store's own commit, or already read
        if first == self.published + 1 and rest and rest[0]:
            try:
                carried = [JobEvent(first + i, *row) for i, row in enumerate(json.loads(rest[0]))]
            except (ValueError, TypeError):
                carried = []
            if len(carried) == last - first + 1:
                self.carried += 1
                self._publish(carried)
                return
        self._wake.set()

    def _key_revoked(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.revoked(payload or None)

    def _peer_message(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for listener in list(self.peer_listeners):
            try:
                listener(payload)
            except Exception:
                log.exception("peer message listener %r failed", listener)

    def revoked(self, key_id: str | None) -> None:
        """Tell the revocation listeners that ``key_id`` was revoked (None: maybe some were
        missed)."""
        for listener in list(self.revocation_listeners):
            try:
                listener(key_id)
            except Exception:
                log.exception("key revocation listener %r failed", listener)

    def writing(self, events: Sequence[JobEvent]) -> None:
        """Events (ids ascending) a transaction of this store wrote, before it commits: if
        they are published before :meth:`committed` is called, the local listeners hear of
        them first. Each is followed by :meth:`committed` or :meth:`abandoned`."""
        if events:
            self._writing[events[0].id] = _Writing(events, events[0].id - 1)

    def abandoned(self, events: Sequence[JobEvent]) -> None:
        """The transaction that wrote ``events`` failed, or its commit is in doubt: whatever
        it committed is read from the table (the local listeners may not hear of it)."""
        if events and self._writing.pop(events[0].id, None) is not None:
            self._wake.set()

    def committed(self, events: Sequence[JobEvent]) -> None:
        """Events this store just committed (ids ascending)."""
        if not events:
            return
        writing = self._writing.pop(events[0].id, None)
        told = writing.told if writing is not None else events[0].id - 1
        self._tell_local([event for event in events if event.id > told])
        if events[0].id == self.published + 1:
            self._publish(events)
        elif events[-1].id > self.published:
            self._wake.set()  # another replica's events came in between: read them all

    def _tell_local(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        for listener in list(self.local_listeners):
            try:
                listener(events)
            except Exception:
                log.exception("job event listener %r failed", listener)

    def _tell_own_first(self, fresh: Sequence[JobEvent]) -> None:
        """The local listeners hear of this store's events among ``fresh`` (about to be
        published) whose commit it has not yet been told of."""
        by_id = {event.id: event for event in fresh}
        for first in sorted(self._writing):
            writing = self._writing[first]
            early: list[JobEvent] = []
            for mine in writing.events:
                if mine.id <= writing.told:
                    continue
                if not _same(by_id.get(mine.id), mine):
                    break
                early.append(mine)
            if early:
                writing.told = early[-1].id
                self._tell_local(early)

    def _publish(self, events: Sequence[JobEvent]) -> None:
        fresh = [e for e in events if e.id > self.published]
        if not fresh:
            return
        if self._writing:
            self._tell_own_first(fresh)
        self.published = fresh[-1].id
        for listener in list(self.listeners):
            try:
                listener(fresh)
            except Exception:
                log.exception("job event listener %r failed", listener)

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()
            if self._closing:
                return
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._unlisten()
                    await self._listen()
                    self.reconnects += 1
                    log.info("event listener reconnected")
                    self.revoked(None)  # revocations notified while it was down are lost
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading new job events failed: %s", exc)
                await asyncio.sleep(min(self.poll_interval_s, 0.5))
                self._wake.set()

    async def catch_up(self) -> None:
        """Publish every committed event after the last one published."""
        pool = self._pool
        assert pool is not None, "the feed is not started"
        last = await pool.fetchval("SELECT last_id FROM event_clock")
        while last > self.published:
            self.reads += 1
            rows = await pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 ORDER BY id LIMIT 1000",
                self.published,
            )
            if not rows:
                return
            self._publish([event_from_row(row) for row in rows])
