"""The job store's rules about money, webhooks and idempotency keys, stated once for both
backends (as :mod:`imagerouter.jobs.sql` steps or plain Python) and run by each inside the
transaction that changes the job.

* **A job's price is refunded exactly once**, in the transaction that fails or cancels it
  (:func:`refund_once`); the ledger's unique ``(job_id, kind)`` index backs the check up.
* **A final event's webhook goes to** the job's own ``webhook_url``, else the URL its account
  registered, and is enqueued ``disabled`` instead of ``pending`` when a ``410 Gone`` disabled
  that URL for the account (:func:`delivery_target`, :class:`DeliveryTarget`).
* **A known idempotency key** answers a replay, a mismatch or "in flight", or passes to the
  next request when its holder vanished (:func:`known_key_outcome`).
* **The books balance** (:data:`AUDIT_TOTALS`): balances against the ledger, one debit per
  job, one refund per failed or canceled paid job, one final event per job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from imagerouter.jobs.rows import stored_response
from imagerouter.jobs.sql import Steps, execute, fetch_row, fetch_value
from imagerouter.jobs.types import IdempotencyOutcome

__all__ = [
    "AUDIT_BY_STATUS",
    "AUDIT_TOTALS",
    "CANCELED_BY_CLIENT",
    "PROGRESS_EVENT",
    "WAITER_LOCK_S",
    "DeliveryTarget",
    "delivery_target",
    "final_event_data",
    "gone_reason",
    "known_key_outcome",
    "progress_delivery_target",
    "progress_event_data",
    "refund_once",
]

# --- money -------------------------------------------------------------------------------------


def refund_once(job_id: str, account_id: str, price: int, now: float) -> Steps[int]:
    """Pay the job's price back unless it was already: the amount refunded (0 if it was, or
    the job was free). Run it in the transaction that writes the job's failure or
    cancellation, after locking the account's row where the database needs that."""
    if price <= 0:
        return 0
    if (
        yield fetch_value(
            "SELECT 1 FROM ledger WHERE job_id = :job_id AND kind = 'refund'", job_id=job_id
        )
    ) is not None:
        return 0
    balance = yield fetch_value(
        "UPDATE accounts SET balance = balance + :price WHERE id = :account_id RETURNING balance",
        price=price,
        account_id=account_id,
    )
    yield execute(
        "INSERT INTO ledger (account_id, job_id, kind, amount, balance_after, created_at) "
        "VALUES (:account_id, :job_id, 'refund', :price, :balance, :now)",
        account_id=account_id,
        job_id=job_id,
        price=price,
        balance=balance,
        now=now,
    )
    yield execute(
        "UPDATE jobs SET refunded = :price WHERE id = :job_id", price=price, job_id=job_id
    )
    return price


#: The ``error`` of a job its client canceled.
CANCELED_BY_CLIENT = {"code": "canceled", "message": "canceled by the client"}


def final_event_data(status: str, payload: dict[str, Any], refunded: int) -> dict[str, Any]:
    """What a worker's final event says beside its status: the provider that completed the
    job, or the failure's code and message and the amount refunded."""
    if status == "completed":
        return {"provider": payload.get("provider")}
    error = {"code": payload.get("code"), "message": payload.get("message")}
    return {"error": error, "refunded": refunded}


#: The type of a progress event (the job stays ``processing``; it is never final).
PROGRESS_EVENT = "job.progress"
_PROGRESS_FIELDS = ("provider", "provider_status", "queue_position", "log")


def progress_event_data(data: dict[str, Any]) -> dict[str, Any]:
    """A progress event's ``data``: the job's status (``processing``) and what the provider's
    queue reported (``provider``, ``provider_status``, ``queue_position``, ``log``)."""
    return {"status": "processing", **{k: data.get(k) for k in _PROGRESS_FIELDS}}


