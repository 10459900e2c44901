"""The client's side of the job queue on PostgreSQL (:class:`~imagerouter.jobs.store.JobQueue`):
submit (one statement: debit, job, ledger entry; plain submits waiting together, each
account's in one statement with their events, :data:`SUBMIT_MANY`), read, list, and cancel
(with its refund, :func:`imagerouter.jobs.rules.refund_once`, and its webhook's
:func:`~imagerouter.jobs.rules.delivery_target`)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from imagerouter.jobs.errors import AccountNotFound, InsufficientCredits, JobFinished, JobNotFound
from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.connection import run_steps
from imagerouter.jobs.postgres.engine import PendingEvent, Tx, lock_account, notify_body
from imagerouter.jobs.postgres.idempotency import begin
from imagerouter.jobs.rows import (
    ACTIVE,
    ATTEMPT_FIELDS,
    JOB_COLUMNS,
    attempt_from_row,
    decode_cursor,
    encode_cursor,
    event_data,
    job_from_row,
    queued_job,
    response_doc,
)
from imagerouter.jobs.rules import CANCELED_BY_CLIENT, WAITER_LOCK_S, delivery_target, refund_once
from imagerouter.jobs.types import (
    IdempotencyOutcome,
    Job,
    JobEvent,
    JobPage,
    NewJob,
    StoredResponse,
)

__all__ = ["SUBMIT", "SUBMIT_MANY", "PostgresJobQueue"]

log = logging.getLogger(__package__)

#: A submit in one statement: debit the wallet if it holds the price, then create the job and
#: its ledger entry from the debit's row (so a short wallet writes nothing).
SUBMIT = (
    "WITH debit AS (UPDATE accounts SET balance = balance - $3 "
    "WHERE id = $2 AND balance >= $3 RETURNING balance), "
    "job AS (INSERT INTO jobs (id, account_id, status, request, price, created_at, "
    "updated_at, deadline_at, idempotency_key) SELECT $1::text, $2::text, 'queued', "
    "$4::jsonb, $3, $5::float8, $5::float8, $6::float8, $7::text FROM debit), "
    "entry AS (INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, "
    "created_at) SELECT $2::text, $1::text, 'debit', -$3::bigint, balance, $5::float8 "
    "FROM debit) SELECT balance FROM debit"
)


#: Many plain submits of one account in one statement, so in one implicit transaction and one
#: round trip: debit the wallet once for all of them if it holds their total (else write
#: nothing), create every job and its ledger entry (each entry's balance the one after that
#: job, in order), then take the events' ids from the counter, insert the events and NOTIFY
#: the other replicas, as :data:`~imagerouter.jobs.postgres.engine.WRITE_EVENTS` does. The
#: counter's update reads ``ok``, so the account's row is locked before the counter's, as in
#: every other transaction. Answers the balance before (NULL: nothing written) and the last
#: event id.
SUBMIT_MANY = (
    "WITH input AS (SELECT * FROM unnest($2::text[], $3::bigint[], $4::jsonb[], "
    "$5::float8[], $6::float8[], $7::jsonb[]) WITH ORDINALITY AS u(id, price, request, "
    "created_at, deadline_at, data, n)), "
    "debit AS (UPDATE accounts SET balance = balance - (SELECT sum(price) FROM input) "
    "WHERE id = $1 AND balance >= (SELECT sum(price) FROM input) "
    "RETURNING balance + (SELECT sum(price) FROM input) AS before), "
    "ok AS (SELECT input.*, debit.before - sum(input.price) OVER (ORDER BY input.n) AS after "
    "FROM input, debit), "
    "job AS (INSERT INTO jobs (id, account_id, status, request, price, created_at, "
    "updated_at, deadline_at) SELECT id, $1, 'queued', request, price, created_at, "
    "created_at, deadline_at FROM ok ORDER BY n), "
    "entry AS (INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, "
    "created_at) SELECT $1, id, 'debit', -price, after, created_at FROM ok ORDER BY n), "
    "c AS (UPDATE event_clock SET last_id = last_id + (SELECT count(*) FROM ok) "
    "WHERE (SELECT count(*) FROM ok) > 0 "
    "RETURNING last_id - (SELECT count(*) FROM ok) AS base, last_id), "
    "e AS (INSERT INTO events (id, job_id, account_id, type, created_at, data) "
    "SELECT c.base + ok.n, ok.id, $1, 'job.queued', ok.created_at, ok.data FROM c, ok) "
    "SELECT (SELECT before FROM debit), (SELECT last_id FROM c), "
    "(SELECT pg_notify($8, (c.base + 1)::text || ' ' || c.last_id::text || ' ' || $9::text) "
    "FROM c)"
)


#: Batches of plain submits in flight at once (see :meth:`PostgresJobQueue.submit_job`).
_SUBMIT_LANES = 2


class PostgresJobQueue(PostgresBase):
    """Submitting, reading and canceling jobs."""

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit and create the job atomically (InsufficientCredits: nothing written). Plain
        submits share one pipelined ``executemany`` (:meth:`_run_submits`)."""
        if job.idempotency_key is None and response is None:
            # Submits of one account all lock its row: many batches at once would only wait
            # for each other's commits, each with a fraction of the jobs. Two overlap one
            # batch's statement with the gathering of the next.
            return await self._engine.pipelined(self._run_submits, job, parallel=_SUBMIT_LANES)
        return await self._submit_alone(job, response)

    async def _submit_alone(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        async def op(conn: asyncpg.Connection, tx: Tx) -> Job:
            return await self._submit(conn, tx, job, response)

        return await self._engine.batched(job.account_id, op)

    async def _run_submits(self, items: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        """Plain submits (no idempotency key): each account's in one statement of its own
        (:data:`SUBMIT_MANY`: one round trip, one commit), accounts in sorted order. Those of
        an account whose wallet does not hold them all, or whose statement failed, run one
        at a time through the engine, so each is refused or created on its own."""
        now = self._clock.wall()
        by_account: dict[str, list[tuple[NewJob, asyncio.Future[Job], float]]] = {}
        for job, future in items:
            when = float(job.created_at if job.created_at is not None else now)
            by_account.setdefault(job.account_id, []).append((job, future, when))
        alone: list[tuple[NewJob, asyncio.Future[Job], float]] = []
        async with self._pool.acquire() as conn:
            for account_id in sorted(by_account):
                group = by_account[account_id]
                pending = [
                    PendingEvent(
                        job.id,
                        account_id,
                        "job.queued",
                        event_data("queued", price=job.price),
                        when,
                    )
                    for job, _, when in group
                ]
                try:
                    before, last, _ = await conn.fetchrow(
                        SUBMIT_MANY,
                        account_id,
                        [job.id for job, _, _ in group],
                        [job.price for job, _, _ in group],
                        [job.request for job, _, _ in group],
                        [when for _, _, when in group],
                        [float(job.deadline_at) for job, _, _ in group],
                        [p.data for p in pending],
                        self.channel,
                        notify_body(pending),
                    )
                except Exception as exc:
                    log.info("%d submits are retried one by one: %r", len(group), exc)
                    before = None
                if before is None:
                    alone.extend(group)
                    continue
                first = last - len(pending) + 1
                self._engine.committed(
                    [
                        JobEvent(first + i, p.job_id, p.account_id, p.type, p.created_at, p.data)
                        for i, p in enumerate(pending)
                    ],
                    len(group),
                )
                for job, future, when in group:
                    if not future.done():
                        future.set_result(queued_job(job, when))
        for job, future, when in alone:
            try:
                created = await self._submit_alone(job)
            except asyncpg.UniqueViolationError as error:
                if error.constraint_name != "jobs_pkey":
                    if not future.done():
                        future.set_exception(error)
                    continue
                # The batch's statement committed before its connection was lost (the job's
                # id is new, so the row is the one it wrote): the job is stored, and charged.
                if not future.done():
                    future.set_result(queued_job(job, when))
            except Exception as error:
                if not future.done():
                    future.set_exception(error)
            else:
                if not future.done():
                    future.set_result(created)

    async def submit_job_once(
        self, job: NewJob, fingerprint: str, response: StoredResponse, *, ttl_s: float
    ) -> Job | IdempotencyOutcome:
        """Take ``job.idempotency_key``, create and charge the job and record ``response``, in
        one transaction; or, if the key is known, change nothing and say what was found."""
        assert job.idempotency_key is not None

        async def op(conn: asyncpg.Connection, tx: Tx) -> Job | IdempotencyOutcome:
            if not await lock_account(conn, job.account_id):
                raise AccountNotFound(job.account_id)
            key, now = job.idempotency_key or "", self._clock.wall()
            outcome = await begin(conn, job.account_id, key, fingerprint, 0.0, ttl_s, now)
            if outcome.state != "new":
                return outcome
            return await self._submit(conn, tx, job, response)

        return await self._engine.batched(job.account_id, op, savepoint=True)

    async def _submit(
        self, conn: asyncpg.Connection, tx: Tx, job: NewJob, response: StoredResponse | None
    ) -> Job:
        now = job.created_at if job.created_at is not None else self._clock.wall()
        balance = await conn.fetchval(
            SUBMIT,
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
            await conn.execute(  # still processing (a request waiting for its job): short lock
                "UPDATE idempotency SET job_id = $1, "
                "state = CASE WHEN $2::jsonb IS NULL THEN state ELSE 'done' END, "
                "status_code = $3, response = $2, locked_until = CASE WHEN $2::jsonb IS NULL "
                "THEN LEAST(locked_until, $6) ELSE locked_until END "
                "WHERE account_id = $4 AND key = $5",
                job.id,
                doc,
                None if response is None else response.status,
                job.account_id,
                job.idempotency_key,
                float(now) + WAITER_LOCK_S,
            )
        return queued_job(job, float(now))

    async def get_job(
        self, account_id: str, job_id: str, *, with_attempts: bool = True
    ) -> Job | None:
        """The account's job with its attempts (unless not ``with_attempts``), or None."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND account_id = $2",
                job_id,
                account_id,
            )
            if row is None:
                return None
            job = job_from_row(row)
            if not with_attempts:
                return job
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

        async def op(conn: asyncpg.Connection, tx: Tx) -> Job:
            if not await lock_account(conn, account_id):
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

        return await self._engine.batched(account_id, op)
