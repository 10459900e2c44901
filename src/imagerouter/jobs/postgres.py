"""The job store on PostgreSQL (asyncpg), shared by several router replicas.

Same contract as :mod:`imagerouter.jobs.sqlite`; what is different, and why:

* **Event ids in commit order.** Every transaction that writes events takes their ids last,
  from a one-row counter (``UPDATE event_clock SET last_id = last_id + n``), and holds that
  row lock until it commits. Ids are therefore dense and commit in id order: whoever sees
  event *n* has already seen every event below *n*, on any replica, so ``events_since(after)``
  is a safe ``Last-Event-ID`` resume point. (A ``bigserial`` is not: a transaction can take
  id 10, another 11, and 11 commit first.) Only the short tail of each transaction, the
  event inserts and the commit, runs under that lock.
* **Group commit.** Writes from concurrent requests share transactions, up to
  ``batch_max`` each, a few at once: plain submits go as one pipelined ``executemany`` of a
  one-statement submit (debit, job, ledger entry); finishes, cancels, releases and grants run
  one after another in a shared transaction. An op's own refusal (a short wallet, a finished
  job) is raised before it writes, so it costs the batch nothing; any other error rolls the
  batch back and its ops run again one by one. The events of the whole batch are written by
  one statement at the end (:data:`_WRITE_EVENTS`).
* **No deadlocks by construction.** A batch runs its ops by account, and within an account
  first those that lock the account row (as their first statement: refunds, cancels,
  releases, grants) and then completions, which lock only their job's row; so batches take
  account rows in one order and a job's row only within its account's turn. Multi-row
  operations (claim, lease renewal, the expiry sweep, delivery claims) never wait on a row
  (``FOR UPDATE SKIP LOCKED``), and the event counter is every transaction's last lock. A
  deadlock or serialization failure reported anyway is retried.
* **Workers claim with** ``FOR UPDATE SKIP LOCKED`` **and leases**, exactly like SQLite's
  guarded writes: a final state is written only by the lease holder, once, with its refund
  and its webhook delivery in the same transaction.
* **Events reach every replica.** Each committing transaction sends ``NOTIFY`` with its id
  range and, when they fit in the payload, its events; each store keeps one dedicated
  ``LISTEN`` connection and hands its ``subscribe`` listeners every event in id order, each
  exactly once: from the notification when it follows the last event published, otherwise
  (a gap, a long batch, a reconnect, or every ``poll_interval_s`` as a backstop) read from
  the events table after the last one published. So SSE streams, ``wait_final`` and idle
  workers on replica A wake for jobs run on replica B.
* **Schema** comes from the versioned files of :mod:`imagerouter.jobs.migrations`, applied
  on :meth:`PostgresJobStore.open` (unless ``migrate=False``) under an advisory lock.

The URL is a libpq-style ``postgresql://user@host:port/db``; ``?schema=NAME`` puts every
table in that schema (created if missing), and ``?pool_min=``/``?pool_max=`` size the pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.jobs import migrations
from imagerouter.jobs.common import StoreBase
from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    JobFinished,
    JobNotFound,
    StoreError,
)
from imagerouter.jobs.ids import new_id
from imagerouter.jobs.rows import (
    ACCOUNT_COLUMNS,
    ACTIVE,
    API_KEY_SELECT,
    ATTEMPT_FIELDS,
    DELIVERY_ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    IDEMPOTENCY_COLUMNS,
    JOB_COLUMNS,
    LEDGER_COLUMNS,
    WEBHOOK_SECRET_COLUMNS,
    WEBHOOK_SELECT,
    attempt_from_row,
    attempt_params,
    decode_cursor,
    delivery_attempt_from_row,
    delivery_from_row,
    dumps,
    encode_cursor,
    event_data,
    event_from_row,
    job_from_row,
    qualified,
    queued_job,
    response_doc,
)
from imagerouter.jobs.rules import (
    AUDIT_BY_STATUS,
    AUDIT_TOTALS,
    CANCELED_BY_CLIENT,
    DeliveryTarget,
    delivery_target,
    final_event_data,
    gone_reason,
    known_key_outcome,
    refund_once,
)
from imagerouter.jobs.sql import Steps, numbered
from imagerouter.jobs.store import EventListener
from imagerouter.jobs.types import (
    Account,
    ApiKeyRecord,
    Delivery,
    DeliveryAttempt,
    DeliveryReplay,
    IdempotencyOutcome,
    Job,
    JobEvent,
    JobPage,
    LedgerEntry,
    NewJob,
    StoredResponse,
    WebhookEndpoint,
    WebhookSecret,
)

__all__ = ["PostgresJobStore", "is_postgres_url", "parse_url", "redact_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The tail of every transaction that wrote events, in one statement: take the ids from the
#: counter (its row lock is held until commit), insert the events and their webhook
#: deliveries, and NOTIFY the other replicas (delivered at commit) with ``first last events``:
#: the events as a JSON array without their ids (``first`` + index), or nothing if too long.
_NOTIFY_MAX = 7000
_WRITE_EVENTS = (
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
#: A submit in one statement: debit the wallet if it holds the price, then create the job and
#: its ledger entry from the debit's row (so a short wallet writes nothing).
_SUBMIT = (
    "WITH debit AS (UPDATE accounts SET balance = balance - $3 "
    "WHERE id = $2 AND balance >= $3 RETURNING balance), "
    "job AS (INSERT INTO jobs (id, account_id, status, request, price, created_at, "
    "updated_at, deadline_at, idempotency_key) SELECT $1::text, $2::text, 'queued', "
    "$4::jsonb, $3, $5::float8, $5::float8, $6::float8, $7::text FROM debit), "
    "entry AS (INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, "
    "created_at) SELECT $2::text, $1::text, 'debit', -$3::bigint, balance, $5::float8 "
    "FROM debit) SELECT balance FROM debit"
)
#: Errors after which a transaction is simply tried again.
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_MAX_TRIES = 5
_OWN_PARAMS = ("schema", "pool_min", "pool_max")


# --- URLs -------------------------------------------------------------------------------------


def is_postgres_url(url: str | None) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the DSN asyncpg gets and this store's own query parameters
    (``schema``, ``pool_min``, ``pool_max``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN_PARAMS}
    rest = [(k, v) for k, v in query if k not in _OWN_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(rest))), own


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _notify_body(pending: Sequence[_PendingEvent]) -> str:
    """The events of a NOTIFY (ids left out: ``first`` + index), or "" when too long."""
    body = dumps([[p.job_id, p.account_id, p.type, p.created_at, p.data] for p in pending])
    return body if len(body.encode()) <= _NOTIFY_MAX else ""


async def run_steps(conn: asyncpg.Connection, steps: Steps[T]) -> T:
    """Run a rule's :mod:`~imagerouter.jobs.sql` steps on ``conn`` (``:name`` parameters
    numbered for asyncpg); its result."""
    answer: Any = None
    try:
        while True:
            query = steps.send(answer)
            sql, names = numbered(query.sql)
            args = [query.params[name] for name in names]
            if query.want == "value":
                answer = await conn.fetchval(sql, *args)
            elif query.want == "row":
                answer = await conn.fetchrow(sql, *args)
            else:
                await conn.execute(sql, *args)
                answer = None
    except StopIteration as done:
        return done.value


# --- transactions -----------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingEvent:
    """An event an operation wrote; its id is taken when the transaction commits."""

    job_id: str
    account_id: str
    type: str
    data: dict[str, Any]
    created_at: float
    #: Where the event's webhook goes, when it enqueues one.
    delivery: DeliveryTarget | None = None


@dataclass(slots=True)
class _Tx:
    """What one operation hands its transaction besides its own rows: events."""

    events: list[_PendingEvent] = field(default_factory=list)

    def event(
        self,
        job_id: str,
        account_id: str,
        status: str,
        now: float,
        delivery: DeliveryTarget | None = None,
        **data: Any,
    ) -> None:
        self.events.append(
            _PendingEvent(
                job_id, account_id, f"job.{status}", event_data(status, **data), now, delivery
            )
        )


Op = Callable[[asyncpg.Connection, _Tx], Awaitable[Any]]


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


# --- the event feed ---------------------------------------------------------------------------


class _EventFeed:
    """Publishes every committed event, of every replica, to this store's listeners: once
    each, in id order. Local commits are published at once when they follow the last event
    published; anything else (another replica's commit, told by NOTIFY, or found by the
    periodic check) is read from the events table."""

    def __init__(self, store: PostgresJobStore, poll_interval_s: float) -> None:
        self.store = store
        self.poll_interval_s = poll_interval_s
        self.listeners: list[EventListener] = []
        self.local_listeners: list[EventListener] = []
        #: The id of the last event handed to the listeners.
        self.published = 0
        #: Notifications received and those whose events they carried, catch-up reads done,
        #: listener reconnects (for tests and metrics).
        self.notified = 0
        self.carried = 0
        self.reads = 0
        self.reconnects = 0
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self._listen()  # first: an event committed after the read below is notified
        last = await self.store._pool.fetchval("SELECT last_id FROM event_clock")
        self.published = max(self.published, last)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pg-event-feed")

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._unlisten()

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.store.dsn, **self.store._connect_kwargs())
        try:
            await conn.add_listener(self.store.channel, self._notified)
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

    def committed(self, events: Sequence[JobEvent]) -> None:
        """Events this store just committed (ids ascending)."""
        if not events:
            return
        for listener in list(self.local_listeners):
            try:
                listener(events)
            except Exception:
                log.exception("job event listener %r failed", listener)
        if events[0].id == self.published + 1:
            self._publish(events)
        elif events[-1].id > self.published:
            self._wake.set()  # another replica's events came in between: read them all

    def _publish(self, events: Sequence[JobEvent]) -> None:
        fresh = [e for e in events if e.id > self.published]
        if not fresh:
            return
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
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading new job events failed: %s", exc)
                await asyncio.sleep(min(self.poll_interval_s, 0.5))
                self._wake.set()

    async def catch_up(self) -> None:
        """Publish every committed event after the last one published."""
        pool = self.store._pool
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


# --- the store --------------------------------------------------------------------------------


class PostgresJobStore(StoreBase):
    """:class:`~imagerouter.jobs.store.JobStore` on PostgreSQL; see the module doc.

    Args:
        url: ``postgresql://…`` (with optional ``schema``, ``pool_min``, ``pool_max``).
        schema: the schema of every table (default: the URL's, else ``public``).
        pool_min, pool_max: connection pool size (plus one listener connection).
        batch_max: most job writes sharing one transaction.
        parallel: most write transactions of this store running at once.
        poll_interval_s: how often new events are looked for without a notification.
        migrate: apply pending migrations on :meth:`open`.
        clock: where "now" comes from (its ``wall()``).
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_min: int | None = None,
        pool_max: int | None = None,
        batch_max: int = 64,
        parallel: int = 4,
        poll_interval_s: float = 1.0,
        migrate: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.dsn, own = parse_url(url)
        self.schema = schema or own.get("schema") or "public"
        self.pool_min = pool_min if pool_min is not None else int(own.get("pool_min", 1))
        self.pool_max = pool_max if pool_max is not None else int(own.get("pool_max", 10))
        self.batch_max = batch_max
        self.parallel = max(1, min(parallel, self.pool_max - 1 or 1))
        self.migrate = migrate
        #: The NOTIFY channel of this schema.
        self.channel = f"imagerouter_events.{self.schema}"
        #: Transactions committed and operations they ran, for the benchmark and tests.
        self.commits = 0
        self.ops = 0
        self._clock = clock or MonotonicClock()
        self._pool: asyncpg.Pool = None  # type: ignore[assignment]
        self._feed = _EventFeed(self, poll_interval_s)
        self._queue: collections.deque[_Queued] = collections.deque()
        self._drainers = 0
        self._submits: collections.deque[tuple[NewJob, asyncio.Future[Job]]] = collections.deque()
        self._submit_drainers = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._job_accounts: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"PostgresJobStore({redact_url(self.url)!r}, schema={self.schema!r})"

    # --- lifecycle -----------------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "server_settings": {"search_path": self.schema, "application_name": "imagerouter"},
            "timeout": 10,
        }

    @staticmethod
    async def _init_connection(conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "jsonb", encoder=dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )

    async def open(self) -> None:
        """Migrate (unless told not to), open the pool, and start following events."""
        if self.migrate:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                await migrations.migrate(conn, self.schema)
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.pool_min,
            max_size=self.pool_max,
            init=self._init_connection,
            **self._connect_kwargs(),
        )
        try:
            await self._check_schema()
            await self._feed.start()
        except BaseException:
            await self._pool.close()
            raise

    async def _check_schema(self) -> None:
        async with self._pool.acquire() as conn:
            found = await migrations.status(conn, self.schema)
        if found.pending:
            raise StoreError(
                f"schema {self.schema!r} of {redact_url(self.url)} lacks migrations "
                f"{found.pending}; run 'imagerouter db migrate'"
            )

    async def close(self) -> None:
        """Finish queued writes, stop following events and close the pool."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._feed.close()
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self._pool.fetchval("SELECT 1")

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

    @property
    def feed(self) -> _EventFeed:
        """The event feed (its counters: ``notified``, ``reads``, ``reconnects``)."""
        return self._feed

    # --- running operations --------------------------------------------------------------------

    async def _batched(
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
            self._spawn(self._drain())
        return await queued.future

    async def _solo(self, fn: Op) -> Any:
        """Run ``fn`` in a transaction of its own (still in a task: a cancelled caller does not
        cut a transaction in half)."""
        queued = _Queued(fn, "", asyncio.get_running_loop().create_future())
        self._spawn(self._run_one(queued))
        return await queued.future

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

    async def _run_batch(self, ops: list[_Queued]) -> bool:
        """Run ``ops`` in one transaction, then their events, then commit; resolve them.

        An op's StoreError is its own answer; any other error rolls the whole batch back and
        returns False (the caller then runs each op alone).
        """
        outcomes: list[tuple[_Queued, BaseException | None, Any]] = []
        pending: list[_PendingEvent] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for op in ops:
                    tx = _Tx()
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
                events = await self._write_events(conn, pending) if pending else []
        except Exception as exc:
            log.info("a batch of %d writes is retried one by one: %r", len(ops), exc)
            return False
        self.commits += 1
        self.ops += len(ops)
        self._feed.committed(events)
        for op, error, value in outcomes:
            op.resolve(error, value)
        return True

    async def _run_one(self, op: _Queued) -> None:
        """Run one op in its own transaction (again after a deadlock or serialization
        failure); resolve it."""
        for attempt in range(1, _MAX_TRIES + 1):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    tx = _Tx()
                    value = await op.fn(conn, tx)
                    events = await self._write_events(conn, tx.events) if tx.events else []
            except _RETRYABLE as exc:
                if attempt < _MAX_TRIES:
                    log.info("transaction retried (%d): %s", attempt, exc)
                    continue
                op.resolve(exc)
                return
            except Exception as exc:
                op.resolve(exc)
                return
            self.commits += 1
            self.ops += 1
            self._feed.committed(events)
            op.resolve(None, value)
            return

    async def _write_events(
        self, conn: asyncpg.Connection, pending: list[_PendingEvent]
    ) -> list[JobEvent]:
        """Take ids for ``pending`` under the counter's lock, insert them and their webhook
        deliveries, and notify the other replicas (delivered at commit)."""
        n = len(pending)
        deliveries = [(i + 1, p.delivery, p) for i, p in enumerate(pending) if p.delivery]
        last = await conn.fetchval(
            _WRITE_EVENTS,
            n,
            [p.job_id for p in pending],
            [p.account_id for p in pending],
            [p.type for p in pending],
            [p.created_at for p in pending],
            [p.data for p in pending],
            [new_id("msg", 24) for _ in deliveries],
            [i for i, _, _ in deliveries],
            [target.url for _, target, _ in deliveries],
            [target.status for _, target, _ in deliveries],
            [target.due_at(p.created_at) for _, target, p in deliveries],
            [target.disabled_reason for _, target, _ in deliveries],
            self.channel,
            _notify_body(pending),
        )
        first = last - n + 1
        events = [
            JobEvent(first + i, p.job_id, p.account_id, p.type, p.created_at, p.data)
            for i, p in enumerate(pending)
        ]
        return events

    # --- helpers run inside operations ---------------------------------------------------------

    @staticmethod
    async def _lock_account(conn: asyncpg.Connection, account_id: str) -> bool:
        """Lock the account's row (every batched op does this first); False if none."""
        found = await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        return found is not None

    @staticmethod
    async def _insert_attempts(
        conn: asyncpg.Connection, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
    ) -> None:
        if attempts:
            await conn.executemany(
                f"INSERT INTO attempts (job_id, run, {', '.join(ATTEMPT_FIELDS)}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                attempt_params(job_id, run, attempts),
            )

    # --- accounts, keys, credits ---------------------------------------------------------------

    async def create_account(self, name: str) -> Account:
        """The account called ``name``, created with an empty wallet if new."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> Account:
            await conn.execute(
                "INSERT INTO accounts (id, name, balance, created_at) VALUES ($1, $2, 0, $3) "
                "ON CONFLICT (name) DO NOTHING",
                new_id("acct", 16),
                name,
                now,
            )
            row = await conn.fetchrow(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1", name
            )
            return Account(*row)

        return await self._solo(op)

    async def _find_account(self, column: str, value: str) -> Account | None:
        row = await self._pool.fetchrow(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = $1", value
        )
        return None if row is None else Account(*row)

    async def grant_credits(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add ``amount`` (> 0) credits; returns the new balance."""
        if amount <= 0:
            raise ValueError(f"a grant must be positive, not {amount}")
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> int:
            balance = await conn.fetchval(
                "UPDATE accounts SET balance = balance + $1 WHERE id = $2 RETURNING balance",
                amount,
                account_id,
            )
            if balance is None:
                raise AccountNotFound(account_id)
            await conn.execute(
                "INSERT INTO ledger (account_id, kind, amount, balance_after, note, created_at) "
                "VALUES ($1, 'grant', $2, $3, $4, $5)",
                account_id,
                amount,
                balance,
                note,
                now,
            )
            return int(balance)

        return await self._batched(account_id, op)

    async def ledger(
        self, account_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND id < $2 "
            "ORDER BY id DESC LIMIT $3",
            account_id,
            before_id if before_id is not None else 2**62,
            limit,
        )
        return [LedgerEntry(*row) for row in rows]

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key's lookup id and hash."""
        await self._pool.execute(
            "INSERT INTO api_keys (id, account_id, secret_hash, name, created_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            record.id,
            record.account_id,
            record.secret_hash,
            record.name,
            float(record.created_at),
        )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this lookup id, or None."""
        row = await self._pool.fetchrow(f"{API_KEY_SELECT} WHERE k.id = $1", key_id)
        return None if row is None else ApiKeyRecord(*row)

    async def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one account), oldest first."""
        rows = await self._pool.fetch(
            f"{API_KEY_SELECT} WHERE $1::text IS NULL OR k.account_id = $1 "
            "ORDER BY k.created_at, k.id",
            account_id,
        )
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke an active key; False if none."""
        done = await self._pool.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            self._clock.wall(),
            key_id,
        )
        return done != "UPDATE 0"

    # --- jobs: the client's side ---------------------------------------------------------------

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit and create the job atomically (InsufficientCredits: nothing written)."""
        if job.idempotency_key is None and response is None:
            future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
            self._submits.append((job, future))
            if self._submit_drainers < self.parallel:
                self._submit_drainers += 1
                self._spawn(self._drain_submits())
            return await future
        return await self._submit_alone(job, response)

    async def _submit_alone(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        async def op(conn: asyncpg.Connection, tx: _Tx) -> Job:
            return await self._submit(conn, tx, job, response)

        return await self._batched(job.account_id, op)

    async def _drain_submits(self) -> None:
        try:
            while self._submits:
                count = min(len(self._submits), self.batch_max)
                await self._run_submits([self._submits.popleft() for _ in range(count)])
        finally:
            self._submit_drainers -= 1

    async def _run_submits(self, items: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        """Plain submits (no idempotency key) in one transaction and one pipelined
        ``executemany``, by account; the ones the database did not create were refused."""
        items.sort(key=lambda item: item[0].account_id)
        now = self._clock.wall()
        times = [float(job.created_at if job.created_at is not None else now) for job, _ in items]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    _SUBMIT,
                    [
                        (j.id, j.account_id, j.price, j.request, t, float(j.deadline_at), None)
                        for (j, _), t in zip(items, times, strict=True)
                    ],
                )
                ids = [job.id for job, _ in items]
                created = {
                    row[0]
                    for row in await conn.fetch(
                        "SELECT id FROM jobs WHERE id = ANY($1::text[])", ids
                    )
                }
                refused = {job.account_id for job, _ in items if job.id not in created}
                balances = dict(
                    await conn.fetch(
                        "SELECT id, balance FROM accounts WHERE id = ANY($1::text[])",
                        list(refused),
                    )
                    if refused
                    else []
                )
                tx = _Tx()
                for (job, _), when in zip(items, times, strict=True):
                    if job.id in created:
                        tx.event(job.id, job.account_id, "queued", when, price=job.price)
                events = await self._write_events(conn, tx.events) if tx.events else []
        except Exception as exc:
            log.info("a batch of %d submits is retried one by one: %r", len(items), exc)
            for job, future in items:
                try:
                    created_job = await self._submit_alone(job)
                except Exception as error:
                    if not future.done():
                        future.set_exception(error)
                else:
                    if not future.done():
                        future.set_result(created_job)
            return
        self.commits += 1
        self.ops += len(items)
        self._feed.committed(events)
        for (job, future), when in zip(items, times, strict=True):
            if future.done():
                continue
            if job.id in created:
                future.set_result(queued_job(job, when))
            elif job.account_id in balances:
                future.set_exception(InsufficientCredits(balances[job.account_id], job.price))
            else:
                future.set_exception(AccountNotFound(job.account_id))

    async def submit_job_once(
        self, job: NewJob, fingerprint: str, response: StoredResponse, *, ttl_s: float
    ) -> Job | IdempotencyOutcome:
        """Take ``job.idempotency_key``, create and charge the job and record ``response``, in
        one transaction; or, if the key is known, change nothing and say what was found."""
        assert job.idempotency_key is not None

        async def op(conn: asyncpg.Connection, tx: _Tx) -> Job | IdempotencyOutcome:
            if not await self._lock_account(conn, job.account_id):
                raise AccountNotFound(job.account_id)
            outcome = await self._begin(
                conn, job.account_id, job.idempotency_key or "", fingerprint, 0.0, ttl_s
            )
            if outcome.state != "new":
                return outcome
            return await self._submit(conn, tx, job, response)

        return await self._batched(job.account_id, op, savepoint=True)

    async def _submit(
        self, conn: asyncpg.Connection, tx: _Tx, job: NewJob, response: StoredResponse | None
    ) -> Job:
        now = job.created_at if job.created_at is not None else self._clock.wall()
        balance = await conn.fetchval(
            _SUBMIT,
            job.id,
            job.account_id,
            job.price,
            job.request,
            float(now),
            float(job.deadline_at),
            job.idempotency_key,
        )
        if balance is None:
            found = await conn.fetchval(
                "SELECT balance FROM accounts WHERE id = $1", job.account_id
            )
            if found is None:
                raise AccountNotFound(job.account_id)
            raise InsufficientCredits(found, job.price)
        tx.event(job.id, job.account_id, "queued", float(now), price=job.price)
        if job.idempotency_key is not None:
            doc = None if response is None else response_doc(response)
            await conn.execute(
                "UPDATE idempotency SET job_id = $1, "
                "state = CASE WHEN $2::jsonb IS NULL THEN state ELSE 'done' END, "
                "status_code = $3, response = $2 WHERE account_id = $4 AND key = $5",
                job.id,
                doc,
                None if response is None else response.status,
                job.account_id,
                job.idempotency_key,
            )
        return queued_job(job, float(now))

    async def get_job(self, account_id: str, job_id: str) -> Job | None:
        """The account's job with its attempts, or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND account_id = $2",
                job_id,
                account_id,
            )
            if row is None:
                return None
            job = job_from_row(row)
            rows = await conn.fetch(
                f"SELECT run, {', '.join(ATTEMPT_FIELDS)} FROM attempts WHERE job_id = $1 "
                "ORDER BY id",
                job_id,
            )
        job.attempts = [attempt_from_row(r) for r in rows]
        return job

    async def list_jobs(
        self,
        account_id: str,
        *,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of the account's jobs, newest first (InvalidCursor for a bad cursor)."""
        before = decode_cursor(cursor) if cursor else 2**62
        rows = await self._pool.fetch(
            f"SELECT seq, {JOB_COLUMNS} FROM jobs WHERE account_id = $1 AND seq < $2 "
            "AND ($3::text IS NULL OR status = $3) ORDER BY seq DESC LIMIT $4",
            account_id,
            before,
            status,
            limit + 1,
        )
        jobs = [job_from_row(row[1:]) for row in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
        return JobPage(jobs, next_cursor)

    async def cancel_job(self, account_id: str, job_id: str) -> Job:
        """Cancel and refund an active job (JobNotFound, JobFinished)."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> Job:
            if not await self._lock_account(conn, account_id):
                raise JobNotFound(job_id)
            row = await conn.fetchrow(
                f"UPDATE jobs SET status = 'canceled', finished_at = $1, updated_at = $1, "
                f"lease_owner = NULL, lease_expires = NULL, error = $2 "
                f"WHERE id = $3 AND account_id = $4 AND {ACTIVE} RETURNING {JOB_COLUMNS}",
                now,
                CANCELED_BY_CLIENT,
                job_id,
                account_id,
            )
            if row is None:
                found = await conn.fetchval(
                    "SELECT status FROM jobs WHERE id = $1 AND account_id = $2", job_id, account_id
                )
                if found is None:
                    raise JobNotFound(job_id)
                raise JobFinished(job_id, found)
            job = job_from_row(row)
            job.refunded = await run_steps(conn, refund_once(job.id, account_id, job.price, now))
            webhook_url = job.request.get("webhook_url")
            target = await run_steps(conn, delivery_target(account_id, webhook_url))
            tx.event(
                job.id, account_id, "canceled", now, target, reason="client", refunded=job.refunded
            )
            return job

        return await self._batched(account_id, op)

    # --- jobs: the worker's side ---------------------------------------------------------------

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[Job]:
        """Lease up to ``limit`` queued jobs, oldest first, to ``owner`` (SKIP LOCKED: two
        claimers never wait on, nor get, the same job)."""
        if limit <= 0:
            return []

        async def op(conn: asyncpg.Connection, tx: _Tx) -> list[Job]:
            now = self._clock.wall()
            rows = await conn.fetch(
                "WITH picked AS (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq "
                "LIMIT $1 FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs j SET status = 'processing', lease_owner = $2, lease_expires = $3, "
                "runs = runs + 1, started_at = coalesce(started_at, $4), updated_at = $4 "
                "FROM picked WHERE j.seq = picked.seq "
                f"RETURNING j.seq, {qualified(JOB_COLUMNS, 'j')}",
                limit,
                owner,
                now + lease_s,
                now,
            )
            rows = sorted(rows, key=lambda r: r[0])
            jobs = [job_from_row(row[1:]) for row in rows]
            for j in jobs:
                tx.event(j.id, j.account_id, "processing", now, run=j.runs)
            return jobs

        jobs = await self._solo(op)
        if len(self._job_accounts) > 100_000:  # leases lost to other replicas leave entries
            self._job_accounts.clear()
        for job in jobs:
            self._job_accounts[job.id] = job.account_id
        return jobs

    async def renew_leases(self, owner: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend ``owner``'s leases on ``job_ids``; the ids it still holds. A row another
        transaction has locked is not waited for: it counts as held if it is (it is renewed
        at the next heartbeat)."""
        ids = list(job_ids)
        if not ids:
            return set()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> set[str]:
            expires = self._clock.wall() + lease_s
            renewed = await conn.fetch(
                "WITH mine AS (SELECT seq FROM jobs WHERE id = ANY($1::text[]) "
                "AND lease_owner = $2 AND status = 'processing' FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs j SET lease_expires = $3 FROM mine WHERE j.seq = mine.seq "
                "RETURNING j.id",
                ids,
                owner,
                expires,
            )
            held = {row[0] for row in renewed}
            rest = [i for i in ids if i not in held]
            if rest:
                busy = await conn.fetch(
                    "SELECT id FROM jobs WHERE id = ANY($1::text[]) AND lease_owner = $2 "
                    "AND status = 'processing'",
                    rest,
                    owner,
                )
                held.update(row[0] for row in busy)
            return held

        return await self._solo(op)

    async def _finish(
        self,
        job_id: str,
        owner: str,
        status: str,
        payload: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        now = self._clock.wall()
        column = "result" if status == "completed" else "error"
        account_id = self._job_accounts.get(job_id) or await self._pool.fetchval(
            "SELECT account_id FROM jobs WHERE id = $1", job_id
        )
        if account_id is None:
            return False

        async def op(conn: asyncpg.Connection, tx: _Tx) -> bool:
            if status != "completed":  # a failure refunds: the account row first
                await self._lock_account(conn, account_id)
            row = await conn.fetchrow(
                f"UPDATE jobs SET status = $1, {column} = $2, finished_at = $3, updated_at = $3, "
                f"lease_owner = NULL, lease_expires = NULL "
                f"WHERE id = $4 AND {ACTIVE} AND lease_owner = $5 "
                f"RETURNING runs, price, request->>'webhook_url'",
                status,
                payload,
                now,
                job_id,
                owner,
            )
            if row is None:
                return False
            run, price, webhook_url = row
            await self._insert_attempts(conn, job_id, run, attempts)
            target = await run_steps(conn, delivery_target(account_id, webhook_url))
            refunded = (
                0
                if status == "completed"
                else await run_steps(conn, refund_once(job_id, account_id, price, now))
            )
            data = final_event_data(status, payload, refunded)
            tx.event(job_id, account_id, status, now, target, **data)
            return True

        done = await self._batched(account_id, op, locks_account=status != "completed")
        self._job_accounts.pop(job_id, None)
        return done

    async def release_job(self, job_id: str, owner: str, reason: str) -> bool:
        """Put a held processing job back in the queue."""
        now = self._clock.wall()
        account_id = self._job_accounts.pop(job_id, None) or await self._pool.fetchval(
            "SELECT account_id FROM jobs WHERE id = $1", job_id
        )
        if account_id is None:
            return False

        async def op(conn: asyncpg.Connection, tx: _Tx) -> bool:
            await self._lock_account(conn, account_id)
            found = await conn.fetchval(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = $1 WHERE id = $2 AND status = 'processing' AND lease_owner = $3 "
                "RETURNING 1",
                now,
                job_id,
                owner,
            )
            if found is None:
                return False
            tx.event(job_id, account_id, "queued", now, reason=reason)
            return True

        return await self._batched(account_id, op)

    async def requeue_expired(self) -> int:
        """Re-queue processing jobs whose lease has run out (SKIP LOCKED: replicas sweeping
        at once split the work instead of waiting on each other)."""

        async def op(conn: asyncpg.Connection, tx: _Tx) -> int:
            now = self._clock.wall()
            rows = await conn.fetch(
                "WITH expired AS (SELECT seq FROM jobs WHERE status = 'processing' "
                "AND lease_expires < $1 ORDER BY seq FOR UPDATE SKIP LOCKED) "
                "UPDATE jobs j SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = $1 FROM expired WHERE j.seq = expired.seq "
                "RETURNING j.seq, j.id, j.account_id",
                now,
            )
            for _, job_id, account_id in sorted(rows):
                tx.event(job_id, account_id, "queued", now, reason="lease_expired")
            return len(rows)

        return await self._solo(op)

    # --- events --------------------------------------------------------------------------------

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

    # --- idempotency keys ----------------------------------------------------------------------

    async def idempotency_begin(
        self, account_id: str, key: str, fingerprint: str, lock_s: float, ttl_s: float
    ) -> IdempotencyOutcome:
        """Take ``key`` for a request, or say why not."""

        async def op(conn: asyncpg.Connection, tx: _Tx) -> IdempotencyOutcome:
            return await self._begin(conn, account_id, key, fingerprint, lock_s, ttl_s)

        return await self._solo(op)

    async def _begin(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        key: str,
        fingerprint: str,
        lock_s: float,
        ttl_s: float,
    ) -> IdempotencyOutcome:
        now = self._clock.wall()
        select = (
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency "
            "WHERE account_id = $1 AND key = $2 FOR UPDATE"
        )
        for _ in range(3):
            row = await conn.fetchrow(select, account_id, key)
            if row is not None and row[5] <= now:
                await conn.execute(
                    "DELETE FROM idempotency WHERE account_id = $1 AND key = $2", account_id, key
                )
                row = None
            if row is None:
                taken = await conn.fetchval(
                    "INSERT INTO idempotency (account_id, key, fingerprint, state, locked_until, "
                    "created_at, expires_at) VALUES ($1, $2, $3, 'processing', $4, $5, $6) "
                    "ON CONFLICT (account_id, key) DO NOTHING RETURNING 1",
                    account_id,
                    key,
                    fingerprint,
                    now + lock_s,
                    now,
                    now + ttl_s,
                )
                if taken:
                    return IdempotencyOutcome("new")
                continue  # another request took it meanwhile: look again
            outcome = known_key_outcome(row, fingerprint, now)
            if outcome.state == "new":  # its holder vanished: take it over
                await conn.execute(
                    "UPDATE idempotency SET locked_until = $1 WHERE account_id = $2 AND key = $3",
                    now + lock_s,
                    account_id,
                    key,
                )
            return outcome
        return IdempotencyOutcome("in_flight")

    async def idempotency_finish(self, account_id: str, key: str, response: StoredResponse) -> None:
        """Store the response of a held key."""
        await self._pool.execute(
            "UPDATE idempotency SET state = 'done', status_code = $1, response = $2, "
            "locked_until = NULL WHERE account_id = $3 AND key = $4",
            response.status,
            response_doc(response),
            account_id,
            key,
        )

    async def idempotency_release(self, account_id: str, key: str) -> None:
        """Forget a held key whose request changed nothing."""
        await self._pool.execute(
            "DELETE FROM idempotency WHERE account_id = $1 AND key = $2 AND state = 'processing'",
            account_id,
            key,
        )

    async def purge_idempotency(self) -> int:
        """Delete expired keys."""
        done = await self._pool.execute(
            "DELETE FROM idempotency WHERE expires_at <= $1", self._clock.wall()
        )
        return int(done.split()[-1])

    # --- webhooks: endpoints and secrets -------------------------------------------------------

    async def set_webhook_url(self, account_id: str, url: str | None) -> WebhookEndpoint:
        """Register (or, with None, unregister) the account's webhook URL."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> WebhookEndpoint:
            await conn.execute(
                "INSERT INTO webhook_endpoints (account_id, url, created_at, updated_at) "
                "VALUES ($1, $2, $3, $3) ON CONFLICT (account_id) DO UPDATE SET "
                "url = excluded.url, updated_at = excluded.updated_at",
                account_id,
                url,
                now,
            )
            if url is not None:
                await conn.execute(
                    "DELETE FROM webhook_disabled WHERE account_id = $1 AND url = $2",
                    account_id,
                    url,
                )
            found = await self._webhook(conn, account_id)
            assert found is not None
            return found

        try:
            return await self._solo(op)
        except asyncpg.ForeignKeyViolationError:
            raise AccountNotFound(account_id) from None

    @staticmethod
    async def _webhook(conn: asyncpg.Connection, account_id: str) -> WebhookEndpoint | None:
        row = await conn.fetchrow(
            f"{WEBHOOK_SELECT} WHERE e.account_id = $1",
            account_id,
        )
        return None if row is None else WebhookEndpoint(*row)

    async def get_webhook(self, account_id: str) -> WebhookEndpoint | None:
        """The account's registration, or None."""
        async with self._pool.acquire() as conn:
            return await self._webhook(conn, account_id)

    async def add_webhook_secret(
        self, account_id: str, secret: str, grace_s: float
    ) -> WebhookSecret:
        """Make ``secret`` current; the previous one signs ``grace_s`` longer (an earlier
        expiry is kept)."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> WebhookSecret:
            await conn.execute(
                "UPDATE webhook_secrets SET expires_at = $1 "
                "WHERE account_id = $2 AND expires_at IS NULL",
                now + grace_s,
                account_id,
            )
            secret_id = await conn.fetchval(
                "INSERT INTO webhook_secrets (account_id, secret, created_at) "
                "VALUES ($1, $2, $3) RETURNING id",
                account_id,
                secret,
                now,
            )
            return WebhookSecret(secret_id, account_id, secret, now)

        try:
            return await self._solo(op)
        except asyncpg.ForeignKeyViolationError:
            raise AccountNotFound(account_id) from None

    async def webhook_secrets(self, account_id: str) -> list[WebhookSecret]:
        """The signing secrets: current first, then those in grace."""
        rows = await self._pool.fetch(
            f"SELECT {WEBHOOK_SECRET_COLUMNS} FROM webhook_secrets "
            "WHERE account_id = $1 AND (expires_at IS NULL OR expires_at > $2) "
            "ORDER BY expires_at IS NOT NULL, id DESC",
            account_id,
            self._clock.wall(),
        )
        return [WebhookSecret(*row) for row in rows]

    # --- webhooks: deliveries ------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, limit: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries (SKIP LOCKED); disable those whose URL is
        disabled."""
        if limit <= 0:
            return []

        async def op(conn: asyncpg.Connection, tx: _Tx) -> list[Delivery]:
            now = self._clock.wall()
            await conn.execute(
                "WITH gone AS (SELECT v.id, w.reason FROM deliveries v JOIN webhook_disabled w "
                "ON w.account_id = v.account_id AND w.url = v.url "
                "WHERE v.status = 'pending' AND v.next_attempt_at <= $1 "
                "FOR UPDATE OF v SKIP LOCKED) "
                "UPDATE deliveries d SET status = 'disabled', next_attempt_at = NULL, "
                "updated_at = $1, last_error = gone.reason FROM gone WHERE d.id = gone.id",
                now,
            )
            returning = qualified(DELIVERY_COLUMNS, "d")
            rows: list[Any] = []
            for due in (
                "status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at",
                "status = 'delivering' AND lease_expires < $1 ORDER BY lease_expires",
            ):
                if len(rows) >= limit:
                    break
                rows += await conn.fetch(
                    f"WITH picked AS (SELECT id FROM deliveries WHERE {due} LIMIT $2 "
                    f"FOR UPDATE SKIP LOCKED) UPDATE deliveries d SET status = 'delivering', "
                    f"lease_owner = $3, lease_expires = $4, updated_at = $1 FROM picked "
                    f"WHERE d.id = picked.id RETURNING {returning}",
                    now,
                    limit - len(rows),
                    owner,
                    now + lease_s,
                )
            return sorted(
                (delivery_from_row(row) for row in rows), key=lambda d: d.next_attempt_at or 0
            )

        return await self._solo(op)

    async def set_delivery_body(self, delivery_id: str, body: str) -> str:
        """Fix the body once; the body the delivery now has."""
        found = await self._pool.fetchval(
            "UPDATE deliveries SET body = coalesce(body, $1) WHERE id = $2 RETURNING body",
            body,
            delivery_id,
        )
        return body if found is None else found

    async def record_delivery_attempt(
        self,
        delivery_id: str,
        owner: str,
        attempt: DeliveryAttempt,
        *,
        status: str,
        next_attempt_at: float | None,
        disable_url: bool = False,
    ) -> bool:
        """Log the attempt; move the held delivery to ``status``."""
        now = self._clock.wall()
        scheduled = 1 if attempt.trigger == "scheduled" else 0

        async def op(conn: asyncpg.Connection, tx: _Tx) -> bool:
            found = await conn.fetchrow(
                "SELECT account_id, url, attempts FROM deliveries WHERE id = $1 FOR UPDATE",
                delivery_id,
            )
            if found is None:
                return False
            account_id, url, attempts = found
            await conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, attempt, trigger, scheduled_at, "
                "started_at, outcome, status, latency_ms, error, retry_after, next_delay_s, "
                "next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                delivery_id,
                attempts + 1,
                attempt.trigger,
                float(attempt.scheduled_at),
                float(attempt.started_at),
                attempt.outcome,
                attempt.status,
                _float(attempt.latency_ms),
                attempt.error,
                _float(attempt.retry_after),
                _float(attempt.next_delay_s),
                _float(attempt.next_attempt_at),
            )
            held = await conn.fetchval(
                "UPDATE deliveries SET status = $1, attempts = attempts + 1, step = step + $2, "
                "next_attempt_at = $3, lease_owner = NULL, lease_expires = NULL, replay = false, "
                "last_error = $4, updated_at = $5 "
                "WHERE id = $6 AND status = 'delivering' AND lease_owner = $7 RETURNING id",
                status,
                scheduled,
                _float(next_attempt_at),
                attempt.error,
                now,
                delivery_id,
                owner,
            )
            if disable_url:
                reason = gone_reason(url)
                await conn.execute(
                    "INSERT INTO webhook_disabled (account_id, url, disabled_at, reason) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, url) DO UPDATE SET "
                    "disabled_at = excluded.disabled_at, reason = excluded.reason",
                    account_id,
                    url,
                    now,
                    reason,
                )
                await conn.execute(
                    "WITH pending AS (SELECT id FROM deliveries WHERE account_id = $3 "
                    "AND url = $4 AND status = 'pending' ORDER BY id FOR UPDATE) "
                    "UPDATE deliveries d SET status = 'disabled', next_attempt_at = NULL, "
                    "last_error = $1, updated_at = $2 FROM pending WHERE d.id = pending.id",
                    reason,
                    now,
                    account_id,
                    url,
                )
            return held is not None

        return await self._solo(op)

    async def job_deliveries(self, account_id: str, job_id: str) -> list[Delivery]:
        """The job's deliveries with their attempt logs."""
        async with self._pool.acquire() as conn:
            deliveries = [
                delivery_from_row(row)
                for row in await conn.fetch(
                    f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
                    f"WHERE job_id = $1 AND account_id = $2 ORDER BY event_id",
                    job_id,
                    account_id,
                )
            ]
            if deliveries:
                rows = await conn.fetch(
                    f"SELECT {DELIVERY_ATTEMPT_COLUMNS} FROM delivery_attempts "
                    f"WHERE delivery_id = ANY($1::text[]) ORDER BY id",
                    [d.id for d in deliveries],
                )
                by_id = {d.id: d for d in deliveries}
                for row in rows:
                    by_id[row[-1]].log.append(delivery_attempt_from_row(row))
        return deliveries

    async def replay_delivery(self, account_id: str, job_id: str) -> DeliveryReplay | None:
        """Make the job's latest delivery due now (a one-off replay if it was final)."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: _Tx) -> DeliveryReplay | None:
            row = await conn.fetchrow(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE job_id = $1 "
                f"AND account_id = $2 ORDER BY event_id DESC LIMIT 1 FOR UPDATE",
                job_id,
                account_id,
            )
            if row is None:
                return None
            delivery = delivery_from_row(row)
            if delivery.status == "delivering":
                return DeliveryReplay("in_flight", delivery)
            if await conn.fetchval(
                "SELECT 1 FROM webhook_disabled WHERE account_id = $1 AND url = $2",
                account_id,
                delivery.url,
            ):
                return DeliveryReplay("disabled", delivery)
            replay = delivery.status != "pending"
            updated = await conn.fetchrow(
                f"UPDATE deliveries SET status = 'pending', next_attempt_at = $1, replay = $2, "
                f"updated_at = $1 WHERE id = $3 RETURNING {DELIVERY_COLUMNS}",
                now,
                replay,
                delivery.id,
            )
            return DeliveryReplay("queued", delivery_from_row(updated))

        return await self._solo(op)

    # --- for tests and tools -------------------------------------------------------------------

    async def audit(self) -> dict[str, Any]:
        """Totals that must always agree: balances against the ledger, jobs against debits."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            totals = {k: int(await conn.fetchval(sql)) for k, sql in AUDIT_TOTALS.items()}
            return {**totals, "by_status": dict(await conn.fetch(AUDIT_BY_STATUS))}
