"""Rows of the job store, once for both backends: the column lists every query selects, and the
codecs between those rows and :mod:`imagerouter.jobs.types`.

The two databases return the same columns in the same order; they differ only in how JSON
comes back: SQLite keeps it as text, PostgreSQL's ``jsonb`` codec hands over Python values. So
the codecs of rows with JSON columns take a ``decode`` (:func:`loads` for SQLite; as-is by
default).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from imagerouter.jobs.errors import InvalidCursor
from imagerouter.jobs.types import (
    Delivery,
    DeliveryAttempt,
    Job,
    JobEvent,
    NewJob,
    StoredResponse,
)
from imagerouter.jsontext import dumps
from imagerouter.jsontext import loads as _loads

__all__ = [
    "ACCOUNT_COLUMNS",
    "ACTIVE",
    "API_KEY_SELECT",
    "ATTEMPT_FIELDS",
    "DELIVERY_ATTEMPT_COLUMNS",
    "DELIVERY_COLUMNS",
    "EVENT_COLUMNS",
    "IDEMPOTENCY_COLUMNS",
    "JOB_COLUMNS",
    "LEDGER_COLUMNS",
    "WEBHOOK_SECRET_COLUMNS",
    "WEBHOOK_SELECT",
    "attempt_from_row",
    "attempt_params",
    "decode_cursor",
    "delivery_attempt_from_row",
    "delivery_from_row",
    "dumps",
    "encode_cursor",
    "event_data",
    "event_from_row",
    "float_or_none",
    "job_from_row",
    "loads",
    "qualified",
    "queued_job",
    "response_doc",
    "stored_response",
]

Decode = Callable[[Any], Any]

ACCOUNT_COLUMNS = "id, name, balance, created_at"
LEDGER_COLUMNS = "id, account_id, kind, amount, balance_after, created_at, job_id, note"
#: Every key with its account's name; callers add the WHERE clause.
API_KEY_SELECT = (
    "SELECT k.id, k.account_id, k.secret_hash, k.name, k.created_at, k.revoked_at, a.name, "
    "k.routing "
    "FROM api_keys k JOIN accounts a ON a.id = k.account_id"
)
JOB_COLUMNS = (
    "id, account_id, status, request, price, refunded, created_at, updated_at, deadline_at, "
    "runs, started_at, finished_at, result, error, idempotency_key, lease_owner"
)
#: A job that may still change: a final status is written only over one of these.
ACTIVE = "status IN ('queued', 'processing')"
ATTEMPT_FIELDS = (
    "provider",
    "outcome",
    "started_at",
    "latency_ms",
    "error_class",
    "error",
    "status",
    "retry_after",
    "reason",
)
EVENT_COLUMNS = "id, job_id, account_id, type, created_at, data"
IDEMPOTENCY_COLUMNS = "fingerprint, state, job_id, response, locked_until, expires_at"
#: The account's registration with its URL's disablement; callers add the WHERE clause.
WEBHOOK_SELECT = (
    "SELECT e.account_id, e.url, e.created_at, e.updated_at, d.disabled_at, d.reason, "
    "e.progress "
    "FROM webhook_endpoints e LEFT JOIN webhook_disabled d "
    "ON d.account_id = e.account_id AND d.url = e.url"
)
WEBHOOK_SECRET_COLUMNS = "id, account_id, secret, created_at, expires_at"
DELIVERY_COLUMNS = (
    "id, job_id, account_id, event_id, event_type, url, status, attempts, step, "
    "next_attempt_at, created_at, updated_at, body, replay, last_error"
)
DELIVERY_ATTEMPT_COLUMNS = (
    "trigger, scheduled_at, started_at, outcome, latency_ms, status, error, retry_after, "
    "next_delay_s, next_attempt_at, attempt, delivery_id"
)


def qualified(columns: str, alias: str) -> str:
    """``columns`` each prefixed with ``alias.`` (for ``UPDATE … FROM … RETURNING``)."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


# --- JSON --------------------------------------------------------------------------------------


def loads(text: str | None) -> Any:
    """A JSON text column's value (None stays None): SQLite's ``decode``."""
    return None if text is None else _loads(text)


def _as_is(value: Any) -> Any:
    return value


# --- jobs, attempts, events --------------------------------------------------------------------


