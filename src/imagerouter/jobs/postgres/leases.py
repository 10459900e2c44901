"""The worker's side of the job queue on PostgreSQL (:class:`~imagerouter.jobs.store.JobQueue`):
claims with ``FOR UPDATE SKIP LOCKED`` under leases, renewals, final states written once by
the lease holder (a failure with its refund and a final state with its webhook delivery, in
the same transaction), hand-backs and the expired-lease sweep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.connection import run_steps
from imagerouter.jobs.postgres.engine import PendingEvent, Tx, lock_account
from imagerouter.jobs.rows import (
    ACTIVE,
    ATTEMPT_FIELDS,
    JOB_COLUMNS,
    attempt_params,
    job_from_row,
    qualified,
)
from imagerouter.jobs.rules import (
    PROGRESS_EVENT,
    delivery_target,
    final_event_data,
    progress_delivery_target,
    progress_event_data,
    refund_once,
)
from imagerouter.jobs.types import Job

__all__ = ["PostgresLeases"]


async def insert_attempts(
    conn: asyncpg.Connection, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
) -> None:
    """Record the attempts of the job's run ``run``."""
    if attempts:
        await conn.executemany(
            f"INSERT INTO attempts (job_id, run, {', '.join(ATTEMPT_FIELDS)}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            attempt_params(job_id, run, attempts),
        )


class PostgresLeases(PostgresBase):
    """Claiming, renewing, finishing, releasing and re-queuing jobs (``complete_job`` and
    ``fail_job`` come from :class:`~imagerouter.jobs.common.StoreBase`, over ``_finish``)."""

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[Job]:
        """Lease up to ``limit`` queued jobs, oldest first, to ``owner`` (SKIP LOCKED: two
        claimers never wait on, nor get, the same job)."""
        if limit <= 0:
            return []

        async def op(conn: asyncpg.Connection, tx: Tx) -> list[Job]:
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

        jobs = await self._engine.solo(op)
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

        async def op(conn: asyncpg.Connection, tx: Tx) -> set[str]:
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

        return await self._engine.solo(op)

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

        async def op(conn: asyncpg.Connection, tx: Tx) -> bool:
            if status != "completed":  # a failure refunds: the account row first
                await lock_account(conn, account_id)
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
            await insert_attempts(conn, job_id, run, attempts)
            target = await run_steps(conn, delivery_target(account_id, webhook_url))
            refunded = (
                0
                if status == "completed"
                else await run_steps(conn, refund_once(job_id, account_id, price, now))
            )
            data = final_event_data(status, payload, refunded)
            tx.event(job_id, account_id, status, now, target, **data)
            return True

        done = await self._engine.batched(account_id, op, locks_account=status != "completed")
        self._job_accounts.pop(job_id, None)
        return done

    async def add_progress(self, job_id: str, owner: str, data: dict[str, Any]) -> bool:
        """Write a ``job.progress`` event while ``owner`` holds the lease (and its webhook
        when the account opted in). The job's row is share-locked, so a completion racing
        it commits after it, and its event id comes after the progress event's."""
        now = self._clock.wall()
        account_id = self._job_accounts.get(job_id) or await self._pool.fetchval(
            "SELECT account_id FROM jobs WHERE id = $1", job_id
        )
        if account_id is None:
            return False
        payload = progress_event_data(data)

        async def op(conn: asyncpg.Connection, tx: Tx) -> bool:
            webhook_url = await conn.fetchval(
                "SELECT coalesce(request->>'webhook_url', '') FROM jobs WHERE id = $1 "
                "AND status = 'processing' AND lease_owner = $2 FOR SHARE",
                job_id,
                owner,
            )
            if webhook_url is None:
                return False
            target = await run_steps(
                conn, progress_delivery_target(account_id, webhook_url or None)
            )
            tx.events.append(PendingEvent(job_id, account_id, PROGRESS_EVENT, payload, now, target))
            return True

        return await self._engine.batched(account_id, op, locks_account=False)

    async def record_canceled_attempts(
        self, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
    ) -> bool:
        """Write the attempts of run ``run`` of a job canceled while it ran, once: only while
        the job is canceled, still at that run, and holds none of that run's attempts (the
        job's row locked, so two writers cannot both find none)."""
        if not attempts:
            return False
        account_id = await self._pool.fetchval("SELECT account_id FROM jobs WHERE id = $1", job_id)
        if account_id is None:
            return False

        async def op(conn: asyncpg.Connection, tx: Tx) -> bool:
            found = await conn.fetchval(
                "SELECT 1 FROM jobs WHERE id = $1 AND status = 'canceled' AND runs = $2 "
                "AND NOT EXISTS (SELECT 1 FROM attempts WHERE job_id = $1 AND run = $2) "
                "FOR UPDATE",
                job_id,
                run,
            )
            if found is None:
                return False
            await insert_attempts(conn, job_id, run, attempts)
            return True

        return await self._engine.batched(account_id, op, locks_account=False)

    async def release_job(
        self,
        job_id: str,
        owner: str,
        reason: str,
        attempts: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Put a held processing job back in the queue, with the attempts its run made."""
        now = self._clock.wall()
        account_id = self._job_accounts.pop(job_id, None) or await self._pool.fetchval(
            "SELECT account_id FROM jobs WHERE id = $1", job_id
        )
        if account_id is None:
            return False

        async def op(conn: asyncpg.Connection, tx: Tx) -> bool:
            await lock_account(conn, account_id)
            run = await conn.fetchval(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = $1 WHERE id = $2 AND status = 'processing' AND lease_owner = $3 "
                "RETURNING runs",
                now,
                job_id,
                owner,
            )
            if run is None:
                return False
            if attempts:
                await insert_attempts(conn, job_id, run, attempts)
            tx.event(job_id, account_id, "queued", now, reason=reason)
            return True

        return await self._engine.batched(account_id, op)

    async def requeue_expired(self) -> int:
        """Re-queue processing jobs whose lease has run out (SKIP LOCKED: replicas sweeping
        at once split the work instead of waiting on each other)."""

        async def op(conn: asyncpg.Connection, tx: Tx) -> int:
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

        return await self._engine.solo(op)
