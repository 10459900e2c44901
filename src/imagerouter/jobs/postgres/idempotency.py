"""Idempotency keys on PostgreSQL (:class:`~imagerouter.jobs.store.IdempotencyStore`); what a
known key answers is :func:`imagerouter.jobs.rules.known_key_outcome`."""

from __future__ import annotations

import asyncpg

from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.engine import Tx
from imagerouter.jobs.rows import IDEMPOTENCY_COLUMNS, response_doc
from imagerouter.jobs.rules import WAITER_LOCK_S, known_key_outcome
from imagerouter.jobs.types import IdempotencyOutcome, StoredResponse

__all__ = ["PostgresIdempotency", "begin"]


async def begin(
    conn: asyncpg.Connection,
    account_id: str,
    key: str,
    fingerprint: str,
    lock_s: float,
    ttl_s: float,
    now: float,
) -> IdempotencyOutcome:
    """Take ``key`` for a request at ``now``, or say why not (in the caller's transaction)."""
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
        if outcome.state == "new":  # its holder vanished: take it over (only to wait, if its
            # job exists: a short lock, as the job's creation left it)
            held_s = lock_s if outcome.job_id is None else min(lock_s, WAITER_LOCK_S)
            await conn.execute(
                "UPDATE idempotency SET locked_until = $1 WHERE account_id = $2 AND key = $3",
                now + held_s,
                account_id,
                key,
            )
        return outcome
    return IdempotencyOutcome("in_flight")


class PostgresIdempotency(PostgresBase):
    """Taking, finishing, releasing and purging keys."""

    async def idempotency_begin(
        self, account_id: str, key: str, fingerprint: str, lock_s: float, ttl_s: float
    ) -> IdempotencyOutcome:
        """Take ``key`` for a request, or say why not."""

        async def op(conn: asyncpg.Connection, tx: Tx) -> IdempotencyOutcome:
            now = self._clock.wall()
            return await begin(conn, account_id, key, fingerprint, lock_s, ttl_s, now)

        return await self._engine.solo(op)

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
        """Delete expired keys, ``purge_batch`` a statement."""
        now = self._clock.wall()

        async def step(batch: int) -> int:
            done = await self._pool.execute(
                "DELETE FROM idempotency WHERE ctid IN (SELECT ctid FROM idempotency "
                "WHERE expires_at <= $1 LIMIT $2)",
                now,
                batch,
            )
            return int(done.split()[-1])

        return await self._purge_in_steps(step)
