"""The records the job store reads and writes: plain, slotted dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "Account",
    "ApiKeyRecord",
    "IdempotencyOutcome",
    "Job",
    "JobEvent",
    "JobPage",
    "LedgerEntry",
    "NewJob",
    "StoredResponse",
]

JobStatus = Literal["queued", "processing", "completed", "failed", "canceled"]
JOB_STATUSES: tuple[str, ...] = ("queued", "processing", "completed", "failed", "canceled")
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "canceled"})


@dataclass(slots=True)
class Account:
    """A tenant: owns API keys, jobs and a wallet of credits."""

    id: str
    name: str
    balance: int
    created_at: float


@dataclass(slots=True)
class ApiKeyRecord:
    """An API key as stored: only the lookup id and the hash of the secret, never the secret."""

    id: str
    account_id: str
    secret_hash: str
    name: str | None
    created_at: float
    revoked_at: float | None = None
    account_name: str | None = None

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None


@dataclass(slots=True)
class LedgerEntry:
    """One movement of credits: ``grant`` (+), ``debit`` (-, at submit) or ``refund`` (+)."""

    id: int
    account_id: str
    kind: Literal["grant", "debit", "refund"]
    amount: int
    balance_after: int
    created_at: float
    job_id: str | None = None
    note: str | None = None


@dataclass(slots=True)
class NewJob:
    """What the submit path hands the store: the job is created and charged atomically."""

    id: str
    account_id: str
    request: dict[str, Any]
    price: int
    deadline_at: float
    idempotency_key: str | None = None
    #: When the job is created; None means when the store writes it.
    created_at: float | None = None


@dataclass(slots=True)
class Job:
    """A job as stored, with every recorded attempt (``attempts`` is empty in listings)."""

    id: str
    account_id: str
    status: str
    request: dict[str, Any]
    price: int
    refunded: int
    created_at: float
    updated_at: float
    deadline_at: float
    runs: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    lease_owner: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """True once the job is completed, failed or canceled."""
        return self.status in FINAL_STATUSES


@dataclass(slots=True)
class JobPage:
    """One page of a job listing, newest first; ``next_cursor`` is None on the last page."""

    jobs: list[Job]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One persisted transition of one job; ``id`` increases monotonically across the store.

    ``type`` is ``job.queued``, ``job.processing``, ``job.completed``, ``job.failed`` or
    ``job.canceled``; ``data`` holds ``status`` and, where it applies, ``reason``, ``error``,
    ``refunded`` and ``provider``.
    """

    id: int
    job_id: str
    account_id: str
    type: str
    created_at: float
    data: dict[str, Any]

    @property
    def final(self) -> bool:
        """True for the event that ends the job."""
        return self.data.get("status") in FINAL_STATUSES


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first response to an idempotent request, replayed verbatim for its retries."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IdempotencyOutcome:
    """What :meth:`JobStore.idempotency_begin` found for an ``Idempotency-Key``.

    ``state`` is ``new`` (the caller now holds the key and must finish or release it),
    ``replay`` (``response`` is the first answer), ``mismatch`` (the key was used with another
    body) or ``in_flight`` (the first request with this key is still being handled).
    ``job_id`` is the job an earlier, interrupted holder already created, if any.
    """

    state: Literal["new", "replay", "mismatch", "in_flight"]
    response: StoredResponse | None = None
    job_id: str | None = None
