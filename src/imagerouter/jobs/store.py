"""The job store contract, as small protocols by aggregate, and their union for wiring.

* :class:`AccountStore`: accounts, their API keys and their credit ledger;
* :class:`JobQueue`: jobs from submit (the client's side) through leases to a final state
  (the worker's side);
* :class:`EventLog`: every job transition, persisted, read back and pushed to subscribers;
* :class:`IdempotencyStore`: ``Idempotency-Key`` holds and their stored responses;
* :class:`WebhookStore`: webhook endpoints, signing secrets and deliveries;
* :class:`PeerMessages`: small best-effort messages to the other processes on the store (the
  second channel of the replicas' Retry-After windows, beside Redis);
* :class:`JobStore`: all of them plus the lifecycle, what a backend implements and the server
  is wired with. Code that needs one aggregate takes the narrow protocol.

Backends: :mod:`imagerouter.jobs.sqlite` and :mod:`imagerouter.jobs.postgres`, each a package
with a module per aggregate; :func:`imagerouter.jobs.backends.open_store` picks one from a URL.
This module imports no backend.

Every method is a coroutine except ``subscribe``, ``subscribe_local``,
``subscribe_revocations`` and ``subscribe_peers``. Times are unix
seconds (leases are shared across processes, so they cannot be monotonic). Whatever changes a
job's status writes the matching event in the same transaction, and a refund is written in the
same transaction as the failure or cancellation it pays back, so no observer can see one
without the other.

Webhooks: the transaction that writes a job's final event (``complete_job``, ``fail_job``,
``cancel_job``) also enqueues its webhook :class:`Delivery`, when the job names a
``webhook_url`` or else its account has a registered one: ``pending`` and due at once, or
``disabled`` if a ``410 Gone`` disabled that URL for the account. So a final event is never
committed without its delivery, and a restart loses no webhook. (The rules both backends
share: :mod:`imagerouter.jobs.rules`.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Self

from imagerouter.jobs.types import (
    Account,
    ApiKeyRecord,
    AttemptRecord,
    Deferral,
    Delivery,
    DeliveryAttempt,
    DeliveryReplay,
    IdempotencyOutcome,
    Job,
    JobEvent,
    JobPage,
    LedgerEntry,
    NewJob,
    StoredResponse,
    WebhookEndpoint,
    WebhookSecret,
)

__all__ = [
    "MAX_BALANCE",
    "PEER_MESSAGE_MAX",
    "AccountStore",
    "EventListener",
    "EventLog",
    "IdempotencyStore",
    "JobQueue",
    "JobStore",
    "PeerListener",
    "PeerMessages",
    "RevocationListener",
    "WebhookStore",
    "WindowStore",
]

#: The most credits one account holds, and so the largest grant: well inside both backends'
#: 64-bit integers, so that no sum of balances and amounts overflows.
MAX_BALANCE = 2**62


def check_grant(amount: int) -> None:
    """Raise ValueError unless ``amount`` is a grant both backends take: 1..MAX_BALANCE."""
    if not 0 < amount <= MAX_BALANCE:
        raise ValueError(f"a grant must be between 1 and {MAX_BALANCE} credits, not {amount}")


def check_peer_message(message: str) -> None:
    """Raise ValueError if ``message`` is longer than :data:`PEER_MESSAGE_MAX` bytes."""
    size = len(message.encode())
    if size > PEER_MESSAGE_MAX:
        raise ValueError(f"a peer message holds at most {PEER_MESSAGE_MAX} bytes, not {size}")


def too_much(balance: int, amount: int) -> str:
    """Why granting ``amount`` to a wallet holding ``balance`` is refused."""
    return (
        f"granting {amount} credits to a balance of {balance} would pass the most an account "
        f"holds, {MAX_BALANCE}"
    )


#: Called on the event loop, after commit, with the events one operation wrote.
EventListener = Callable[[Sequence[JobEvent]], None]

#: Called on the event loop with the id of a key just revoked (by any process), or with None
#: when revocations may have been missed: then every key cached from the store is suspect.
RevocationListener = Callable[[str | None], None]

#: Called on the event loop with each peer message (:meth:`PeerMessages.tell_peers`), the
#: sender's own included.
PeerListener = Callable[[str], None]

#: The longest peer message, in UTF-8 bytes (PostgreSQL's ``NOTIFY`` payload is under 8000).
PEER_MESSAGE_MAX = 7900


class AccountStore(Protocol):
    """Accounts (tenants), their API keys (hashes only) and their credit ledger."""

    async def create_account(self, name: str) -> Account:
        """The account called ``name``, created with an empty wallet if it does not exist."""
        ...

    async def get_account(self, account_id: str) -> Account:
        """The account by id (AccountNotFound if none)."""
        ...

    async def find_account(self, name_or_id: str) -> Account | None:
        """The account by name or id, or None."""
        ...

    async def grant_credits(self, account_id: str, amount: int, note: str | None = None) -> int:
        """Add ``amount`` credits (a ``grant`` ledger entry); returns the new balance. Raises
        ValueError, granting nothing, unless ``0 < amount`` and the new balance stays at most
        :data:`MAX_BALANCE`."""
        ...

    async def ledger(
        self, account_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger entries, newest first, older than ``before_id`` when given."""
        ...

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new key (its hash only)."""
        ...

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this lookup id, revoked or not, or None."""
        ...

    async def list_api_keys(self, account_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of one account when given), oldest first."""
        ...

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke the key; False if there is no such active key. Every
        :meth:`subscribe_revocations` listener, of every process on the same store, is told."""
        ...

    def subscribe_revocations(self, listener: RevocationListener) -> Callable[[], None]:
        """Call ``listener`` when a key is revoked, by this process or any other sharing the
        store (another replica, ``imagerouter keys revoke``), so that caches of key records
        (:class:`~imagerouter.auth.Authenticator`) drop it; returns the unsubscribe function.

        How soon is the backend's to state: PostgreSQL tells at once (``NOTIFY`` in the
        revoking transaction, and ``None`` after its listener connection reconnects, since
        notifications sent meanwhile are lost); SQLite looks every ``revocation_poll_s``
        (0.25 s) while someone is subscribed, and says ``None`` when a key was revoked.
        Call it on the event loop.
        """
        ...


