"""Group commit on PostgreSQL: writes from concurrent requests share transactions, and each
transaction ends by writing its events in commit order.

* **Batches.** :meth:`GroupCommit.batched` queues an operation (a coroutine function of a
  connection and a :class:`Tx`); up to ``parallel`` drainers each take up to ``batch_max``
  queued operations and run them one after another in one transaction. An operation's own
  refusal (a :class:`~imagerouter.jobs.errors.StoreError`: a short wallet, a finished job) is
  raised before it writes, or inside a savepoint, so it costs the batch nothing; any other
  error rolls the batch back and its operations run again one by one. :meth:`~GroupCommit.solo`
  runs an operation in a transaction of its own; :meth:`~GroupCommit.pipelined` hands items to
  a caller-supplied batch runner (plain submits: one pipelined ``executemany``).
* **No deadlocks by construction.** A batch runs its operations sorted by account, and within
  an account first those that lock the account row (as their first statement,
  :func:`lock_account`: refunds, cancels, releases, grants) and then those that lock only
  their job's row (completions); so batches take account rows in one order and a job's row
  only within its account's turn. Multi-row operations elsewhere never wait on a row
  (``FOR UPDATE SKIP LOCKED``), and the event counter is every transaction's last lock. A
  deadlock or serialization failure reported anyway is retried.
* **Event ids in commit order.** Every transaction that wrote events takes their ids last,
  from a one-row counter, in one statement (:data:`WRITE_EVENTS`) that also inserts their
  webhook deliveries and sends the ``NOTIFY`` the other replicas' feeds follow; the counter's
  row lock is held until commit, so ids are dense and commit in id order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from imagerouter.jobs.errors import StoreError
from imagerouter.jobs.ids import new_delivery_id
from imagerouter.jobs.postgres.connection import GuardedPool
from imagerouter.jobs.postgres.feed import EventFeed
from imagerouter.jobs.rows import dumps, event_data
from imagerouter.jobs.rules import DeliveryTarget
from imagerouter.jobs.types import JobEvent

__all__ = ["WRITE_EVENTS", "GroupCommit", "Op", "PendingEvent", "Tx", "lock_account", "notify_body"]

log = logging.getLogger(__package__)

#: The tail of every transaction that wrote events, in one statement: take the ids from the
#: counter (its row lock is held until commit), insert the events and their webhook
#: deliveries, and NOTIFY the other replicas (delivered at commit) with ``first last events``:
#: the events as a JSON array without their ids (``first`` + index), or nothing if too long.
WRITE_EVENTS = (
    "WITH c AS (UPDATE event_clock SET last_id = last_id + $1 "
    "RETURNING last_id - $1 AS base, last_id), "
    "e AS (INSERT INTO events (id, job_id, account_id, type, created_at, data) "
    "SELECT c.base + u.n, u.job_id, u.account_id, u.type, u.created_at, u.data FROM c, "
    "unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::jsonb[]) "
    "WITH ORDINALITY AS u(job_id, account_id, type, created_at, data, n)), "
    "d AS (INSERT INTO deliveries (id, job_id, account_id, event_id, event_type, url, status, "
    "next_attempt_at, last_error, created_at, updated_at) "
    "SELECT v.id, u.job_id, u.account_id, c.base + v.n, u.type, v.url, v.status, v.next_at, "
    "v.last_error, u.created_at, u.created_at FROM c, "
    "unnest($7::text[], $8::bigint[], $9::text[], $10::text[], $11::float8[], $12::text[]) "
    "AS v(id, n, url, status, next_at, last_error) "
    "JOIN unnest($2::text[], $3::text[], $4::text[], $5::float8[]) "
    "WITH ORDINALITY AS u(job_id, account_id, type, created_at, n) ON u.n = v.n "
    "ON CONFLICT (event_id) DO NOTHING) "
    "SELECT c.last_id FROM c, "
    "LATERAL (SELECT pg_notify($13, (c.base + 1)::text || ' ' || c.last_id::text || ' ' "
    "|| $14::text)) AS note"
)
_NOTIFY_MAX = 7000
#: Errors after which a transaction is simply tried again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_MAX_TRIES = 5


@dataclass(slots=True)
class PendingEvent:
    """An event an operation wrote; its id is taken when the transaction commits."""

    job_id: str
    account_id: str
    type: str
    data: dict[str, Any]
    created_at: float
    #: Where the event's webhook goes, when it enqueues one.
    delivery: DeliveryTarget | None = None


@dataclass(slots=True)
class Tx:
    """What one operation hands its transaction besides its own rows: events."""

    events: list[PendingEvent] = field(default_factory=list)

    def event(
        self,
        job_id: str,
        account_id: str,
        status: str,
        now: float,
        delivery: DeliveryTarget | None = None,
        **data: Any,
    ) -> None:
        """The job's event for ``status`` (its ``data`` from ``data``), and its webhook's
        target when it enqueues one."""
        self.events.append(
            PendingEvent(
                job_id, account_id, f"job.{status}", event_data(status, **data), now, delivery
            )
        )


#: An operation: a coroutine function of the transaction's connection and its :class:`Tx`.
Op = Callable[[asyncpg.Connection, Tx], Awaitable[Any]]
#: Runs a batch of pipelined items, resolving each one's future.
BatchRunner = Callable[[list[tuple[Any, asyncio.Future[Any]]]], Awaitable[None]]


@dataclass(slots=True)
class _Queued:
    fn: Op
    key: str
    future: asyncio.Future[Any]
    #: Run in a savepoint inside a batch: the op may write before it raises a StoreError.
    savepoint: bool = False

    def resolve(self, error: BaseException | None, value: Any = None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)


@dataclass(slots=True)
class _Lane:
    items: collections.deque[tuple[Any, asyncio.Future[Any]]] = field(
        default_factory=collections.deque
    )
    drainers: int = 0


async def lock_account(conn: asyncpg.Connection, account_id: str) -> bool:
    """Lock the account's row (every batched op that locks it does so first); False if none."""
    found = await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
    return found is not None


