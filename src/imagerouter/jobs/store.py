"""The job store contract: jobs, attempts, events, the credit ledger, accounts, API keys and
idempotency keys, behind one Protocol so that a PostgreSQL backend is one new module.

Every method is a coroutine except :meth:`JobStore.subscribe`. Times are unix seconds (leases
are shared across processes, so they cannot be monotonic). Whatever changes a job's status
writes the matching event in the same transaction, and a refund is written in the same
transaction as the failure or cancellation it pays back, so no observer can see one without
the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from imagerouter.jobs.types import (
    Account,
    ApiKeyRecord,
    IdempotencyOutcome,
    Job,
    JobEvent,
    JobPage,
    LedgerEntry,
    NewJob,
    StoredResponse,
)

__all__ = ["EventListener", "JobStore", "open_sqlite_store"]

#: Called on the event loop, after commit, with the events one operation wrote.
EventListener = Callable[[Sequence[JobEvent]], None]


class JobStore(Protocol):
    """Durable state of the job API. Implementations: :mod:`imagerouter.jobs.sqlite`."""

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Finish pending work and disconnect."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot answer a trivial query."""
        ...

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` with every batch of new events; returns the unsubscribe function."""
        ...

    # --- accounts, keys, credits ---------------------------------------------------------------

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
        """Add ``amount`` credits (a ``grant`` ledger entry); returns the new balance."""
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
        """Revoke the key; False if there is no such active key."""
        ...

    # --- jobs: the client's side ---------------------------------------------------------------

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

    async def get_job(self, account_id: str, job_id: str) -> Job | None:
        """The account's job with its attempts, or None (also for another account's job)."""
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

    # --- jobs: the worker's side ---------------------------------------------------------------

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

    async def release_job(self, job_id: str, owner: str, reason: str) -> bool:
        """Hand a processing job back to the queue (shutdown); False if no longer held."""
        ...

    async def requeue_expired(self) -> int:
        """Put every processing job whose lease has expired back in the queue; how many."""
        ...

    # --- events --------------------------------------------------------------------------------

    async def events_since(
        self, account_id: str | None, job_id: str | None, after_id: int, limit: int = 500
    ) -> list[JobEvent]:
        """Events with ``id > after_id``, oldest first, of one account and/or one job."""
        ...

    # --- idempotency keys ----------------------------------------------------------------------

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


def open_sqlite_store(data_dir: str | Path, **options: Any) -> JobStore:
    """The embedded default: SQLite (WAL) at ``data_dir/imagerouter.db``; call ``open()``."""
    from imagerouter.jobs.sqlite import SQLiteJobStore

    return SQLiteJobStore(Path(data_dir) / "imagerouter.db", **options)
