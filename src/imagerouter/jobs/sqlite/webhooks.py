"""Webhook endpoints, signing secrets and deliveries on SQLite
(:class:`~imagerouter.jobs.store.WebhookStore`), and :func:`enqueue_delivery` (and, for a batch
of completions, :func:`enqueue_deliveries`), which the final job transitions call in their
transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

from imagerouter.jobs.ids import new_delivery_id
from imagerouter.jobs.rows import (
    DELIVERY_ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    WEBHOOK_SECRET_COLUMNS,
    WEBHOOK_SELECT,
    delivery_attempt_from_row,
    delivery_from_row,
)
from imagerouter.jobs.rules import DeliveryTarget, delivery_target, gone_reason
from imagerouter.jobs.sqlite.base import SQLiteBase, execute_rows, id_chunks, log, run_steps
from imagerouter.jobs.types import (
    AttemptRecord,
    Deferral,
    Delivery,
    DeliveryAttempt,
    DeliveryHandoff,
    DeliveryReplay,
    HandedDelivery,
    Job,
    JobEvent,
    WebhookEndpoint,
    WebhookSecret,
)

__all__ = ["SQLiteWebhooks", "enqueue_deliveries", "enqueue_delivery"]


_INSERT_DELIVERIES = (
    "INSERT OR IGNORE INTO deliveries (id, job_id, account_id, event_id, event_type, url, "
    "status, next_attempt_at, last_error, created_at, updated_at) VALUES "
)
_DELIVERY_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: A delivery written leased to this process's worker, its body fixed (a handoff's).
_INSERT_LEASED = (
    "INSERT INTO deliveries (id, job_id, account_id, event_id, event_type, url, status, "
    "next_attempt_at, last_error, created_at, updated_at, lease_owner, lease_expires, body) "
    "VALUES "
)
_LEASED_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _delivery_params(event: JobEvent, target: DeliveryTarget) -> tuple[object, ...]:
    return (
        new_delivery_id(event.created_at),
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
    )


def enqueue_delivery(
    conn: sqlite3.Connection,
    event: JobEvent,
    webhook_url: str | None,
    target: DeliveryTarget | None = None,
) -> bool:
    """Enqueue a final event's webhook, to its :func:`~imagerouter.jobs.rules.delivery_target`
    (or to ``target`` when the caller found it: a progress event's); whether it waits for a
    claim."""
    if target is None:
        target = run_steps(conn, delivery_target(event.account_id, webhook_url))
    if target is None:
        return False
    conn.execute(_INSERT_DELIVERIES + _DELIVERY_ROW, _delivery_params(event, target))
    return target.status == "pending"


def enqueue_deliveries(
    conn: sqlite3.Connection,
    finals: Sequence[tuple[JobEvent, str | None]],
    handoff: DeliveryHandoff | None = None,
    final_job: Callable[[int], Job] | None = None,
) -> tuple[list[HandedDelivery], bool]:
    """Enqueue the webhooks of final events (each with its job's ``webhook_url``), as
    :func:`enqueue_delivery` does one: one lookup of the target per account and URL, and one
    multi-row INSERT.

    With a ``handoff`` (and ``final_job(i)``, the final job of ``finals[i]``), those due now
    are written leased to it with their bodies fixed, while it has room and the account has
    a signing secret: the deliveries handed, and whether any was left pending for a claim."""
    targets: dict[tuple[str, str | None], DeliveryTarget | None] = {}
    params: list[object] = []
    room = 0 if handoff is None or final_job is None else handoff.room()
    secrets: dict[str, tuple[str, ...]] = {}
    handed: list[HandedDelivery] = []
    leased: list[object] = []
    queued = False
    for i, (event, webhook_url) in enumerate(finals):
        key = (event.account_id, webhook_url)
        if key not in targets:
            targets[key] = run_steps(conn, delivery_target(event.account_id, webhook_url))
        target = targets[key]
        if target is None:
            continue
        if room > 0 and target.status == "pending":
            assert handoff is not None
            assert final_job is not None
            account = event.account_id
            if account not in secrets:
                secrets[account] = _signing_secrets(conn, account, event.created_at)
            delivery = _handed_delivery(event, target.url)
            if secrets[account] and _fix_body(handoff, final_job(i), delivery):
                leased += _leased_params(delivery, handoff)
                handed.append(HandedDelivery(delivery, secrets[account]))
                room -= 1
                continue
        params += _delivery_params(event, target)
        queued = queued or target.status == "pending"
    execute_rows(conn, _INSERT_DELIVERIES, _DELIVERY_ROW, params)
    execute_rows(conn, _INSERT_LEASED, _LEASED_ROW, leased)
    return handed, queued


def _handed_delivery(event: JobEvent, url: str) -> Delivery:
    """A delivery leased as it is written (``status`` delivering, body not yet built)."""
    return Delivery(
        id=new_delivery_id(event.created_at),
        job_id=event.job_id,
        account_id=event.account_id,
        event_id=event.id,
        event_type=event.type,
        url=url,
        status="delivering",
        attempts=0,
        step=0,
        next_attempt_at=event.created_at,
        created_at=event.created_at,
        updated_at=event.created_at,
    )


def _fix_body(handoff: DeliveryHandoff, job: Job, delivery: Delivery) -> bool:
    """Build the handed delivery's body; False (it is left for a claim, whose attempt builds
    it again and says why it cannot) if that failed."""
    try:
        delivery.body = handoff.body(job, delivery)
    except Exception:
        log.exception("the body of webhook %s could not be built", delivery.id)
        return False
    return True


def _leased_params(delivery: Delivery, handoff: DeliveryHandoff) -> tuple[object, ...]:
    """:data:`_LEASED_ROW`'s parameters."""
    d = delivery
    return (
        d.id,
        d.job_id,
        d.account_id,
        d.event_id,
        d.event_type,
        d.url,
        d.status,
        d.next_attempt_at,
        None,
        d.created_at,
        d.updated_at,
        handoff.owner,
        d.created_at + handoff.lease_s,
        d.body,
    )


def _signing_secrets(conn: sqlite3.Connection, account_id: str, now: float) -> tuple[str, ...]:
    """The account's signing secrets in force at ``now``: current first, then those in
    grace (as :meth:`SQLiteWebhooks.webhook_secrets` reads them)."""
    return tuple(
        row[0]
        for row in conn.execute(
            "SELECT secret FROM webhook_secrets WHERE account_id = ? AND "
            "(expires_at IS NULL OR expires_at > ?) ORDER BY expires_at IS NOT NULL, id DESC",
            (account_id, now),
        )
    )


class SQLiteWebhooks(SQLiteBase):
    """Endpoints and secrets; deliveries leased, logged and replayed."""

    # --- endpoints and secrets -----------------------------------------------------------------

    async def enable_webhook_url(self, account_id: str, url: str) -> bool:
        """Clear a ``410 Gone`` disablement of ``url`` for the account; True if there was one."""
        return await self.thread.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM webhook_disabled WHERE account_id = ? AND url = ?",
                    (account_id, url),
                ).rowcount
                > 0
            )
        )

    async def set_webhook_url(
        self, account_id: str, url: str | None, *, progress: bool | None = None
    ) -> WebhookEndpoint:
        """Register (or, with None, unregister) the account's webhook URL; ``progress`` opts
        in to or out of job.progress webhooks (None keeps the choice)."""
        now = self._clock.wall()
        opt_in = None if progress is None else int(progress)

        def op(conn: sqlite3.Connection) -> WebhookEndpoint:
            conn.execute(
                "INSERT INTO webhook_endpoints (account_id, url, created_at, updated_at, progress) "
                "VALUES (?, ?, ?, ?, coalesce(?, 0)) ON CONFLICT (account_id) DO UPDATE SET "
                "url = excluded.url, updated_at = excluded.updated_at, "
                "progress = coalesce(?, webhook_endpoints.progress)",
                (account_id, url, now, now, opt_in, opt_in),
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

    # --- deliveries ----------------------------------------------------------------------------

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

    async def release_deliveries(self, owner: str, delivery_ids: Sequence[str]) -> int:
        """Make ``owner``'s leased deliveries among ``delivery_ids`` pending again. With none,
        it still takes its turn on the store's thread: it answers after every commit queued
        before it has handed its deliveries over (a stopping worker's last call)."""
        ids = list(delivery_ids)

        def op(conn: sqlite3.Connection) -> int:
            now = self._clock.wall()
            released = 0
            for chunk, marks in id_chunks(ids):
                released += conn.execute(
                    f"UPDATE deliveries SET status = 'pending', lease_owner = NULL, "
                    f"lease_expires = NULL, next_attempt_at = coalesce(next_attempt_at, ?), "
                    f"updated_at = ? WHERE lease_owner = ? AND status = 'delivering' "
                    f"AND id IN ({marks})",
                    (now, now, owner, *chunk),
                ).rowcount
            return released

        return await self.thread.run(op)

    async def defer_deliveries(self, owner: str, deferrals: Sequence[Deferral]) -> int:
        """Make ``owner``'s leased deliveries of ``deferrals`` pending again at their times."""
        if not deferrals:
            return 0
        now = self._clock.wall()
        rows = [(d.due_at, d.reason, now, d.delivery_id, owner) for d in deferrals]
        return await self.thread.run(
            lambda conn: (
                conn.executemany(
                    "UPDATE deliveries SET status = 'pending', lease_owner = NULL, "
                    "lease_expires = NULL, next_attempt_at = ?, last_error = ?, "
                    "updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'delivering'",
                    rows,
                ).rowcount
            )
        )

    async def set_delivery_body(self, delivery_id: str, body: str) -> str:
        """Fix the body once; the body the delivery now has."""
        row = await self.thread.run(
            lambda conn: conn.execute(
                "UPDATE deliveries SET body = coalesce(body, ?) WHERE id = ? RETURNING body",
                (body, delivery_id),
            ).fetchone()
        )
        return body if row is None else row[0]

    async def set_delivery_bodies(self, bodies: Mapping[str, str]) -> dict[str, str]:
        """Each delivery's :meth:`set_delivery_body`, in one transaction, by multi-row
        UPDATEs."""
        if not bodies:
            return {}

        def op(conn: sqlite3.Connection) -> dict[str, str]:
            rows = [value for item in bodies.items() for value in item]
            kept = dict(execute_rows(conn, _FIX_BODIES_HEAD, "(?, ?)", rows, _FIX_BODIES_TAIL))
            return {key: kept.get(key, body) for key, body in bodies.items()}

        return await self.thread.run(op)

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
        """Each record's :meth:`record_delivery_attempt`, in one transaction: by three
        statements for all of them, unless one disables its URL or two share a delivery (then
        one record after the other, in order)."""
        if not records:
            return []
        now = self._clock.wall()
        together = not any(record.disable_url for record in records) and len(
            {record.delivery_id for record in records}
        ) == len(records)
        if together:
            return await self.thread.run(lambda conn: _record_together(conn, records, now))
        return await self.thread.run(
            lambda conn: [_record_attempt(conn, record, now) for record in records]
        )

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


#: Bodies fixed once: (delivery id, body) a row; each delivery's body afterwards. Many rows a
#: statement are fine here, unlike a job's result: a body holds URLs, never an image or the
#: prompt, so the values a cached statement keeps bound stay small.
_FIX_BODIES_HEAD = "UPDATE deliveries SET body = coalesce(body, v.column2) FROM (VALUES "
_FIX_BODIES_TAIL = ") AS v WHERE deliveries.id = v.column1 RETURNING deliveries.id, deliveries.body"
_INSERT_ATTEMPTS = (
    "INSERT INTO delivery_attempts (delivery_id, attempt, trigger, scheduled_at, started_at, "
    "outcome, status, latency_ms, error, retry_after, next_delay_s, next_attempt_at) VALUES "
)
_ATTEMPT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_MOVE_ON = (
    "UPDATE deliveries SET status = ?, attempts = attempts + 1, step = step + ?, "
    "next_attempt_at = ?, lease_owner = NULL, lease_expires = NULL, replay = 0, "
    "last_error = ?, updated_at = ? "
    "WHERE id = ? AND status = 'delivering' AND lease_owner = ? RETURNING id"
)
#: :data:`_MOVE_ON` for many deliveries: (id, owner, status, step, next attempt, error, now)
#: a row.
_MOVE_ON_HEAD = (
    "UPDATE deliveries SET status = v.column3, attempts = attempts + 1, "
    "step = step + v.column4, next_attempt_at = v.column5, lease_owner = NULL, "
    "lease_expires = NULL, replay = 0, last_error = v.column6, updated_at = v.column7 "
    "FROM (VALUES "
)
_MOVE_ON_ROW = "(?, ?, ?, ?, ?, ?, ?)"
_MOVE_ON_TAIL = (
    ") AS v WHERE deliveries.id = v.column1 AND deliveries.status = 'delivering' "
    "AND deliveries.lease_owner = v.column2 RETURNING id"
)


def _attempt_row(record: AttemptRecord, number: int) -> tuple[object, ...]:
    """The record's attempt as :data:`_ATTEMPT_ROW` parameters, numbered ``number``."""
    attempt = record.attempt
    return (
        record.delivery_id,
        number,
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
    )


def _step(record: AttemptRecord) -> int:
    """How far the attempt moves its delivery along the retry schedule."""
    return 1 if record.attempt.trigger == "scheduled" else 0


def _record_together(
    conn: sqlite3.Connection, records: Sequence[AttemptRecord], now: float
) -> list[bool]:
    """:func:`_record_attempt` for records of distinct deliveries, none disabling its URL:
    their deliveries read by one SELECT, their attempts logged by multi-row INSERTs, and the
    deliveries their owners still hold moved on by multi-row UPDATEs."""
    ids = [record.delivery_id for record in records]
    attempts: dict[str, int] = {}
    for chunk, marks in id_chunks(ids):
        attempts.update(
            conn.execute(f"SELECT id, attempts FROM deliveries WHERE id IN ({marks})", chunk)
        )
    found = [record for record in records if record.delivery_id in attempts]
    execute_rows(
        conn,
        _INSERT_ATTEMPTS,
        _ATTEMPT_ROW,
        [v for r in found for v in _attempt_row(r, attempts[r.delivery_id] + 1)],
    )
    moves = [
        value
        for r in found
        for value in (
            r.delivery_id,
            r.owner,
            r.status,
            _step(r),
            r.next_attempt_at,
            r.attempt.error,
            now,
        )
    ]
    held = {row[0] for row in execute_rows(conn, _MOVE_ON_HEAD, _MOVE_ON_ROW, moves, _MOVE_ON_TAIL)}
    return [delivery_id in held for delivery_id in ids]


def _record_attempt(conn: sqlite3.Connection, record: AttemptRecord, now: float) -> bool:
    """Log one attempt and move its delivery on, while its owner holds the lease."""
    delivery_id = record.delivery_id
    found = conn.execute(
        "SELECT account_id, url, attempts FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()
    if found is None:
        return False
    account_id, url, attempts = found
    conn.execute(_INSERT_ATTEMPTS + _ATTEMPT_ROW, _attempt_row(record, attempts + 1))
    held = conn.execute(
        _MOVE_ON,
        (
            record.status,
            _step(record),
            record.next_attempt_at,
            record.attempt.error,
            now,
            delivery_id,
            record.owner,
        ),
    ).fetchone()
    if record.disable_url:
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