def notify_body(pending: list[PendingEvent]) -> str:
    """The events of a NOTIFY (ids left out: ``first`` + index), or "" when too long."""
    body = dumps([[p.job_id, p.account_id, p.type, p.created_at, p.data] for p in pending])
    return body if len(body.encode()) <= _NOTIFY_MAX else ""


class GroupCommit:
    """Runs a store's writes in shared transactions; see the module doc.

    Args:
        feed: told of every commit's events.
        channel: the NOTIFY channel.
        batch_max: most operations sharing one transaction.
        parallel: most write transactions running at once.
    """

    def __init__(self, feed: EventFeed, channel: str, *, batch_max: int, parallel: int) -> None:
        self.feed, self.channel = feed, channel
        self.batch_max, self.parallel = batch_max, parallel
        #: The store's pool, set when it opens.
        self.pool: GuardedPool = None  # type: ignore[assignment]
        #: Transactions committed and operations they ran, for the benchmark and tests.
        self.commits = 0
        self.ops = 0
        self._queue: collections.deque[_Queued] = collections.deque()
        self._drainers = 0
        self._lanes: dict[Hashable, _Lane] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    async def batched(
        self, account_id: str, fn: Op, *, savepoint: bool = False, locks_account: bool = True
    ) -> Any:
        """Run ``fn`` in a shared transaction. A batch runs its ops by account, and within an
        account those that lock the account row (``locks_account``: they do so first) before
        those that only lock a job row; see the module doc for why this cannot deadlock.

        ``fn`` must raise a StoreError only before it writes anything, unless ``savepoint``.
        """
        key = f"{account_id}\x00{'a' if locks_account else 'b'}"
        queued = _Queued(fn, key, asyncio.get_running_loop().create_future(), savepoint)
        self._queue.append(queued)
        if self._drainers < self.parallel:
            self._drainers += 1
            self.spawn(self._drain())
        return await queued.future

    async def solo(self, fn: Op) -> Any:
        """Run ``fn`` in a transaction of its own (still in a task: a cancelled caller does not
        cut a transaction in half)."""
        queued = _Queued(fn, "", asyncio.get_running_loop().create_future())
        self.spawn(self._run_one(queued))
        return await queued.future

    async def pipelined(
        self, run_batch: BatchRunner, item: Any, *, parallel: int | None = None
    ) -> Any:
        """Hand ``item`` to ``run_batch``, which gets up to ``batch_max`` items at a time (at
        most ``parallel`` batches at once, the engine's own by default) and resolves each
        one's future; what it resolved this item's to. ``run_batch`` runs its own
        transaction, with :meth:`write_events` and :meth:`committed`."""
        lane = self._lanes.setdefault(run_batch, _Lane())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lane.items.append((item, future))
        if lane.drainers < (parallel or self.parallel):
            lane.drainers += 1
            self.spawn(self._drain_lane(lane, run_batch))
        return await future

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` as a task that :meth:`aclose` waits for."""
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait until every queued write has run."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._queue:
                count = min(len(self._queue), self.batch_max)
                ops = sorted((self._queue.popleft() for _ in range(count)), key=lambda o: o.key)
                if len(ops) == 1 or not await self._run_batch(ops):
                    for op in ops:
                        await self._run_one(op)
        finally:
            self._drainers -= 1

    async def _drain_lane(self, lane: _Lane, run_batch: BatchRunner) -> None:
        try:
            while lane.items:
                count = min(len(lane.items), self.batch_max)
                batch = [lane.items.popleft() for _ in range(count)]
                try:
                    await run_batch(batch)
                except Exception as exc:  # e.g. no connection: every item gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            lane.drainers -= 1

    async def _run_batch(self, ops: list[_Queued]) -> bool:
        """Run ``ops`` in one transaction, then their events, then commit; resolve them.

        An op's StoreError is its own answer; any other error rolls the whole batch back and
        returns False (the caller then runs each op alone).
        """
        outcomes: list[tuple[_Queued, BaseException | None, Any]] = []
        pending: list[PendingEvent] = []
        try:
            with self._abandoned_on_error() as events:
                async with self.pool.acquire() as conn, conn.transaction():
                    for op in ops:
                        tx = Tx()
                        try:
                            if op.savepoint:
                                async with conn.transaction():
                                    value = await op.fn(conn, tx)
                            else:
                                value = await op.fn(conn, tx)
                        except StoreError as exc:
                            outcomes.append((op, exc, None))
                            continue
                        outcomes.append((op, None, value))
                        pending.extend(tx.events)
                    if pending:
                        events.extend(await self.write_events(conn, pending))
        except Exception as exc:
            log.info("a batch of %d writes is retried one by one: %r", len(ops), exc)
            return False
        self.committed(events, len(ops))
        for op, error, value in outcomes:
            op.resolve(error, value)
        return True

    async def _run_one(self, op: _Queued) -> None:
        """Run one op in its own transaction (again after a deadlock or serialization
        failure); resolve it."""
        for attempt in range(1, _MAX_TRIES + 1):
            try:
                with self._abandoned_on_error() as events:
                    async with self.pool.acquire() as conn, conn.transaction():
                        tx = Tx()
                        value = await op.fn(conn, tx)
                        if tx.events:
                            events.extend(await self.write_events(conn, tx.events))
            except _RETRYABLE as exc:
                if attempt < _MAX_TRIES:
                    log.info("transaction retried (%d): %s", attempt, exc)
                    continue
                op.resolve(exc)
                return
            except Exception as exc:
                op.resolve(exc)
                return
            self.committed(events, 1)
            op.resolve(None, value)
            return

    async def write_events(
        self, conn: asyncpg.Connection, pending: list[PendingEvent]
    ) -> list[JobEvent]:
        """Take ids for ``pending`` under the counter's lock, insert them and their webhook
        deliveries, and notify the other replicas (delivered at commit). The last statement
        of a transaction; the feed is told of the events at once (:meth:`EventFeed.writing`),
        and then of the commit (:meth:`committed`) or its failure (``EventFeed.abandoned``)."""
        n = len(pending)
        deliveries = [
            (i + 1, p.delivery, p) for i, p in enumerate(pending) if p.delivery is not None
        ]
        last = await conn.fetchval(
            WRITE_EVENTS,
            n,
            [p.job_id for p in pending],
            [p.account_id for p in pending],
            [p.type for p in pending],
            [p.created_at for p in pending],
            [p.data for p in pending],
            [new_delivery_id(p.created_at) for _, _, p in deliveries],
            [i for i, _, _ in deliveries],
            [target.url for _, target, _ in deliveries],
            [target.status for _, target, _ in deliveries],
            [target.due_at(p.created_at) for _, target, p in deliveries],
            [target.disabled_reason for _, target, _ in deliveries],
            self.channel,
            notify_body(pending),
        )
        first = last - n + 1
        events = [
            JobEvent(first + i, p.job_id, p.account_id, p.type, p.created_at, p.data)
            for i, p in enumerate(pending)
        ]
        self.feed.writing(events)
        return events

    @contextlib.contextmanager
    def _abandoned_on_error(self) -> Iterator[list[JobEvent]]:
        """A list for the events a transaction writes; if the transaction fails (or its
        commit is in doubt), the feed is told they may never come (:meth:`EventFeed.abandoned`)."""
        events: list[JobEvent] = []
        try:
            yield events
        except BaseException:
            self.feed.abandoned(events)
            raise

    def committed(self, events: list[JobEvent], ops: int) -> None:
        """Count a committed transaction of ``ops`` operations and publish its events."""
        self.commits += 1
        self.ops += ops
        self.feed.committed(events)
