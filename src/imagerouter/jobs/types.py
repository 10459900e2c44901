"""The records the job store reads and writes: plain, slotted dataclasses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DELIVERY_STATUSES",
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "Account",
    "ApiKeyRecord",
    "AttemptRecord",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryHandoff",
    "DeliveryReplay",
    "HandedDelivery",
    "IdempotencyOutcome",
    "Job",
    "JobEvent",
    "JobPage",
    "LedgerEntry",
    "NewJob",
    "StoredResponse",
    "WebhookEndpoint",
    "WebhookSecret",
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
    #: The key's default routing preferences (JSON text): laid under each request's own.
    routing: str | None = None

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
    """What :meth:`~imagerouter.jobs.store.IdempotencyStore.idempotency_begin` found for an
    ``Idempotency-Key``.

    ``state`` is ``new`` (the caller now holds the key and must finish or release it),
    ``replay`` (``response`` is the first answer), ``mismatch`` (the key was used with another
    body) or ``in_flight`` (the first request with this key is still being handled).
    ``job_id`` is the job an earlier, interrupted holder already created, if any.
    """

    state: Literal["new", "replay", "mismatch", "in_flight"]
    response: StoredResponse | None = None
    job_id: str | None = None


# --- webhooks ----------------------------------------------------------------------------------

DeliveryStatus = Literal["pending", "delivering", "succeeded", "failed", "disabled"]
DELIVERY_STATUSES: tuple[str, ...] = ("pending", "delivering", "succeeded", "failed", "disabled")


@dataclass(slots=True)
class WebhookEndpoint:
    """An account's registered webhook URL, and whether a ``410 Gone`` disabled it.

    ``url`` is None when the account has signing secrets but no registered URL (its jobs may
    still name a ``webhook_url`` each).
    """

    account_id: str
    url: str | None
    created_at: float
    updated_at: float
    disabled_at: float | None = None
    disabled_reason: str | None = None
    #: The account opted in to ``job.progress`` webhooks.
    progress: bool = False

    def __post_init__(self) -> None:
        self.progress = bool(self.progress)  # SQLite stores 0/1


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """A ``whsec_`` signing secret: current while ``expires_at`` is None, then signing beside
    its successor until ``expires_at`` (the rotation's grace period)."""

    id: int
    account_id: str
    secret: str
    created_at: float
    expires_at: float | None = None

    @property
    def current(self) -> bool:
        """True for the newest secret, which has no expiry."""
        return self.expires_at is None


@dataclass(slots=True)
class DeliveryAttempt:
    """One try at sending one webhook, as logged.

    ``outcome``: ``succeeded`` (2xx), ``retry`` (another attempt is scheduled at
    ``next_attempt_at``, ``next_delay_s`` after this one), ``failed`` (no more attempts:
    another 4xx, or the schedule is exhausted), ``disabled`` (410 Gone: the URL is disabled for
    the account) or ``refused`` (the URL failed the SSRF policy and was not contacted).
    ``scheduled_at`` is when the attempt was due; ``attempt`` (1 for the first) and
    ``delivery_id`` are set by the store.
    """

    trigger: Literal["scheduled", "replay"]
    scheduled_at: float
    started_at: float
    outcome: Literal["succeeded", "retry", "failed", "disabled", "refused"]
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    next_delay_s: float | None = None
    next_attempt_at: float | None = None
    attempt: int = 0
    delivery_id: str = ""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt to log in a batch (``WebhookStore.record_delivery_attempts``): the
    arguments of ``record_delivery_attempt`` for one delivery."""

    delivery_id: str
    owner: str
    attempt: DeliveryAttempt
    status: str
    next_attempt_at: float | None
    disable_url: bool = False


@dataclass(frozen=True, slots=True)
class Deferral:
    """A leased delivery given back unsent (``WebhookStore.defer_deliveries``): due again at
    ``due_at``, with ``reason`` (why it waits) as its ``last_error``."""

    delivery_id: str
    due_at: float
    reason: str


@dataclass(slots=True)
class Delivery:
    """The webhook for one final job event: one ``id`` (the ``webhook-id``) on every attempt.

    ``step`` counts the scheduled attempts made (the retry schedule's position; replays do not
    count); ``body`` is the exact JSON sent, fixed at the first attempt; ``replay`` marks a
    manual resend waiting to go; ``log`` holds the attempts (filled by
    :meth:`~imagerouter.jobs.store.WebhookStore.job_deliveries`).
    """

    id: str
    job_id: str
    account_id: str
    event_id: int
    event_type: str
    url: str
    status: str
    attempts: int
    step: int
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    body: str | None = None
    replay: bool = False
    last_error: str | None = None
    log: list[DeliveryAttempt] = field(default_factory=list)

    @property
    def final(self) -> bool:
        """True once nothing more will be sent without a replay."""
        return self.status in ("succeeded", "failed", "disabled")


@dataclass(frozen=True, slots=True)
class DeliveryReplay:
    """What :meth:`~imagerouter.jobs.store.WebhookStore.replay_delivery` did: ``queued`` (it is
    due now), ``in_flight`` (an attempt is running; nothing changed) or ``disabled`` (its URL
    answered 410 and is not registered again; nothing changed)."""

    state: Literal["queued", "in_flight", "disabled"]
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class HandedDelivery:
    """A delivery a completion just wrote already leased to this process's delivery worker,
    its body fixed; ``secrets`` are the account's signing secrets, read in the same
    transaction (current first)."""

    delivery: Delivery
    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeliveryHandoff:
    """How a store hands the webhooks of the jobs it completes straight to this process's
    delivery worker, rather than leaving them for its next claim
    (``store.hand_deliveries(handoff)``).

    While ``room()`` is above zero, a completion's delivery due now is written in the
    completion's transaction leased to ``owner`` for ``lease_s``, its body fixed by
    ``body(job, delivery)`` (the final job as the transaction wrote it); once committed,
    ``take(handed, pending)`` gets them on the event loop, ``pending`` telling whether the
    commit also queued deliveries for a claim (no room, a failure, a progress event). A
    process that dies before sending leaves a lease that expires: delivery stays at least
    once.

    ``room`` and ``body`` run on the store's thread, inside the transaction: they must be
    quick, must not block, and must not touch the event loop. A commit that read ``room()``
    before it turned 0 may still call ``take`` after; any store operation queued after
    ``room()`` turned 0 answers only once those calls have been made (a stopping worker
    gives back what they handed, then calls ``hand_deliveries(None)``).
    """

    owner: str
    lease_s: float
    room: Callable[[], int]
    body: Callable[[Job, Delivery], str]
    take: Callable[[Sequence[HandedDelivery], bool], None]
