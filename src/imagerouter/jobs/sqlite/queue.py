"""The client's side of the job queue on SQLite (:class:`~imagerouter.jobs.store.JobQueue`):
submit (debit, job, ledger entry, event, and the idempotency key, in one transaction), read,
list and cancel (with its refund, :func:`imagerouter.jobs.rules.refund_once`)."""

from __future__ import annotations

import sqlite3
from typing import Any

from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    JobFinished,
    JobNotFound,
    StoreError,
)
from imagerouter.jobs.rows import (
    ACTIVE,
    ATTEMPT_FIELDS,
    JOB_COLUMNS,
    attempt_from_row,
    decode_cursor,
    dumps,
    encode_cursor,
    job_from_row,
    loads,
    queued_job,
    response_doc,
)
from imagerouter.jobs.rules import CANCELED_BY_CLIENT, WAITER_LOCK_S, refund_once
from imagerouter.jobs.sqlite.base import SQLiteBase, execute_rows, id_chunks, run_steps
from imagerouter.jobs.sqlite.events import write_event, write_events
from imagerouter.jobs.sqlite.idempotency import begin
from imagerouter.jobs.sqlite.thread import Answer
from imagerouter.jobs.sqlite.webhooks import enqueue_delivery
from imagerouter.jobs.types import (
    IdempotencyOutcome,
    Job,
    JobPage,
    NewJob,
    StoredResponse,
)

__all__ = ["SQLiteJobQueue"]

_DEBIT = "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ? RETURNING balance"
_JOB_ROW = "(?, ?, 'queued', ?, ?, ?, ?, ?)"
_INSERT_JOBS = (
    "INSERT INTO jobs (id, account_id, status, request, price, created_at, updated_at, "
    "deadline_at) VALUES "
)
_DEBIT_ROW = "(?, ?, 'debit', ?, ?, ?)"
_INSERT_DEBITS = (
    "INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, created_at) VALUES "
)