#: Totals that must always agree, each one scalar query.
AUDIT_TOTALS = {
    "balances": "SELECT coalesce(sum(balance), 0) FROM accounts",
    "ledger_sum": "SELECT coalesce(sum(amount), 0) FROM ledger",
    "jobs": "SELECT count(*) FROM jobs",
    "debits": "SELECT count(*) FROM ledger WHERE kind = 'debit'",
    "refunds": "SELECT count(*) FROM ledger WHERE kind = 'refund'",
    "refundable_jobs": (
        "SELECT count(*) FROM jobs WHERE status IN ('failed', 'canceled') AND price > 0"
    ),
    "final_events": (
        "SELECT count(*) FROM events WHERE type IN ('job.completed', 'job.failed', 'job.canceled')"
    ),
    "jobs_with_two_final_events": (
        "SELECT count(*) FROM (SELECT job_id FROM events WHERE type IN "
        "('job.completed', 'job.failed', 'job.canceled') GROUP BY job_id "
        "HAVING count(*) > 1) t"
    ),
}
#: Jobs by status, as ``(status, count)`` rows.
AUDIT_BY_STATUS = "SELECT status, count(*) FROM jobs GROUP BY status"


# --- webhooks ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """Where a final event's webhook goes, and why that URL is disabled (None if it is not)."""

    url: str
    disabled_reason: str | None = None

    @property
    def status(self) -> str:
        """The new delivery's status: ``pending``, or ``disabled`` for a disabled URL."""
        return "disabled" if self.disabled_reason else "pending"

    def due_at(self, created_at: float) -> float | None:
        """When the new delivery is due: at once, or never for a disabled URL."""
        return None if self.disabled_reason else created_at


def delivery_target(account_id: str, webhook_url: str | None) -> Steps[DeliveryTarget | None]:
    """The target of a final event's webhook: the job's ``webhook_url``, else the account's
    registered URL, with the reason a ``410 Gone`` disabled it for the account; None when
    there is no URL (nothing is delivered)."""
    row = yield fetch_row(
        "SELECT u.url, d.reason FROM (SELECT coalesce(CAST(:url AS text), "
        "(SELECT url FROM webhook_endpoints WHERE account_id = :account_id)) AS url) u "
        "LEFT JOIN webhook_disabled d ON d.account_id = :account_id AND d.url = u.url",
        account_id=account_id,
        url=webhook_url or None,
    )
    if row is None or not row[0]:
        return None
    return DeliveryTarget(row[0], row[1])


def progress_delivery_target(
    account_id: str, webhook_url: str | None
) -> Steps[DeliveryTarget | None]:
    """The target of a ``job.progress`` webhook: as for a final event, but only for an
    account that opted in (``PUT /v1/webhook`` with ``progress: true``); None otherwise."""
    opted_in = yield fetch_value(
        "SELECT 1 FROM webhook_endpoints WHERE account_id = :account_id AND progress",
        account_id=account_id,
    )
    if opted_in is None:
        return None
    return (yield from delivery_target(account_id, webhook_url))


def gone_reason(url: str) -> str:
    """Why ``url`` is disabled after it answered ``410 Gone``, as deliveries report it."""
    return f"{url} answered 410 Gone; register it again with PUT /v1/webhook"


# --- idempotency keys --------------------------------------------------------------------------

#: How long a key stays locked once its job exists while its request waits for the job (the
#: OpenAI route): a retry within it is a 409, after it the retry takes the key over and waits
#: on the same job (one job, one charge). The long lock before that guards the job's creation;
#: kept for the whole wait, a crashed holder's retries got 409s for the deadline and 30 s more.
WAITER_LOCK_S = 10.0


def known_key_outcome(
    found: Sequence[Any],
    fingerprint: str,
    now: float,
    decode: Callable[[Any], Any] = lambda doc: doc,
) -> IdempotencyOutcome:
    """What a request with ``fingerprint`` gets from an unexpired key's row
    (:data:`~imagerouter.jobs.rows.IDEMPOTENCY_COLUMNS`): ``mismatch`` for another body,
    ``replay`` of a stored response, ``in_flight`` while the holder's lock runs, else ``new``
    (with the job the vanished holder created, if any): the caller then takes the key over by
    locking it again."""
    stored_fingerprint, state, job_id, response, locked_until, _ = found
    if stored_fingerprint != fingerprint:
        return IdempotencyOutcome("mismatch", job_id=job_id)
    if state == "done":
        return IdempotencyOutcome("replay", stored_response(decode(response)), job_id)
    if locked_until is not None and locked_until > now:
        return IdempotencyOutcome("in_flight", job_id=job_id)
    return IdempotencyOutcome("new", job_id=job_id)