class JobQueue(Protocol):
    """Jobs: submitted and charged, read and canceled by their client; claimed under leases,
    finished (once, by the lease holder, with the refund of a failure) or handed back by the
    workers."""

    # --- the client's side ---------------------------------------------------------------------

    async def submit_job(self, job: NewJob, response: StoredResponse | None = None) -> Job:
        """Debit the price and create the job (``queued``, with its event) in one transaction.

        When the job has an ``idempotency_key`` (held by the caller through
        :meth:`idempotency_begin`), the key records the job, and with ``response`` it is
        completed with that response, in the same transaction. Raises
        InsufficientCredits (nothing written) when the wallet is short.
        """
        ...

    async def submit_job_once(
        self, job: NewJob, fingerprint: str, response: StoredResponse, *, ttl_s: float
    ) -> Job | IdempotencyOutcome:
        """Take ``job.idempotency_key``, create and charge the job and record ``response``
        against the key, in one transaction; or, if the key is known, change nothing and
        return what was found (``replay``, ``mismatch`` or ``in_flight``)."""
        ...

    async def get_job(
        self, account_id: str, job_id: str, *, with_attempts: bool = True
    ) -> Job | None:
        """The account's job with its attempts (an empty list without ``with_attempts``: a
        webhook's body does not show them), or None (also for another account's job)."""
        ...

    async def list_jobs(
        self,
        account_id: str,
        *,
        status: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobPage:
        """The account's jobs, newest first, optionally of one status, a page at a time."""
        ...

    async def cancel_job(self, account_id: str, job_id: str) -> Job:
        """Cancel a queued or processing job and refund it, once (JobNotFound, JobFinished)."""
        ...

    # --- the worker's side ---------------------------------------------------------------------

    async def claim_jobs(self, owner: str, limit: int, lease_s: float) -> list[Job]:
        """Move up to ``limit`` queued jobs, oldest first, to ``processing`` under a lease."""
        ...

    async def renew_leases(self, owner: str, job_ids: Sequence[str], lease_s: float) -> set[str]:
        """Extend the leases ``owner`` still holds; returns the ids it still holds."""
        ...

    async def complete_job(
        self,
        job_id: str,
        owner: str,
        result: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        """Write ``completed`` once, only while ``owner`` holds the lease; False otherwise."""
        ...

    async def fail_job(
        self,
        job_id: str,
        owner: str,
        error: dict[str, Any],
        attempts: Sequence[dict[str, Any]],
    ) -> bool:
        """Write ``failed`` and its refund once, while ``owner`` holds the lease."""
        ...

    async def release_job(
        self,
        job_id: str,
        owner: str,
        reason: str,
        attempts: Sequence[dict[str, Any]] = (),
    ) -> bool:
        """Hand a processing job back to the queue (shutdown); False if no longer held.
        ``attempts``, the calls the run made before it was stopped (the one abandoned in
        flight among them), are written with the run in the same transaction: the job shows
        every provider call, this run's too, once."""
        ...

    async def record_canceled_attempts(
        self, job_id: str, run: int, attempts: Sequence[dict[str, Any]]
    ) -> bool:
        """Write the attempts run ``run`` made before the job was canceled (its client's
        cancel stopped the run): once, and only while the job is canceled at that run. The
        job then shows every provider call, the one abandoned in flight too."""
        ...

    async def add_progress(self, job_id: str, owner: str, data: dict[str, Any]) -> bool:
        """Write a ``job.progress`` event (``data``: provider, provider_status,
        queue_position, log) while ``owner`` holds the job's lease, so that none follows the
        job's final event; with its webhook delivery when the account opted in. False (and
        nothing written) when the lease is no longer held."""
        ...

    async def requeue_expired(self) -> int:
        """Put every processing job whose lease has expired back in the queue; how many."""
        ...


class EventLog(Protocol):
    """Every job transition as a :class:`JobEvent`: ids increase across the store, so
    ``events_since`` of the last id seen is a safe resume point; subscribers get new ones."""

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of new events, whichever replica wrote them;
        returns the unsubscribe function."""
        ...

    def subscribe_local(self, listener: EventListener) -> Callable[[], None]:
        """Like :meth:`subscribe`, but only the events this store instance wrote: for
        per-replica counters (metrics, logs) that would otherwise count a job once per replica."""
        ...

    async def events_since(
        self, account_id: str | None, job_id: str | None, after_id: int, limit: int = 500
    ) -> list[JobEvent]:
        """Events with ``id > after_id``, oldest first, of one account and/or one job."""
        ...

    async def last_event_id(self, account_id: str | None = None) -> int:
        """The newest event's id (of one account when given); 0 if there is none."""
        ...


class IdempotencyStore(Protocol):
    """``Idempotency-Key`` holds: taken by one request at a time, finished with the response
    its retries replay, forgotten after their time to live."""

    async def idempotency_begin(
        self, account_id: str, key: str, fingerprint: str, lock_s: float, ttl_s: float
    ) -> IdempotencyOutcome:
        """Take the key for a request, or say why not (see :class:`IdempotencyOutcome`).

        A holder that vanished (its lock older than ``lock_s``) loses the key to the next
        request. The key is kept ``ttl_s`` seconds from its first use.
        """
        ...

    async def idempotency_finish(self, account_id: str, key: str, response: StoredResponse) -> None:
        """Store the response of a held key; later retries replay it."""
        ...

    async def idempotency_release(self, account_id: str, key: str) -> None:
        """Forget a held key whose request changed nothing, so that a retry starts afresh."""
        ...

    async def purge_idempotency(self) -> int:
        """Delete keys past their time to live; how many."""
        ...


class WebhookStore(Protocol):
    """Each account's webhook endpoint and signing secrets, and the deliveries of final job
    events: leased to a sender, logged attempt by attempt, replayed on request."""

    # --- endpoints and secrets -----------------------------------------------------------------

    async def set_webhook_url(
        self, account_id: str, url: str | None, *, progress: bool | None = None
    ) -> WebhookEndpoint:
        """Register ``url`` as the account's webhook (None: unregister it, keeping the secrets).

        Registering a URL clears a ``410 Gone`` disablement of that URL for the account.
        ``progress`` opts the account in to (True) or out of (False) ``job.progress``
        webhooks; None keeps the current choice (off for a new registration).
        """
        ...

    async def get_webhook(self, account_id: str) -> WebhookEndpoint | None:
        """The account's registration (with the URL's disablement, if any), or None."""
        ...

    async def enable_webhook_url(self, account_id: str, url: str) -> bool:
        """Clear a ``410 Gone`` disablement of ``url`` for the account (a job's own
        ``webhook_url``, named again by a new job, is registered again so); True if there was
        one. Deliveries already disabled stay so (a replay sends one again)."""
        ...

    async def add_webhook_secret(
        self, account_id: str, secret: str, grace_s: float
    ) -> WebhookSecret:
        """Make ``secret`` the current signing secret; the previous current one keeps signing
        for ``grace_s`` more seconds (an earlier expiry is kept)."""
        ...

    async def webhook_secrets(self, account_id: str) -> list[WebhookSecret]:
        """The secrets that sign now: the current one first, then those still in grace."""
        ...

    # --- deliveries ----------------------------------------------------------------------------

    async def claim_deliveries(self, owner: str, limit: int, lease_s: float) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries to ``owner``, earliest due first.

        Due: ``pending`` with ``next_attempt_at <= now``, or ``delivering`` with an expired
        lease (its process died mid-attempt). Due deliveries whose URL is disabled for the
        account become ``disabled`` instead of being returned.
        """
        ...

    async def release_deliveries(self, owner: str, delivery_ids: Sequence[str]) -> int:
        """Give back ``owner``'s leases on ``delivery_ids``, not yet attempted (its worker is
        stopping): each is ``pending`` again, due as before, for any worker's next claim
        rather than after its lease runs out. Deliveries ``owner`` no longer holds are left
        as they are; how many were released."""
        ...

    async def defer_deliveries(self, owner: str, deferrals: Sequence[Deferral]) -> int:
        """Give back ``owner``'s leases on the deliveries of ``deferrals`` without an attempt
        (their receiver had no room for them, or asked for a pause): each is ``pending`` again,
        due at its ``due_at``, its ``reason`` its ``last_error``, its attempts, schedule step
        and log as they were. Deliveries ``owner`` no longer holds are left as they are; how
        many were deferred."""
        ...

    async def set_delivery_body(self, delivery_id: str, body: str) -> str:
        """Fix the delivery's body if it has none yet; returns the body it now has (every
        attempt and replay sends exactly these bytes)."""
        ...

    async def set_delivery_bodies(self, bodies: Mapping[str, str]) -> dict[str, str]:
        """:meth:`set_delivery_body` for each delivery id of ``bodies``, in one store call;
        the body each delivery now has."""
        ...

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
        """Log ``attempt`` and, while ``owner`` holds the lease, move the delivery to
        ``status`` (``pending`` again at ``next_attempt_at``, or final), releasing the lease.

        A scheduled attempt advances ``step``; a replay does not. With ``disable_url`` the
        delivery's URL is disabled for its account (410 Gone), and the account's other pending
        deliveries to it become ``disabled``. False if the lease was lost (the log is kept).
        """
        ...

    async def record_delivery_attempts(self, records: Sequence[AttemptRecord]) -> list[bool]:
        """:meth:`record_delivery_attempt` for each of ``records``, in one transaction and one
        store call (a batch of finished attempts costs one round trip); one answer per record,
        in order."""
        ...

    async def job_deliveries(self, account_id: str, job_id: str) -> list[Delivery]:
        """The job's deliveries, oldest first, each with its attempt ``log`` (empty if none)."""
        ...

    async def replay_delivery(self, account_id: str, job_id: str) -> DeliveryReplay | None:
        """Send the job's latest delivery again, with the same ``webhook-id`` and body.

        A pending one is made due now; a final one becomes a one-off ``replay`` due now (its
        failure does not restart the schedule). None if the job has no delivery.
        """
        ...


