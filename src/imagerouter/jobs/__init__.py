"""Durable jobs: the store contract, the SQLite backend, the worker pool and event waiting."""

from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    InvalidCursor,
    JobFinished,
    JobNotFound,
    StoreError,
)
from imagerouter.jobs.events import EventHub
from imagerouter.jobs.store import EventListener, JobStore, open_sqlite_store
from imagerouter.jobs.types import (
    FINAL_STATUSES,
    JOB_STATUSES,
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
from imagerouter.jobs.worker import WorkerConfig, WorkerPool

__all__ = [
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "Account",
    "AccountNotFound",
    "ApiKeyRecord",
    "EventHub",
    "EventListener",
    "IdempotencyOutcome",
    "InsufficientCredits",
    "InvalidCursor",
    "Job",
    "JobEvent",
    "JobFinished",
    "JobNotFound",
    "JobPage",
    "JobStore",
    "LedgerEntry",
    "NewJob",
    "StoreError",
    "StoredResponse",
    "WorkerConfig",
    "WorkerPool",
    "open_sqlite_store",
]
