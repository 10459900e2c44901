"""Idempotency keys on SQLite (:class:`~imagerouter.jobs.store.IdempotencyStore`); what a known
key answers is :func:`imagerouter.jobs.rules.known_key_outcome`."""

from __future__ import annotations

import sqlite3

from imagerouter.jobs.rows import IDEMPOTENCY_COLUMNS, dumps, loads, response_doc
from imagerouter.jobs.rules import WAITER_LOCK_S, known_key_outcome
from imagerouter.jobs.sqlite.base import SQLiteBase
from imagerouter.jobs.types import IdempotencyOutcome, StoredResponse

__all__ = ["SQLiteIdempotency", "begin"]


def begin(
    conn: sqlite3.Connection,
    account_id: str,
    key: str,
    fingerprint: str,
    lock_s: float,
    ttl_s: float,
    now: float,
) -> IdempotencyOutcome:
    """Take ``key`` for a request at ``now``, or say why not (in the caller's transaction)."""
    row = conn.execute(
        f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency WHERE account_id = ? AND key = ?",
        (account_id, key),
    ).fetchone()
    if row is not None and row[5] <= now:
        conn.execute("DELETE FROM idempotency WHERE account_id = ? AND key = ?", (account_id, key))
        row = None
    if row is None:
        conn.execute(
            "INSERT INTO idempotency (account_id, key, fingerprint, state, locked_until, "
            "created_at, expires_at) VALUES (?, ?, ?, 'processing', ?, ?, ?)",
            (account_id, key, fingerprint, now + lock_s, now, now + ttl_s),
        )
        return IdempotencyOutcome("new")
    outcome = known_key_outcome(row, fingerprint, now, loads)
    if outcome.state == "new":  # its holder vanished: take it over (only to wait, if its job
        # exists: a short lock, as the job's creation left it)
        held_s = lock_s if outcome.job_id is None else min(lock_s, WAITER_LOCK_S)
        conn.execute(
            "UPDATE idempotency SET locked_until = ? WHERE account_id = ? AND key = ?",
            (now + held_s, account_id, key),
        )
    return outcome


class SQLiteIdempotency(SQLiteBase):
    """Taking, finishing, releasing and purging keys."""

    async def idempotency_begin(
        self, account_id: str, key: str, fingerprint: str, lock_s: float, ttl_s: float
    ) -> IdempotencyOutcome:
        """Take ``key`` for a request, or say why not."""
        return await self.thread.run(
            lambda conn: begin(
                conn, account_id, key, fingerprint, lock_s, ttl_s, self._clock.wall()
            )
        )

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
        """Delete expired keys, ``purge_batch`` an op (other work runs in between)."""
        now = self._clock.wall()

        async def step(batch: int) -> int:
            def op(conn: sqlite3.Connection) -> int:
                return conn.execute(
                    "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency "
                    "WHERE expires_at <= ? LIMIT ?)",
                    (now, batch),
                ).rowcount

            return await self.thread.run(op)

        return await self._purge_in_steps(step)
