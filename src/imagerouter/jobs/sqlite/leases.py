"""The worker's side of the job queue on SQLite (:class:`~imagerouter.jobs.store.JobQueue`):
claims under leases, renewals, final states written once by the lease holder (a failure with
its refund and a final state with its webhook delivery, in the same transaction), hand-backs
and the expired-lease sweep."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
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
from imagerouter.jobs.sqlite.base import SQLiteBase, execute_rows, id_chunks, run_steps
from imagerouter.jobs.sqlite.events import INSERT_EVENTS, write_event, write_events
from imagerouter.jobs.sqlite.thread import Answer
from imagerouter.jobs.sqlite.webhooks import enqueue_deliveries, enqueue_delivery
from imagerouter.jobs.types import Job, JobEvent

__all__ = ["SQLiteLeases"]


_INSERT_ATTEMPTS = f"INSERT INTO attempts (job_id, run, {', '.join(ATTEMPT_FIELDS)}) VALUES "
_ATTEMPT_ROW = "(" + ", ".join("?" * (2 + len(ATTEMPT_FIELDS))) + ")"
#: Completions of held jobs: (job id, lease owner, finished at) a row; what a completed job's
#: event and webhook need back. The results are written by :data:`_SET_RESULT`, one row a
#: step: SQLite keeps a cached statement's last bound values, and a result can be megabytes
#: (an inline image), so no statement binds more than one.
_COMPLETE_HEAD = (
    "UPDATE jobs SET status = 'completed', finished_at = v.column3, updated_at = v.column3, "
    "lease_owner = NULL, lease_expires = NULL FROM (VALUES "
)
_COMPLETE_ROW = "(?, ?, ?)"
_COMPLETE_TAIL = (
    f") AS v WHERE jobs.id = v.column1 AND jobs.lease_owner = v.column2 AND jobs.{ACTIVE} "
    "RETURNING id, account_id, runs, price, json_extract(request, '$.webhook_url')"
)
#: :data:`_COMPLETE_TAIL` with what a webhook's body needs of the job beside (while a
#: delivery handoff is set): its request, created_at, deadline_at, started_at, idempotency key.
_COMPLETE_TAIL_JOB = (
    _COMPLETE_TAIL + ", request, created_at, deadline_at, started_at, idempotency_key"
)
_SET_RESULT = "UPDATE jobs SET result = ? WHERE id = ?"


def _attempt_rows(job_id: str, run: int, attempts: Sequence[dict[str, Any]]) -> list[Any]:
    """The attempts of the job's run ``run`` as :data:`_ATTEMPT_ROW` parameters, flat."""
    return [value for row in attempt_params(job_id, run, attempts) for value in row]


@dataclass(frozen=True, slots=True)
class _Finish:
    """A final state to write: the job, its lease owner, the state and its result or error
    (and that as JSON), the run's attempts, and when."""

    job_id: str
    owner: str
    status: str
    payload: dict[str, Any]
    payload_json: str
    attempts: Sequence[dict[str, Any]]
    now: float


