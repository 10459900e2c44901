"""Webhook endpoints, signing secrets and deliveries on PostgreSQL
(:class:`~imagerouter.jobs.store.WebhookStore`). Deliveries are enqueued with their final
events, by :meth:`~imagerouter.jobs.postgres.engine.GroupCommit.write_events`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from imagerouter.jobs.errors import AccountNotFound
from imagerouter.jobs.postgres.base import PostgresBase
from imagerouter.jobs.postgres.engine import Tx
from imagerouter.jobs.rows import (
    DELIVERY_ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    WEBHOOK_SECRET_COLUMNS,
    WEBHOOK_SELECT,
    delivery_attempt_from_row,
    delivery_from_row,
    float_or_none,
    qualified,
)
from imagerouter.jobs.rules import gone_reason
from imagerouter.jobs.types import (
    AttemptRecord,
    Deferral,
    Delivery,
    DeliveryAttempt,
    DeliveryReplay,
    WebhookEndpoint,
    WebhookSecret,
)

__all__ = ["PostgresWebhooks"]


class PostgresWebhooks(PostgresBase):
    """Endpoints and secrets; deliveries leased, logged and replayed."""

    # --- endpoints and secrets -----------------------------------------------------------------

    async def enable_webhook_url(self, account_id: str, url: str) -> bool:
        """Clear a ``410 Gone`` disablement of ``url`` for the account; True if there was one."""
        deleted = await self._pool.fetchval(
            "WITH gone AS (DELETE FROM webhook_disabled WHERE account_id = $1 AND url = $2 "
            "RETURNING 1) SELECT count(*) FROM gone",
            account_id,
            url,
        )
        return bool(deleted)

    async def set_webhook_url(
        self, account_id: str, url: str | None, *, progress: bool | None = None
    ) -> WebhookEndpoint:
        """Register (or, with None, unregister) the account's webhook URL; ``progress`` opts
        in to or out of job.progress webhooks (None keeps the choice)."""
        now = self._clock.wall()

        async def op(conn: asyncpg.Connection, tx: Tx) -> WebhookEndpoint:
            await conn.execute(
                "INSERT INTO webhook_endpoints (account_id, url, created_at, updated_at, "
                "progress) VALUES ($1, $2, $3, $3, coalesce($4::boolean, false)) "
                "ON CONFLICT (account_id) DO UPDATE SET url = excluded.url, "
                "updated_at = excluded.updated_at, "
                "progress = coalesce($4::boolean, webhook_endpoints.progress)",
                account_id,
                url,
                now,
                progress,
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
            return await self._engine.solo(op)
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

        async def op(conn: asyncpg.Connection, tx: Tx) -> WebhookSecret:
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
            return await self._engine.solo(op)
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

    # --- deliveries ----------------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, limit: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries (SKIP LOCKED); disable those whose URL is
        disabled."""
        if limit <= 0:
            return []

        async def op(conn: asyncpg.Connection, tx: Tx) -> list[Delivery]:
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

        return await self._engine.solo(op)

    async def release_deliveries(self, owner: str, delivery_ids: Sequence[str]) -> int:
        """Make ``owner``'s leased deliveries among ``delivery_ids`` pending again."""
        if not delivery_ids:
            return 0
        rows = await self._pool.fetch(
            "UPDATE deliveries SET status = 'pending', lease_owner = NULL, "
            "lease_expires = NULL, next_attempt_at = coalesce(next_attempt_at, $1), "
            "updated_at = $1 WHERE lease_owner = $2 AND status = 'delivering' "
            "AND id = ANY($3::text[]) RETURNING id",
            self._clock.wall(),
            owner,
            list(delivery_ids),
        )
        return len(rows)

    async def defer_deliveries(self, owner: str, deferrals: Sequence[Deferral]) -> int:
        """Make ``owner``'s leased deliveries of ``deferrals`` pending again at their times,
        in one statement."""
        if not deferrals:
            return 0
        ordered = sorted(deferrals, key=lambda d: d.delivery_id)
        rows = await self._pool.fetch(
            "UPDATE deliveries d SET status = 'pending', lease_owner = NULL, "
            "lease_expires = NULL, next_attempt_at = v.due, last_error = v.reason, "
            "updated_at = $4 "
            "FROM unnest($1::text[], $2::float8[], $3::text[]) AS v(id, due, reason) "
            "WHERE d.id = v.id AND d.lease_owner = $5 AND d.status = 'delivering' "
            "RETURNING d.id",
            [d.delivery_id for d in ordered],
            [d.due_at for d in ordered],
            [d.reason for d in ordered],
            self._clock.wall(),
            owner,
        )
        return len(rows)

    async def set_delivery_body(self, delivery_id: str, body: str) -> str:
        """Fix the body once; the body the delivery now has."""
        found = await self._pool.fetchval(
            "UPDATE deliveries SET body = coalesce(body, $1) WHERE id = $2 RETURNING body",
            body,
            delivery_id,
        )
        return body if found is None else found

    async def set_delivery_bodies(self, bodies: Mapping[str, str]) -> dict[str, str]:
        """Each delivery's :meth:`set_delivery_body`, in one statement."""
        if not bodies:
            return {}
        ids = sorted(bodies)
        rows = await self._pool.fetch(
            "UPDATE deliveries d SET body = coalesce(d.body, v.body) "
            "FROM unnest($1::text[], $2::text[]) AS v(id, body) WHERE d.id = v.id "
            "RETURNING d.id, d.body",
            ids,
            [bodies[i] for i in ids],
        )
        found = {row[0]: row[1] for row in rows}
        return {i: found.get(i, body) for i, body in bodies.items()}

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
        record = AttemptRecord(delivery_id, owner, attempt, status, next_attempt_at, disable_url)
        [held] = await self.record_delivery_attempts([record])
        return held

    async def record_delivery_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        """Each record's :meth:`record_delivery_attempt`, in one transaction (deliveries locked
        in id order, so that two batches never wait on each other in a cycle)."""
        if not records:
            return []
        now = self._clock.wall()
        order = sorted(range(len(records)), key=lambda i: records[i].delivery_id)

        async def op(conn: asyncpg.Connection, tx: Tx) -> list[bool]:
            held = [False] * len(records)
            for i in order:
                held[i] = await _record_attempt(conn, records[i], now)
            return held

        return await self._engine.solo(op)

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

        async def op(conn: asyncpg.Connection, tx: Tx) -> DeliveryReplay | None:
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

        return await self._engine.solo(op)


async def _record_attempt(conn: asyncpg.Connection, record: AttemptRecord, now: float) -> bool:
    """Log one attempt and move its delivery on, while its owner holds the lease."""
    attempt, delivery_id = record.attempt, record.delivery_id
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
        float_or_none(attempt.latency_ms),
        attempt.error,
        float_or_none(attempt.retry_after),
        float_or_none(attempt.next_delay_s),
        float_or_none(attempt.next_attempt_at),
    )
    held = await conn.fetchval(
        "UPDATE deliveries SET status = $1, attempts = attempts + 1, step = step + $2, "
        "next_attempt_at = $3, lease_owner = NULL, lease_expires = NULL, replay = false, "
        "last_error = $4, updated_at = $5 "
        "WHERE id = $6 AND status = 'delivering' AND lease_owner = $7 RETURNING id",
        record.status,
        1 if attempt.trigger == "scheduled" else 0,
        float_or_none(record.next_attempt_at),
        attempt.error,
        now,
        delivery_id,
        record.owner,
    )
    if record.disable_url:
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
