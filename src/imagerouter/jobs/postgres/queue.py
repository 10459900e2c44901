"""The client's side of the job queue on PostgreSQL (:class:`~imagerouter.jobs.store.JobQueue`):
submit (one statement: debit, job, ledger entry; plain submits pipelined many to a
transaction), read, list, and cancel (with its refund, :func:`imagerouter.jobs.rules.refund_once`,
and its webhook's :func:`~imagerouter.jobs.rules.delivery_target`)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from imagerouter.jobs.errors import AccountNotFound, InsufficientCredits, JobFinished, JobNotFound
from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.connection import run_steps
from imagerouter.jobs.postgres.engine import Tx, lock_account
from imagerouter.jobs.postgres.idempotency import begin
from imagerouter.jobs.rows import (
    ACTIVE,
    ATTEMPT_FIELDS,
    JOB_COLUMNS,
    attempt_from_row,
    decode_cursor,
    encode_cursor,
    job_from_row,
    queued_job,
    response_doc,
)
from imagerouter.jobs.rules import CANCELED_BY_CLIENT, delivery_target, refund_once
from imagerouter.jobs.types import IdempotencyOutcome, Job, JobPage, NewJob, StoredResponse

__all__ = ["SUBMIT", "PostgresJobQueue"]

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


class PostgresJobQueue(PostgresBase):
    """Submitting, reading and canceling jobs."""

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit and create the job atomically (InsufficientCredits: nothing written). Plain
        submits share one pipelined ``executemany`` (:meth:`_run_submits`)."""
        if job.idempotency_key is None and response is None:
            return await self._engine.pipelined(self._run_submits, job)
        return await self._submit_alone(job, response)

    async def _submit_alone(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        async def op(conn: asyncpg.Connection, tx: Tx) -> Job:
            return await self._submit(conn, tx, job, response)

        return await self._engine.batched(job.account_id, op)

    async def _run_submits(self, items: list[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        """Plain submits (no idempotency key) in one transaction and one pipelined
        ``executemany``, by account; the ones the database did not create were refused."""
        items.sort(key=lambda item: item[0].account_id)
        now = self._clock.wall()
        times = [float(job.created_at if job.created_at is not None else now) for job, _ in items]
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    SUBMIT,
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
                tx = Tx()
                for (job, _), when in zip(items, times, strict=True):
                    if job.id in created:
                        tx.event(job.id, job.account_id, "queued", when, price=job.price)
                events = await self._engine.write_events(conn, tx.events) if tx.events else []
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
        self._engine.committed(events, len(items))
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