def _completed_job(finish: _Finish, row: Sequence[Any]) -> Job:
    """The job as its completion wrote it, from :data:`_COMPLETE_TAIL_JOB`'s row (after the
    id): account, runs, price, webhook URL, request, created, deadline, started, idempotency
    key."""
    return Job(
        id=finish.job_id,
        account_id=row[0],
        status="completed",
        request=loads(row[4]),
        price=row[2],
        refunded=0,
        created_at=row[5],
        updated_at=finish.now,
        deadline_at=row[6],
        runs=row[1],
        started_at=row[7],
        finished_at=finish.now,
        result=finish.payload,
        idempotency_key=row[8],
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
            events = write_events(
                conn, "processing", [(j.id, j.account_id, {"run": j.runs}, now) for j in jobs]
            )
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
        finish = _Finish(
            job_id, owner, status, payload, dumps(payload), attempts, self._clock.wall()
        )
        return await self.thread.run_many(self._finish_many, finish) is not None

    def _finish_many(self, conn: sqlite3.Connection, finishes: list[_Finish]) -> list[Answer]:
        """Finishes waiting together, in queue order: completions by a few statements for all
        of them (:meth:`_complete_together`), a failure (with its refund) or a job's second
        finish in the batch alone, after those before it, so that event ids ascend in queue
        order and the first finish of a job is the one that counts."""
        events: list[JobEvent | None] = [None] * len(finishes)
        together: list[int] = []
        seen: set[str] = set()
        for i, finish in enumerate(finishes):
            if finish.status == "completed" and finish.job_id not in seen:
                seen.add(finish.job_id)
                together.append(i)
                continue
            self._complete_together(conn, finishes, together, events)
            together, seen = [], set()
            events[i] = self._finish_alone(conn, finish)
        self._complete_together(conn, finishes, together, events)
        self.thread.emit([event for event in events if event is not None])
        return [(event, None) for event in events]

    def _complete_together(
        self,
        conn: sqlite3.Connection,
        finishes: list[_Finish],
        indexes: list[int],
        events: list[JobEvent | None],
    ) -> None:
        """Write the completions ``finishes[i]`` for ``i`` in ``indexes`` (distinct jobs): one
        UPDATE … FROM VALUES for the jobs' states and one ``executemany`` for their results,
        multi-row INSERTs for their attempts, events and webhook deliveries; each written
        one's event goes to ``events[i]``."""
        if not indexes:
            return
        params: list[Any] = []
        for i in indexes:
            f = finishes[i]
            params += (f.job_id, f.owner, f.now)
        handoff = self._handoff
        tail = _COMPLETE_TAIL if handoff is None else _COMPLETE_TAIL_JOB
        held = {
            row[0]: row[1:]
            for row in execute_rows(conn, _COMPLETE_HEAD, _COMPLETE_ROW, params, tail)
        }
        done = [(i, held[finishes[i].job_id]) for i in indexes if finishes[i].job_id in held]
        if not done:
            return
        conn.executemany(
            _SET_RESULT, [(finishes[i].payload_json, finishes[i].job_id) for i, _ in done]
        )
        attempt_rows: list[Any] = []
        for i, row in done:
            attempt_rows += _attempt_rows(finishes[i].job_id, row[1], finishes[i].attempts)
        execute_rows(conn, _INSERT_ATTEMPTS, _ATTEMPT_ROW, attempt_rows)
        completed = write_events(
            conn,
            "completed",
            [
                (
                    finishes[i].job_id,
                    row[0],
                    final_event_data("completed", finishes[i].payload, 0),
                    finishes[i].now,
                )
                for i, row in done
            ],
        )
        finals = []
        for (i, row), event in zip(done, completed, strict=True):
            events[i] = event
            finals.append((event, row[3]))
        handed, queued = enqueue_deliveries(
            conn, finals, handoff, lambda n: _completed_job(finishes[done[n][0]], done[n][1])
        )
        self.thread.emit(handed)
        if queued:
            self._queued_delivery()

    def _finish_alone(self, conn: sqlite3.Connection, finish: _Finish) -> JobEvent | None:
        """Write one final state (a failure with its refund) while its owner holds the lease;
        its event, or None when the job was not the owner's to finish."""
        f = finish
        column = "result" if f.status == "completed" else "error"
        row = conn.execute(
            f"UPDATE jobs SET status = ?, {column} = ?, finished_at = ?, updated_at = ?, "
            f"lease_owner = NULL, lease_expires = NULL "
            f"WHERE id = ? AND {ACTIVE} AND lease_owner = ? "
            f"RETURNING account_id, runs, price, json_extract(request, '$.webhook_url')",
            (f.status, f.payload_json, f.now, f.now, f.job_id, f.owner),
        ).fetchone()
        if row is None:
            return None
        account_id, run, price, webhook_url = row
        execute_rows(conn, _INSERT_ATTEMPTS, _ATTEMPT_ROW, _attempt_rows(f.job_id, run, f.attempts))
        refunded = (
            0
            if f.status == "completed"
            else run_steps(conn, refund_once(f.job_id, account_id, price, f.now))
        )
        data = final_event_data(f.status, f.payload, refunded)
        event = write_event(conn, f.job_id, account_id, f.status, f.now, **data)
        if enqueue_delivery(conn, event, webhook_url):
            self._queued_delivery()
        return event

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
                INSERT_EVENTS + "(?, ?, ?, ?, ?)",
                (job_id, account_id, PROGRESS_EVENT, dumps(payload), now),
            )
            assert cursor.lastrowid is not None
            event = JobEvent(cursor.lastrowid, job_id, account_id, PROGRESS_EVENT, now, payload)
            target = run_steps(conn, progress_delivery_target(account_id, webhook_url))
            if target is not None and enqueue_delivery(conn, event, webhook_url, target):
                self._queued_delivery()
            self.thread.emit([event])
            return event

        return await self.thread.run(op) is not None

    async def record_canceled_attempts(
        self, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
    ) -> bool:
        """Write the attempts of run ``run`` of a job canceled while it ran, once: only while
        the job is canceled, still at that run, and holds none of that run's attempts."""
        if not attempts:
            return False

        def op(conn: sqlite3.Connection) -> bool:
            found = conn.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND status = 'canceled' AND runs = ? "
                "AND NOT EXISTS (SELECT 1 FROM attempts WHERE job_id = ? AND run = ?)",
                (job_id, run, job_id, run),
            ).fetchone()
            if found is None:
                return False
            execute_rows(conn, _INSERT_ATTEMPTS, _ATTEMPT_ROW, _attempt_rows(job_id, run, attempts))
            return True

        return await self.thread.run(op)

    async def release_job(
        self,
        job_id: str,
        owner: str,
        reason: str,
        attempts: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Put a held processing job back in the queue, with the attempts its run made."""
        now = self._clock.wall()

        def op(conn: sqlite3.Connection) -> JobEvent | None:
            row = conn.execute(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, "
                "updated_at = ? WHERE id = ? AND status = 'processing' AND lease_owner = ? "
                "RETURNING account_id, runs",
                (now, job_id, owner),
            ).fetchone()
            if row is None:
                return None
            if attempts:
                rows = _attempt_rows(job_id, row[1], attempts)
                execute_rows(conn, _INSERT_ATTEMPTS, _ATTEMPT_ROW, rows)
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
            events = write_events(
                conn,
                "queued",
                [
                    (job_id, account_id, {"reason": "lease_expired"}, now)
                    for job_id, account_id in rows
                ],
            )
            self.thread.emit(events)
            return events

        return len(await self.thread.run(op))
