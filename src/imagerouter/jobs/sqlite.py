"""The embedded job store: SQLite in WAL mode, every query on one dedicated thread.

Each public method builds a small synchronous function of the connection and hands it to
:class:`~imagerouter.jobs.sqlthread.SQLiteThread`, which runs many of them per commit. Every
status change is guarded in SQL (``WHERE status IN ('queued', 'processing') AND lease_owner =
?``), so a final state is written once whatever races between workers, sweepers and cancels.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from imagerouter.clock import Clock, MonotonicClock
from imagerouter.jobs.common import StoreBase
from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    JobFinished,
    JobNotFound,
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
    loads,
    queued_job,
    response_doc,
)
from imagerouter.jobs.rules import (
    AUDIT_BY_STATUS,
    AUDIT_TOTALS,
    CANCELED_BY_CLIENT,
    delivery_target,
    final_event_data,
    gone_reason,
    known_key_outcome,
    refund_once,
)
from imagerouter.jobs.schema import create_schema
from imagerouter.jobs.sql import Steps
from imagerouter.jobs.sqlthread import SQLiteThread
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

__all__ = ["SQLiteJobStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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


class SQLiteJobStore(StoreBase):
    """:class:`~imagerouter.jobs.store.JobStore` on one SQLite file (WAL).

    Args:
        path: the database file.
        synchronous: ``NORMAL`` survives a killed process; ``FULL`` also a power cut.
        batch_max: most operations sharing one commit.
        clock: where "now" comes from (its ``wall()``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        batch_max: int = 256,
        clock: Clock | None = None,
    ) -> None:
        self.path = Path(path)
        self.thread = SQLiteThread(path, synchronous=synchronous, batch_max=batch_max)
        self._clock = clock or MonotonicClock()
        self._listeners: list[EventListener] = []

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Start the connection thread and create the schema."""
        await self.thread.start(create_schema)

    async def close(self) -> None:
        """Run what is queued and stop the connection thread."""
        await self.thread.stop()

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        await self.thread.run(lambda conn: conn.execute("SELECT 1").fetchone())

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

    def _publish(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        for listener in list(self._listeners):
            try:
                listener(events)
            except Exception:
                log.exception("job event listener %r failed", listener)

    # --- helpers run on the thread -------------------------------------------------------------

    def _event(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        account_id: str,
        status: str,
        now: float,
        **data: Any,
    ) -> JobEvent:
        payload = event_data(status, **data)
        cursor = conn.execute(
            "INSERT INTO events (job_id, account_id, type, data, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (job_id, account_id, f"job.{status}", dumps(payload), now),
        )
        assert cursor.lastrowid is not None
        return JobEvent(cursor.lastrowid, job_id, account_id, f"job.{status}", now, payload)

    @staticmethod
    def _insert_attempts(
        conn: sqlite3.Connection, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
    ) -> None:
        if attempts:
            conn.executemany(
                f"INSERT INTO attempts (job_id, run, {', '.join(ATTEMPT_FIELDS)}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempt_params(job_id, run, attempts),
            )

    @staticmethod
    def _enqueue_delivery(
        conn: sqlite3.Connection, event: JobEvent, webhook_url: str | None
    ) -> None:
        """Enqueue the webhook of a final event, to its :func:`~.rules.delivery_target`."""
        target = run_steps(conn, delivery_target(event.account_id, webhook_url))
        if target is None:
            return
        conn.execute(
            "INSERT OR IGNORE INTO deliveries (id, job_id, account_id, event_id, event_type, "
            "url, status, next_attempt_at, last_error, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id("msg", 24),
                event.job_id,
                event.account_id,
                event.id,
                event.type,
                target.url,
                target.status,
                target.due_at(event.created_at),
                target.disabled_reason,
                event.created_at,
                event.created_at,
            ),
        )

    # --- accounts, keys, credits ---------------------------------------------------------------

    async def create_account(self, name: str) -> Account:
        """The account called ``name``, created with an empty wallet if new."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> Account:
            conn.execute(
                "INSERT OR IGNORE INTO accounts (id, name, balance, created_at) "
                "VALUES (?, ?, 0, ?)",
                (new_id("acct", 16), name, now),
            )
            row = conn.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?", (name,)
            ).fetchone()
            return Account(*row)

        return await self.thread.run(op)

    async def _find_account(self, column: str, value: str) -> Account | None:
        sql = f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {column} = ?"
        row = await self.thread.run(lambda conn: conn.execute(sql, (value,)).fetchone())
        return None if row is None else Account(*row)

    async def grant_credits(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add ``amount`` (> 0) credits; returns the new balance."""
        if amount <= 0:
            raise ValueError(f"a grant must be positive, not {amount}")
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance",
                (amount, account_id),
            ).fetchone()
            if row is None:
                raise AccountNotFound(account_id)
            conn.execute(
                "INSERT INTO ledger (account_id, kind, amount, balance_after, note, created_at) "
                "VALUES (?, 'grant', ?, ?, ?, ?)",
                (account_id, amount, row[0], note, now),
            )
            return int(row[0])

        return await self.thread.run(op)

    async def ledger(
        self, account_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger, newest first."""
        sql = (
            f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = ? AND id < ? "
            "ORDER BY id DESC LIMIT ?"
        )
        args = (account_id, before_id if before_id is not None else 2**62, limit)
        rows = await self.thread.run(lambda conn: conn.execute(sql, args).fetchall())
        return [LedgerEntry(*row) for row in rows]

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key's lookup id and hash."""
        await self.thread.run(
            lambda conn: conn.execute(
                "INSERT INTO api_keys (id, account_id, secret_hash, name, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.id, record.account_id, record.secret_hash, record.name, record.created_at),
            )
        )

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this lookup id, or None."""
        sql = f"{API_KEY_SELECT} WHERE k.id = ?"
        row = await self.thread.run(lambda conn: conn.execute(sql, (key_id,)).fetchone())
        return None if row is None else ApiKeyRecord(*row)

    async def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one account), oldest first."""
        sql = f"{API_KEY_SELECT} WHERE ? IS NULL OR k.account_id = ? ORDER BY k.created_at"
        rows = await self.thread.run(
            lambda conn: conn.execute(sql, (account_id, account_id)).fetchall()
        )
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke an active key; False if none."""
        now = self._clock.wall()
        cursor = await self.thread.run(
            lambda conn: conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
        )
        return cursor.rowcount > 0

    # --- jobs: the client's side ---------------------------------------------------------------

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit and create the job atomically (InsufficientCredits: nothing written)."""
        created, event = await self.thread.run(lambda conn: self._submit_sync(conn, job, response))
        self._publish([event])
        return created

    async def submit_job_once(
        self, job: NewJob, fingerprint: str, response: StoredResponse, *, ttl_s: float
    ) -> Job | IdempotencyOutcome:
        """Take ``job.idempotency_key``, create and charge the job, and record ``response``
        against the key, all in one transaction; or, if the key was seen before, change
        nothing and return what was found (a replay, a mismatch or a request in flight).

        A crash can therefore never leave a key held without its job, or a job without its
        key's response. InsufficientCredits: nothing written, the key included.
        """
        assert job.idempotency_key is not None

        def op(conn: sqlite3.Connection) -> tuple[Job | IdempotencyOutcome, JobEvent | None]:
            outcome = self._begin_sync(
                conn, job.account_id, job.idempotency_key or "", fingerprint, 0.0, ttl_s
            )
            if outcome.state != "new":
                return outcome, None
            return self._submit_sync(conn, job, response)

        found, event = await self.thread.run(op)
        if event is not None:
            self._publish([event])
        return found

    def _submit_sync(
        self, conn: sqlite3.Connection, job: NewJob, response: StoredResponse | None
    ) -> tuple[Job, JobEvent]:
        now = job.created_at if job.created_at is not None else self._clock.wall()
        request_json = dumps(job.request)
        response_json = None if response is None else dumps(response_doc(response))
        row = conn.execute(
            "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ? "
            "RETURNING balance",
            (job.price, job.account_id, job.price),
        ).fetchone()
        if row is None:
            found = conn.execute(
                "SELECT balance FROM accounts WHERE id = ?", (job.account_id,)
            ).fetchone()
            if found is None:
                raise AccountNotFound(job.account_id)
            raise InsufficientCredits(found[0], job.price)
        conn.execute(
            "INSERT INTO jobs (id, account_id, status, request, price, created_at, "
            "updated_at, deadline_at, idempotency_key) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            (
                job.id,
                job.account_id,
                request_json,
                job.price,
                now,
                now,
                job.deadline_at,
                job.idempotency_key,
            ),
        )
        conn.execute(
            "INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, created_at) "
            "VALUES (?, ?, 'debit', ?, ?, ?)",
            (job.account_id, job.id, -job.price, row[0], now),
        )
        event = self._event(conn, job.id, job.account_id, "queued", now, price=job.price)
        if job.idempotency_key is not None:
            conn.execute(
                "UPDATE idempotency SET job_id = ?, state = CASE WHEN ? IS NULL THEN state "
                "ELSE 'done' END, status_code = ?, response = ? "
                "WHERE account_id = ? AND key = ?",
                (
                    job.id,
                    response_json,
                    None if response is None else response.status,
                    response_json,
                    job.account_id,
                    job.idempotency_key,
                ),
            )
        return queued_job(job, now), event

    async def get_job(self, account_id: str, job_id: str) -> Job | None:
        """The account's job with its attempts, or None."""

        def op(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ? AND account_id = ?",
                (job_id, account_id),
            ).fetchone()
            if row is None:
                return None
            job = job_from_row(row, loads)
            rows = conn.execute(
                f"SELECT run, {', '.join(ATTEMPT_FIELDS)} FROM attempts WHERE job_id = ? "
                "ORDER BY id",
                (job_id,),
            ).fetchall()
            job.attempts = [attempt_from_row(r) for r in rows]
            return job

        return await self.thread.run(op)

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
        sql = (
            f"SELECT seq, {JOB_COLUMNS} FROM jobs WHERE account_id = ? AND seq < ? "
            + ("AND status = ? " if status else "")
            + "ORDER BY seq DESC LIMIT ?"
        )
        args: tuple[Any, ...] = (account_id, before, *((status,) if status else ()), limit + 1)
        rows = await self.thread.run(lambda conn: conn.execute(sql, args).fetchall())
        jobs = [job_from_row(row[1:], loads) for row in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
        return JobPage(jobs, next_cursor)

    async def cancel_job(self, account_id: str, job_id: str) -> Job:
        """Cancel and refund an active job (JobNotFound, JobFinished)."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> tuple[Job, JobEvent]:
            row = conn.execute(
                f"UPDATE jobs SET status = 'canceled', finished_at = ?, updated_at = ?, "
                f"lease_owner = NULL, lease_expires = NULL, error = ? "
                f"WHERE id = ? AND account_id = ? AND {ACTIVE} RETURNING {JOB_COLUMNS}",
                (
                    now,
                    now,
                    dumps(CANCELED_BY_CLIENT),
                    job_id,
                    account_id,
                ),
            ).fetchone()
            if row is None:
                found = conn.execute(
                    "SELECT status FROM jobs WHERE id = ? AND account_id = ?", (job_id, account_id)
                ).fetchone()
                if found is None:
                    raise JobNotFound(job_id)
                raise JobFinished(job_id, found[0])
            job = job_from_row(row, loads)
            job.refunded = run_steps(conn, refund_once(job.id, account_id, job.price, now))
            event = self._event(
                conn, job.id, account_id, "canceled", now, reason="client", refunded=job.refunded
            )
            self._enqueue_delivery(conn, event, job.request.get("webhook_url"))
            return job, event

        job, event = await self.thread.run(op)
        self._publish([event])
        return job

    # --- jobs: the worker's side ---------------------------------------------------------------

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[Job]:
        """Lease up to ``limit`` queued jobs, oldest first, to ``owner``."""
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> tuple[list[Job], list[JobEvent]]:
            now = self._clock.wall()
            rows = conn.execute(
                f"UPDATE jobs SET status = 'processing', lease_owner = ?, lease_expires = ?, "
                f"runs = runs + 1, started_at = coalesce(started_at, ?), updated_at = ? "
                f"WHERE seq IN (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq "
                f"LIMIT ?) RETURNING {JOB_COLUMNS}",
                (owner, now + lease_s, now, now, limit),
            ).fetchall()
            jobs = sorted((job_from_row(row, loads) for row in rows), key=lambda j: j.created_at)
            events = [
                self._event(conn, j.id, j.account_id, "processing", now, run=j.runs) for j in jobs
            ]
            return jobs, events

        jobs, events = await self.thread.run(op)
        self._publish(events)
        return jobs

    async def renew_leases(self, owner: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend ``owner``'s leases on ``job_ids``; the ids it still holds."""
        ids = list(job_ids)
        if not ids:
            return set()

        def op(conn: sqlite3.Connection) -> set[str]:
            expires = self._clock.wall() + lease_s
            held: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"UPDATE jobs SET lease_expires = ? WHERE lease_owner = ? AND "
                    f"status = 'processing' AND id IN ({marks}) RETURNING id",
                    (expires, owner, *chunk),
                ).fetchall()
                held.update(row[0] for row in rows)
            return held

        return await self.thread.run(op)

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
        payload_json = dumps(payload)

        def op(conn: sqlite3.Connection) -> JobEvent | None:
            row = conn.execute(
                f"UPDATE jobs SET status = ?, {column} = ?, finished_at = ?, updated_at = ?, "
                f"lease_owner = NULL, lease_expires = NULL "
                f"WHERE id = ? AND {ACTIVE} AND lease_owner = ? "
                f"RETURNING account_id, runs, price, json_extract(request, '$.webhook_url')",
                (status, payload_json, now, now, job_id, owner),
            ).fetchone()
            if row is None:
                return None
            account_id, run, price, webhook_url = row
            self._insert_attempts(conn, job_id, run, attempts)
            refunded = (
                0
                if status == "completed"
                else run_steps(conn, refund_once(job_id, account_id, price, now))
            )
            data = final_event_data(status, payload, refunded)
            event = self._event(conn, job_id, account_id, status, now, **data)
            self._enqueue_delivery(conn, event, webhook_url)
            return event

        event = await self.thread.run(op)
        if event is None:
            return False
        self._publish([event])
        return True

    async def release_job(self, job_id: str, owner: str, reason: str) -> bool:
        """Put a held processing job back in the queue."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> JobEvent | None:
            row = conn.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = ? WHERE id = ? AND status = 'processing' AND lease_owner = ? "
                "RETURNING account_id",
                (now, job_id, owner),
            ).fetchone()
            if row is None:
                return None
            return self._event(conn, job_id, row[0], "queued", now, reason=reason)

        event = await self.thread.run(op)
        if event is None:
            return False
        self._publish([event])
        return True

    async def requeue_expired(self) -> int:
        """Re-queue processing jobs whose lease has run out."""

        def op(conn: sqlite3.Connection) -> list[JobEvent]:
            now = self._clock.wall()
            rows = conn.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = ? WHERE status = 'processing' AND lease_expires < ? "
                "RETURNING id, account_id",
                (now, now),
            ).fetchall()
            return [
                self._event(conn, job_id, account_id, "queued", now, reason="lease_expired")
                for job_id, account_id in rows
            ]

        events = await self.thread.run(op)
        self._publish(events)
        return len(events)

    # --- events --------------------------------------------------------------------------------

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

    # --- idempotency keys ----------------------------------------------------------------------

    async def idempotency_begin(
        self, account_id: str, key: str, fingerprint: str, lock_s: float, ttl_s: float
    ) -> IdempotencyOutcome:
        """Take ``key`` for a request, or say why not."""
        return await self.thread.run(
            lambda conn: self._begin_sync(conn, account_id, key, fingerprint, lock_s, ttl_s)
        )

    def _begin_sync(
        self,
        conn: sqlite3.Connection,
        account_id: str,
        key: str,
        fingerprint: str,
        lock_s: float,
        ttl_s: float,
    ) -> IdempotencyOutcome:
        now = self._clock.wall()
        row = conn.execute(
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency WHERE account_id = ? AND key = ?",
            (account_id, key),
        ).fetchone()
        if row is not None and row[5] <= now:
            conn.execute(
                "DELETE FROM idempotency WHERE account_id = ? AND key = ?", (account_id, key)
            )
            row = None
        if row is None:
            conn.execute(
                "INSERT INTO idempotency (account_id, key, fingerprint, state, locked_until, "
                "created_at, expires_at) VALUES (?, ?, ?, 'processing', ?, ?, ?)",
                (account_id, key, fingerprint, now + lock_s, now, now + ttl_s),
            )
            return IdempotencyOutcome("new")
        outcome = known_key_outcome(row, fingerprint, now, loads)
        if outcome.state == "new":  # its holder vanished: take it over
            conn.execute(
                "UPDATE idempotency SET locked_until = ? WHERE account_id = ? AND key = ?",
                (now + lock_s, account_id, key),
            )
        return outcome

    async def idempotency_finish(self, account_id: str, key: str, response: StoredResponse) -> None:
        """Store the response of a held key."""
        doc = dumps(response_doc(response))
        await self.thread.run(
            lambda conn: conn.execute(
                "UPDATE idempotency SET state = 'done', status_code = ?, response = ?, "
                "locked_until = NULL WHERE account_id = ? AND key = ?",
                (response.status, doc, account_id, key),
            )
        )

    async def idempotency_release(self, account_id: str, key: str) -> None:
        """Forget a held key whose request changed nothing."""
        await self.thread.run(
            lambda conn: conn.execute(
                "DELETE FROM idempotency WHERE account_id = ? AND key = ? AND state = 'processing'",
                (account_id, key),
            )
        )

    async def purge_idempotency(self) -> int:
        """Delete expired keys."""
        now = self._clock.wall()
        cursor = await self.thread.run(
            lambda conn: conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (now,))
        )
        return cursor.rowcount

    # --- webhooks: endpoints and secrets -------------------------------------------------------

    async def set_webhook_url(self, account_id: str, url: str | None) -> WebhookEndpoint:
        """Register (or, with None, unregister) the account's webhook URL."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> WebhookEndpoint:
            conn.execute(
                "INSERT INTO webhook_endpoints (account_id, url, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET url = excluded.url, "
                "updated_at = excluded.updated_at",
                (account_id, url, now, now),
            )
            if url is not None:
                conn.execute(
                    "DELETE FROM webhook_disabled WHERE account_id = ? AND url = ?",
                    (account_id, url),
                )
            found = self._webhook_sync(conn, account_id)
            assert found is not None
            return found

        return await self.thread.run(op)

    @staticmethod
    def _webhook_sync(conn: sqlite3.Connection, account_id: str) -> WebhookEndpoint | None:
        row = conn.execute(
            f"{WEBHOOK_SELECT} WHERE e.account_id = ?",
            (account_id,),
        ).fetchone()
        return None if row is None else WebhookEndpoint(*row)

    async def get_webhook(self, account_id: str) -> WebhookEndpoint | None:
        """The account's registration, or None."""
        return await self.thread.run(lambda conn: self._webhook_sync(conn, account_id))

    async def add_webhook_secret(
        self, account_id: str, secret: str, grace_s: float
    ) -> WebhookSecret:
        """Make ``secret`` current; the previous one signs ``grace_s`` longer."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> WebhookSecret:
            conn.execute(
                "UPDATE webhook_secrets SET expires_at = ? "
                "WHERE account_id = ? AND expires_at IS NULL",
                (now + grace_s, account_id),
            )
            cursor = conn.execute(
                "INSERT INTO webhook_secrets (account_id, secret, created_at) VALUES (?, ?, ?)",
                (account_id, secret, now),
            )
            assert cursor.lastrowid is not None
            return WebhookSecret(cursor.lastrowid, account_id, secret, now)

        return await self.thread.run(op)

    async def webhook_secrets(self, account_id: str) -> list[WebhookSecret]:
        """The signing secrets: current first, then those in grace."""
        now = self._clock.wall()
        rows = await self.thread.run(
            lambda conn: conn.execute(
                f"SELECT {WEBHOOK_SECRET_COLUMNS} FROM webhook_secrets "
                "WHERE account_id = ? AND (expires_at IS NULL OR expires_at > ?) "
                "ORDER BY expires_at IS NOT NULL, id DESC",
                (account_id, now),
            ).fetchall()
        )
        return [WebhookSecret(*row) for row in rows]

    # --- webhooks: deliveries ------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, limit: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries; disable those whose URL is disabled."""
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[Delivery]:
            now = self._clock.wall()
            conn.execute(
                "UPDATE deliveries SET status = 'disabled', next_attempt_at = NULL, "
                "updated_at = ?, last_error = (SELECT reason FROM webhook_disabled w "
                "WHERE w.account_id = deliveries.account_id AND w.url = deliveries.url) "
                "WHERE status = 'pending' AND next_attempt_at <= ? AND EXISTS (SELECT 1 FROM "
                "webhook_disabled w WHERE w.account_id = deliveries.account_id "
                "AND w.url = deliveries.url)",
                (now, now),
            )
            rows = conn.execute(
                f"UPDATE deliveries SET status = 'delivering', lease_owner = ?, "
                f"lease_expires = ?, updated_at = ? WHERE id IN (SELECT id FROM deliveries "
                f"WHERE status = 'pending' AND next_attempt_at <= ? UNION ALL SELECT id FROM "
                f"deliveries WHERE status = 'delivering' AND lease_expires < ? LIMIT ?) "
                f"RETURNING {DELIVERY_COLUMNS}",
                (owner, now + lease_s, now, now, now, limit),
            ).fetchall()
            return sorted(
                (delivery_from_row(row) for row in rows), key=lambda d: d.next_attempt_at or 0
            )

        return await self.thread.run(op)

    async def set_delivery_body(self, delivery_id: str, body: str) -> str:
        """Fix the body once; the body the delivery now has."""
        row = await self.thread.run(
            lambda conn: conn.execute(
                "UPDATE deliveries SET body = coalesce(body, ?) WHERE id = ? RETURNING body",
                (body, delivery_id),
            ).fetchone()
        )
        return body if row is None else row[0]

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

        def op(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT account_id, url, attempts FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
            if found is None:
                return False
            account_id, url, attempts = found
            conn.execute(
                "INSERT INTO delivery_attempts (delivery_id, attempt, trigger, scheduled_at, "
                "started_at, outcome, status, latency_ms, error, retry_after, next_delay_s, "
                "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    attempts + 1,
                    attempt.trigger,
                    attempt.scheduled_at,
                    attempt.started_at,
                    attempt.outcome,
                    attempt.status,
                    attempt.latency_ms,
                    attempt.error,
                    attempt.retry_after,
                    attempt.next_delay_s,
                    attempt.next_attempt_at,
                ),
            )
            held = conn.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, step = step + ?, "
                "next_attempt_at = ?, lease_owner = NULL, lease_expires = NULL, replay = 0, "
                "last_error = ?, updated_at = ? "
                "WHERE id = ? AND status = 'delivering' AND lease_owner = ? RETURNING id",
                (
                    status,
                    scheduled,
                    next_attempt_at,
                    attempt.error,
                    now,
                    delivery_id,
                    owner,
                ),
            ).fetchone()
            if disable_url:
                reason = gone_reason(url)
                conn.execute(
                    "INSERT OR REPLACE INTO webhook_disabled (account_id, url, disabled_at, "
                    "reason) VALUES (?, ?, ?, ?)",
                    (account_id, url, now, reason),
                )
                conn.execute(
                    "UPDATE deliveries SET status = 'disabled', next_attempt_at = NULL, "
                    "last_error = ?, updated_at = ? "
                    "WHERE account_id = ? AND url = ? AND status = 'pending'",
                    (reason, now, account_id, url),
                )
            return held is not None

        return await self.thread.run(op)

    async def job_deliveries(self, account_id: str, job_id: str) -> list[Delivery]:
        """The job's deliveries with their attempt logs."""

        def op(conn: sqlite3.Connection) -> list[Delivery]:
            deliveries = [
                delivery_from_row(row)
                for row in conn.execute(
                    f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
                    f"WHERE job_id = ? AND account_id = ? ORDER BY event_id",
                    (job_id, account_id),
                ).fetchall()
            ]
            for delivery in deliveries:
                delivery.log = [
                    delivery_attempt_from_row(row)
                    for row in conn.execute(
                        f"SELECT {DELIVERY_ATTEMPT_COLUMNS} FROM delivery_attempts "
                        f"WHERE delivery_id = ? ORDER BY id",
                        (delivery.id,),
                    ).fetchall()
                ]
            return deliveries

        return await self.thread.run(op)

    async def replay_delivery(self, account_id: str, job_id: str) -> DeliveryReplay | None:
        """Make the job's latest delivery due now (a one-off replay if it was final)."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> DeliveryReplay | None:
            row = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE job_id = ? AND account_id = ? "
                f"ORDER BY event_id DESC LIMIT 1",
                (job_id, account_id),
            ).fetchone()
            if row is None:
                return None
            delivery = delivery_from_row(row)
            if delivery.status == "delivering":
                return DeliveryReplay("in_flight", delivery)
            if conn.execute(
                "SELECT 1 FROM webhook_disabled WHERE account_id = ? AND url = ?",
                (account_id, delivery.url),
            ).fetchone():
                return DeliveryReplay("disabled", delivery)
            replay = 0 if delivery.status == "pending" else 1
            updated = conn.execute(
                f"UPDATE deliveries SET status = 'pending', next_attempt_at = ?, replay = ?, "
                f"updated_at = ? WHERE id = ? RETURNING {DELIVERY_COLUMNS}",
                (now, replay, now, delivery.id),
            ).fetchone()
            return DeliveryReplay("queued", delivery_from_row(updated))

        return await self.thread.run(op)

    # --- for tests and tools -------------------------------------------------------------------

    async def audit(self) -> dict[str, Any]:
        """Totals that must always agree: balances against the ledger, jobs against debits."""

        def op(conn: sqlite3.Connection) -> dict[str, Any]:
            totals = {k: int(conn.execute(sql).fetchone()[0]) for k, sql in AUDIT_TOTALS.items()}
            return {**totals, "by_status": dict(conn.execute(AUDIT_BY_STATUS).fetchall())}

        return await self.thread.run(op)