def job_from_row(row: Sequence[Any], decode: Decode = _as_is) -> Job:
    """A :class:`Job` from the :data:`JOB_COLUMNS` of a row (without its attempts)."""
    return Job(
        id=row[0],
        account_id=row[1],
        status=row[2],
        request=decode(row[3]),
        price=row[4],
        refunded=row[5],
        created_at=row[6],
        updated_at=row[7],
        deadline_at=row[8],
        runs=row[9],
        started_at=row[10],
        finished_at=row[11],
        result=decode(row[12]),
        error=decode(row[13]),
        idempotency_key=row[14],
        lease_owner=row[15],
    )


def queued_job(job: NewJob, now: float) -> Job:
    """The job a submit just created, as :meth:`get_job` would read it back."""
    return Job(
        id=job.id,
        account_id=job.account_id,
        status="queued",
        request=job.request,
        price=job.price,
        refunded=0,
        created_at=now,
        updated_at=now,
        deadline_at=job.deadline_at,
        idempotency_key=job.idempotency_key,
    )


def attempt_from_row(row: Sequence[Any]) -> dict[str, Any]:
    """An attempt as a job shows it, from ``run`` and the :data:`ATTEMPT_FIELDS` of a row."""
    return dict(zip(("run", *ATTEMPT_FIELDS), row, strict=True))


def float_or_none(value: Any) -> float | None:
    """``value`` as a float (asyncpg's ``float8`` takes no other type), None staying None."""
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


#: The column type of each of :data:`ATTEMPT_FIELDS` (the router's attempts are loose dicts).
_ATTEMPT_CASTS = (_str, _str, float_or_none, float_or_none, _str, _str, _int, float_or_none, _str)


def attempt_params(
    job_id: str, run: int, attempts: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """The rows of ``INSERT INTO attempts (job_id, run, <ATTEMPT_FIELDS>)`` for one run."""
    return [
        (
            job_id,
            run,
            *(cast(a.get(f)) for cast, f in zip(_ATTEMPT_CASTS, ATTEMPT_FIELDS, strict=True)),
        )
        for a in attempts
    ]


def event_data(status: str, **data: Any) -> dict[str, Any]:
    """A job event's ``data``: its ``status`` and whichever of ``data`` is not None."""
    return {"status": status, **{k: v for k, v in data.items() if v is not None}}


def event_from_row(row: Sequence[Any], decode: Decode = _as_is) -> JobEvent:
    """A :class:`JobEvent` from the :data:`EVENT_COLUMNS` of a row."""
    return JobEvent(row[0], row[1], row[2], row[3], row[4], decode(row[5]))


# --- idempotency, deliveries -------------------------------------------------------------------


def response_doc(response: StoredResponse) -> dict[str, Any]:
    """A stored idempotent response as the JSON document both stores keep."""
    return {"status": response.status, "body": response.body, "headers": response.headers}


def stored_response(doc: dict[str, Any]) -> StoredResponse:
    """The :class:`StoredResponse` a :func:`response_doc` document holds."""
    return StoredResponse(doc["status"], doc["body"], doc.get("headers", {}))


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """A :class:`Delivery` from the :data:`DELIVERY_COLUMNS` of a row."""
    return Delivery(*row[:13], replay=bool(row[13]), last_error=row[14])


def delivery_attempt_from_row(row: Sequence[Any]) -> DeliveryAttempt:
    """A :class:`DeliveryAttempt` from the :data:`DELIVERY_ATTEMPT_COLUMNS` of a row."""
    return DeliveryAttempt(*row)


# --- cursors -----------------------------------------------------------------------------------


def encode_cursor(seq: int) -> str:
    """An opaque ``GET /v1/jobs`` cursor for the job with sequence number ``seq``."""
    return base64.urlsafe_b64encode(f"j{seq}".encode()).decode().rstrip("=")


#: The largest sequence number a cursor may carry: a 64-bit signed integer, both stores' range.
MAX_CURSOR_SEQ = 2**63 - 1


def decode_cursor(cursor: str) -> int:
    """The sequence number in a cursor; InvalidCursor if it is not one of ours: exactly what
    :func:`encode_cursor` writes for a sequence number in the stores' range (so ``j-1``,
    full-width digits or a number past 64 bits are refused here, not by the store)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seq = int(text[1:]) if text[:1] == "j" and text[1:].isascii() else -1
    except (ValueError, binascii.Error, UnicodeDecodeError):
        seq = -1
    if not 0 <= seq <= MAX_CURSOR_SEQ or encode_cursor(seq) != cursor:
        raise InvalidCursor(cursor)
    return seq
