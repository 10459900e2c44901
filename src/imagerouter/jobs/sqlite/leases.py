"""The worker's side of the job queue on SQLite (:class:`~imagerouter.jobs.store.JobQueue`):
claims under leases, renewals, final states written once by the lease holder (a failure with
its refund and a final state with its webhook delivery, in the same transaction), hand-backs
and the expired-lease sweep."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from imagerouter.jobs.rows import (
    ACTIVE,
    ATTEMPT_FIELDS,
    JOB_COLUMNS,
    attempt_params,
    dumps,
    job_from_row,
    loads,
)
from imagerouter.jobs.rules import (
    PROGRESS_EVENT,
    final_event_data,
    progress_delivery_target,
    progress_event_data,
    refund_once,
)
from imagerouter.jobs.sqlite.base import SQLiteBase, id_chunks, run_steps
from imagerouter.jobs.sqlite.events import write_event
from imagerouter.jobs.sqlite.webhooks import enqueue_delivery
from imagerouter.jobs.types import Job, JobEvent

__all__ = ["SQLiteLeases"]


def insert_attempts(
    conn: sqlite3.Connection, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
) -> None:
    """Record the attempts of the job's run ``run``."""
    if attempts:
        conn.executemany(
            f"INSERT INTO attempts (job_id, run, {', '.join(ATTEMPT_FIELDS)}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempt_params(job_id, run, attempts),
        )


class SQLiteLeases(SQLiteBase):
    """Claiming, renewing, finishing, releasing and re-queuing jobs (``complete_job`` and
    ``fail_job`` come from :class:`~imagerouter.jobs.common.StoreBase`, over ``_finish``)."""

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[Job]:
        """Lease up to ``limit`` queued jobs, oldest first, to ``owner``."""
        if limit <= 0:
            return []

        def op(conn: sqlite3.Connection) -> list[Job]:
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
                write_event(conn, j.id, j.account_id, "processing", now, run=j.runs) for j in jobs
            ]
            self.thread.emit(events)
            return jobs

        return await self.thread.run(op)

    async def renew_leases(self, owner: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend ``owner``'s leases on ``job_ids``; the ids it still holds."""
        ids = list(job_ids)
        if not ids:
            return set()

        def op(conn: sqlite3.Connection) -> set[str]:
            expires = self._clock.wall() + lease_s
            held: set[str] = set()
            for chunk, marks in id_chunks(ids):
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
            insert_attempts(conn, job_id, run, attempts)
            refunded = (
                0
                if status == "completed"
                else run_steps(conn, refund_once(job_id, account_id, price, now))
            )
            data = final_event_data(status, payload, refunded)
            event = write_event(conn, job_id, account_id, status, now, **data)
            enqueue_delivery(conn, event, webhook_url)
            self.thread.emit([event])
            return event

        return await self.thread.run(op) is not None

    async def add_progress(self, job_id: str, owner: str, data: dict[str, Any]) -> bool:
        """Write a ``job.progress`` event while ``owner`` holds the lease (and its webhook
        when the account opted in)."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> JobEvent | None:
            row = conn.execute(
                "SELECT account_id, json_extract(request, '$.webhook_url') FROM jobs "
                "WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                (job_id, owner),
            ).fetchone()
            if row is None:
                return None
            account_id, webhook_url = row
            payload = progress_event_data(data)
            cursor = conn.execute(
                "INSERT INTO events (job_id, account_id, type, data, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (job_id, account_id, PROGRESS_EVENT, dumps(payload), now),
            )
            assert cursor.lastrowid is not None
            event = JobEvent(cursor.lastrowid, job_id, account_id, PROGRESS_EVENT, now, payload)
            target = run_steps(conn, progress_delivery_target(account_id, webhook_url))
            if target is not None:
                enqueue_delivery(conn, event, webhook_url, target)
            self.thread.emit([event])
            return event

        return await self.thread.run(op) is not None

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
            event = write_event(conn, job_id, row[0], "queued", now, reason=reason)
            self.thread.emit([event])
            return event

        return await self.thread.run(op) is not None

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
            events = [
                write_event(conn, job_id, account_id, "queued", now, reason="lease_expired")
                for job_id, account_id in rows
            ]
            self.thread.emit(events)
            return events

        return len(await self.thread.run(op))
