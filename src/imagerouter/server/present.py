"""Turning store records into the JSON bodies the schemas describe."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from imagerouter.jobs.types import Job, LedgerEntry
from imagerouter.server.http import link

__all__ = ["job_accepted", "job_links", "job_out", "ledger_entry_out"]


def job_links(request: web.Request, job_id: str, final: bool) -> dict[str, Any]:
    """The job's ``self`` link, and its ``cancel`` link while it can still be canceled."""
    url = link(request, f"/v1/jobs/{job_id}")
    return {"self": url, "cancel": None if final else url}


def _credits(job: Job) -> dict[str, int]:
    return {"price": job.price, "charged": job.price, "refunded": job.refunded}


def job_accepted(
    request: web.Request, job_id: str, created_at: float, price: int
) -> dict[str, Any]:
    """The 202 body of a submit."""
    return {
        "id": job_id,
        "object": "job",
        "status": "queued",
        "created_at": created_at,
        "credits": {"price": price, "charged": price, "refunded": 0},
        "links": job_links(request, job_id, False),
    }


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
        "result": job.result,
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