class SQLiteJobQueue(SQLiteBase):
    """Submitting, reading and canceling jobs."""

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit and create the job atomically (InsufficientCredits: nothing written). Plain
        submits waiting together share a few statements (:meth:`_submit_many`)."""
        if job.idempotency_key is None and response is None:
            return await self.thread.run_many(self._submit_many, job)
        return await self.thread.run(lambda conn: self._submit_sync(conn, job, response))

    def _submit_many(self, conn: sqlite3.Connection, jobs: list[NewJob]) -> list[Answer]:
        """Plain submits (no idempotency key): each account debited once for all its jobs,
        then the jobs, ledger entries and events written by a few multi-row INSERTs, in
        queue order (so event ids ascend in the order the answers are delivered). An account
        whose wallet does not hold all its jobs takes them one at a time
        (:meth:`_submit_sync`), so each is refused or created on its own."""
        wall = self._clock.wall()
        totals: dict[str, int] = {}
        for job in jobs:
            totals[job.account_id] = totals.get(job.account_id, 0) + job.price
        balances: dict[str, int] = {}  # each debited account's balance before the batch
        for account_id, total in totals.items():
            row = conn.execute(_DEBIT, (total, account_id, total)).fetchone()
            if row is not None:
                balances[account_id] = row[0] + total
        answers: list[Answer] = [(None, None)] * len(jobs)
        created: list[tuple[int, float]] = []
        for i, job in enumerate(jobs):
            if job.account_id in balances:
                created.append((i, job.created_at if job.created_at is not None else wall))
                continue
            # not all of the account's jobs fit (or no such account): this one alone, after
            # those before it, so the event ids stay in queue order
            self._write_created(conn, jobs, created, balances, answers)
            created = []
            try:
                answers[i] = (self._submit_sync(conn, job, None), None)
            except StoreError as exc:  # refused before writing anything
                answers[i] = (None, exc)
        self._write_created(conn, jobs, created, balances, answers)
        return answers

    def _write_created(
        self,
        conn: sqlite3.Connection,
        jobs: list[NewJob],
        created: list[tuple[int, float]],
        balances: dict[str, int],
        answers: list[Answer],
    ) -> None:
        """Write the jobs ``created`` (already debited), their ledger entries (``balances``
        runs down through them) and events, and record their answers."""
        if not created:
            return
        job_rows: list[Any] = []
        ledger_rows: list[Any] = []
        for i, now in created:
            job = jobs[i]
            account_id = job.account_id
            balances[account_id] -= job.price
            price = job.price
            job_rows += (job.id, account_id, dumps(job.request), price, now, now, job.deadline_at)
            ledger_rows += (account_id, job.id, -price, balances[account_id], now)
        execute_rows(conn, _INSERT_JOBS, _JOB_ROW, job_rows)
        execute_rows(conn, _INSERT_DEBITS, _DEBIT_ROW, ledger_rows)
        events = write_events(
            conn,
            "queued",
            [(jobs[i].id, jobs[i].account_id, {"price": jobs[i].price}, now) for i, now in created],
        )
        for i, now in created:
            answers[i] = (queued_job(jobs[i], now), None)
        self.thread.emit(events)

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

        def op(conn: sqlite3.Connection) -> Job | IdempotencyOutcome:
            key = job.idempotency_key or ""
            now = self._clock.wall()
            outcome = begin(conn, job.account_id, key, fingerprint, 0.0, ttl_s, now)
            if outcome.state != "new":
                return outcome
            return self._submit_sync(conn, job, response)

        return await self.thread.run(op)

    def _submit_sync(
        self, conn: sqlite3.Connection, job: NewJob, response: StoredResponse | None
    ) -> Job:
        """Debit and create one job (and record ``response`` on its key); its event goes
        out on commit."""
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
        event = write_event(conn, job.id, job.account_id, "queued", now, price=job.price)
        if job.idempotency_key is not None:
            conn.execute(  # still processing (a request waiting for its job): a short lock
                "UPDATE idempotency SET job_id = ?, state = CASE WHEN ? IS NULL THEN state "
                "ELSE 'done' END, status_code = ?, response = ?, locked_until = CASE WHEN ? "
                "IS NULL THEN MIN(locked_until, ?) ELSE locked_until END "
                "WHERE account_id = ? AND key = ?",
                (
                    job.id,
                    response_json,
                    None if response is None else response.status,
                    response_json,
                    response_json,
                    now + WAITER_LOCK_S,
                    job.account_id,
                    job.idempotency_key,
                ),
            )
        self.thread.emit([event])
        return queued_job(job, now)

    async def get_job(
        self, account_id: str, job_id: str, *, with_attempts: bool = True
    ) -> Job | None:
        """The account's job with its attempts (unless not ``with_attempts``), or None. Reads
        waiting together (the webhook bodies of a claim, clients polling) share two statements
        (:meth:`_get_many`)."""
        return await self.thread.run_many(self._get_many, (account_id, job_id, with_attempts))

    def _get_many(
        self, conn: sqlite3.Connection, wanted: list[tuple[str, str, bool]]
    ) -> list[Answer]:
        """Each ``(account_id, job_id, with_attempts)`` of ``wanted`` read by one SELECT of
        the jobs and one of the attempts of those that want them; each answer is a Job of its
        own (or None for a job that is not the account's)."""
        rows: dict[str, Any] = {}
        for chunk, marks in id_chunks(list({job_id for _, job_id, _ in wanted})):
            for row in conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks})", chunk):
                rows[row[0]] = row
        with_attempts = list(
            {
                job_id
                for account_id, job_id, want in wanted
                if want and _owns(rows, account_id, job_id)
            }
        )
        attempts: dict[str, list[Any]] = {}
        for chunk, marks in id_chunks(with_attempts):
            for row in conn.execute(
                f"SELECT job_id, run, {', '.join(ATTEMPT_FIELDS)} FROM attempts "
                f"WHERE job_id IN ({marks}) ORDER BY id",
                chunk,
            ):
                attempts.setdefault(row[0], []).append(row[1:])
        answers: list[Answer] = []
        for account_id, job_id, want in wanted:
            if not _owns(rows, account_id, job_id):
                answers.append((None, None))
                continue
            job = job_from_row(rows[job_id], loads)
            if want:
                job.attempts = [attempt_from_row(r) for r in attempts.get(job_id, ())]
            answers.append((job, None))
        return answers

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

        def op(conn: sqlite3.Connection) -> Job:
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
            event = write_event(
                conn, job.id, account_id, "canceled", now, reason="client", refunded=job.refunded
            )
            if enqueue_delivery(conn, event, job.request.get("webhook_url")):
                self._queued_delivery()
            self.thread.emit([event])
            return job

        return await self.thread.run(op)


def _owns(rows: dict[str, Any], account_id: str, job_id: str) -> bool:
    """Whether the job read as ``rows[job_id]`` exists and is ``account_id``'s."""
    row = rows.get(job_id)
    return row is not None and row[1] == account_id
