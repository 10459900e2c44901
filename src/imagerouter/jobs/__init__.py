"""Durable jobs: the store contract (protocols by aggregate), opening a backend (SQLite or
PostgreSQL), the worker pool and event waiting."""

from imagerouter.jobs.backends import open_sqlite_store, open_store
from imagerouter.jobs.errors import (
    AccountNotFound,
    InsufficientCredits,
    InvalidCursor,
    JobFinished,
    JobNotFound,
    StoreError,
)
from imagerouter.jobs.events import EventHub
from imagerouter.jobs.store import (
    AccountStore,
    EventListener,
    EventLog,
    IdempotencyStore,
    JobQueue,
    JobStore,
    WebhookStore,
)
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
    "AccountStore",
    "ApiKeyRecord",
    "EventHub",
    "EventListener",
    "EventLog",
    "IdempotencyOutcome",
    "IdempotencyStore",
    "InsufficientCredits",
    "InvalidCursor",
    "Job",
    "JobEvent",
    "JobFinished",
    "JobNotFound",
    "JobPage",
    "JobQueue",
    "JobStore",
    "LedgerEntry",
    "NewJob",
    "StoreError",
    "StoredResponse",
    "WebhookStore",
    "WorkerConfig",
    "WorkerPool",
    "open_sqlite_store",
    "open_store",
]
