"""Turning store records into the JSON bodies the schemas describe."""

from __future__ import annotations

import math
from json.encoder import encode_basestring
from typing import Any

from aiohttp import web

from imagerouter.jobs.types import (
    Delivery,
    DeliveryAttempt,
    Job,
    JobEvent,
    LedgerEntry,
    WebhookEndpoint,
    WebhookSecret,
)
from imagerouter.server.http import dumps, link
from imagerouter.server.keys import settings_key, storage_key
from imagerouter.storage import present_result

__all__ = [
    "delivery_out",
    "event_out",
    "job_accepted",
    "job_accepted_json",
    "job_links",
    "job_out",
    "job_result",
    "ledger_entry_out",
    "webhook_out",
]


def job_links(request: web.Request, job_id: str, final: bool) -> dict[str, Any]:
    """The job's ``self`` link, and its ``cancel`` link while it can still be canceled."""
    url = link(request, f"/v1/jobs/{job_id}")
    return {"self": url, "cancel": None if final else url}


def _credits(job: Job) -> dict[str, int]:
    return {"price": job.price, "charged": job.price, "refunded": job.refunded}


def job_accepted(url: str, job_id: str, created_at: float, price: int) -> dict[str, Any]:
    """The 202 body of a submit, with the job's ``url`` (:func:`job_links` of a new job)."""
    return {
        "id": job_id,
        "object": "job",
        "status": "queued",
        "created_at": created_at,
        "credits": {"price": price, "charged": price, "refunded": 0},
        "links": {"self": url, "cancel": url},
    }


def job_accepted_json(url: str, job_id: str, created_at: float, price: int) -> str:
    """:func:`job_accepted` as the JSON text :func:`~imagerouter.server.http.dumps` writes
    for it, written straight from a template: every submit answers it, and encoding the dict
    costs several times as much."""
    if type(price) is not int or not math.isfinite(created_at):
        return dumps(job_accepted(url, job_id, created_at, price))
    url_json = encode_basestring(url)
    return (
        f'{{"id":{encode_basestring(job_id)},"object":"job","status":"queued",'
        f'"created_at":{float(created_at)!r},'
        f'"credits":{{"price":{price},"charged":{price},"refunded":0}},'
        f'"links":{{"self":{url_json},"cancel":{url_json}}}}}'
    )


def job_result(request: web.Request, job: Job) -> dict[str, Any] | None:
    """The job's result as clients see it: stored images with freshly signed URLs."""
    ttl_s = request.app[settings_key].storage.url_ttl_s
    return present_result(request.app.get(storage_key), job.result, ttl_s)


def job_out(request: web.Request, job: Job, *, with_attempts: bool = True) -> dict[str, Any]:
    """A job's full JSON view (``attempts`` null in listings)."""
    return {
        "id": job.id,
        "object": "job",
        "status": job.status,
        "request": job.request,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "deadline_at": job.deadline_at,
        "runs": job.runs,
        "result": job_result(request, job),
        "error": job.error,
        "attempts": job.attempts if with_attempts else None,
        "credits": _credits(job),
        "links": job_links(request, job.id, job.final),
    }


def ledger_entry_out(entry: LedgerEntry) -> dict[str, Any]:
    """One ledger entry's JSON view."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "job_id": entry.job_id,
        "note": entry.note,
        "created_at": entry.created_at,
    }


def webhook_out(
    endpoint: WebhookEndpoint | None,
    secrets: list[WebhookSecret],
    *,
    new_secret: str | None = None,
) -> dict[str, Any]:
    """The account's webhook view; ``new_secret`` is shown only when just created."""
    return {
        "object": "webhook",
        "url": endpoint.url if endpoint else None,
        "enabled": bool(endpoint and endpoint.url and endpoint.disabled_at is None),
        "disabled_at": endpoint.disabled_at if endpoint else None,
        "disabled_reason": endpoint.disabled_reason if endpoint else None,
        "progress": bool(endpoint and endpoint.progress),
        "secret": new_secret,
        "secrets": [
            {
                "id": s.id,
                "created_at": s.created_at,
                "expires_at": s.expires_at,
                "current": s.current,
            }
            for s in secrets
        ],
        "created_at": endpoint.created_at if endpoint else None,
        "updated_at": endpoint.updated_at if endpoint else None,
    }


def _attempt_out(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "trigger": attempt.trigger,
        "scheduled_at": attempt.scheduled_at,
        "started_at": attempt.started_at,
        "outcome": attempt.outcome,
        "status": attempt.status,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "retry_after": attempt.retry_after,
        "next_delay_s": attempt.next_delay_s,
        "next_attempt_at": attempt.next_attempt_at,
    }


def delivery_out(delivery: Delivery) -> dict[str, Any]:
    """One delivery with its attempt log."""
    return {
        "id": delivery.id,
        "object": "delivery",
        "job_id": delivery.job_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
        "log": [_attempt_out(a) for a in delivery.log],
    }


def event_out(event: JobEvent) -> dict[str, Any]:
    """One job event."""
    return {
        "id": event.id,
        "object": "event",
        "type": event.type,
        "job_id": event.job_id,
        "created_at": event.created_at,
        "data": event.data,
    }