class PeerMessages(Protocol):
    """Small best-effort messages between the processes sharing a store, at most once each,
    none kept: the windows one replica starts (its Retry-After cooldowns, spent budgets, paused
    webhook receivers), so that the others hold off even while Redis is away
    (:class:`~imagerouter.replication.RedisState`'s second channel).

    PostgreSQL sends them with ``NOTIFY`` on the schema's peers channel, to every process
    listening then (the sender too); those sent while a listener is reconnecting are lost.
    SQLite has no channel between processes: nothing is sent (one process per file is its
    deployment; several replicas share PostgreSQL).
    """

    async def tell_peers(self, message: str) -> bool:
        """Send ``message`` (at most :data:`PEER_MESSAGE_MAX` bytes, else ValueError) to every
        :meth:`subscribe_peers` listener of the processes on this store; False if this backend
        has no peers to tell. Raises the store's errors if it cannot reach the store."""
        ...

    def subscribe_peers(self, listener: PeerListener) -> Callable[[], None]:
        """Call ``listener`` with every peer message from now on; returns the unsubscribe
        function. Call it on the event loop."""
        ...


class WindowStore(Protocol):
    """The windows a process was given (its providers' Retry-After cooldowns, its webhook
    receivers' pauses), kept so that a process starting on this store, a restart or another
    replica, holds off until they end: the product never sends a request into a Retry-After
    window, and a window outlives the process that learned it. Records are opaque text (the
    replication's records); ends are unix seconds."""

    async def keep_window(self, kind: str, name: str, until: float, record: str) -> None:
        """Keep ``record``, the window of ``kind`` on ``name`` that ends at ``until``, unless
        a later end of the same window is kept already; windows that ended are dropped."""
        ...

    async def live_windows(self) -> list[str]:
        """The records of the windows kept that have not ended."""
        ...


class JobStore(
    AccountStore,
    JobQueue,
    EventLog,
    IdempotencyStore,
    WebhookStore,
    PeerMessages,
    WindowStore,
    Protocol,
):
    """The whole store: every aggregate, and its lifecycle. What a backend implements and the
    server is wired with."""

    async def start(self) -> None:
        """Connect and create or migrate the schema."""
        ...

    async def aclose(self) -> None:
        """Finish pending work and disconnect."""
        ...

    async def __aenter__(self) -> Self:
        """:meth:`start`, returning the store."""
        ...

    async def __aexit__(self, *exc_info: object) -> None:
        """:meth:`aclose`."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...
